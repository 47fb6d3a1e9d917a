"""helpers: the small library the course's chapters grow.

Modules, one job each: ``profiles`` (how big), ``device`` (where, and seeds), ``data`` (the
datasets as tensors), ``models``, ``train`` (fit, evaluate, the model cache), ``shifts``
(natural distribution shifts), ``jpeg``, ``transforms`` (other cheap input transformations),
``attacks``, ``spectra`` (where perturbations keep their energy), ``defenses`` (MagNet's
autoencoders and detectors), ``evaluate`` (every attack against every defense on the same
images), ``vaccination`` (models trained on JPEG-compressed images, their controls, the
ensemble), ``adaptive`` (BPDA, EOT and end-to-end attacks on defenses),
``adversarial_training`` (the baseline), ``plots``, ``results`` and ``chapter`` (the first call
of every chapter).
"""

from . import (
               adaptive,
               adversarial_training,
               attacks,
               data,
               defenses,
               device,
               evaluate,
               jpeg,
               models,
               plots,
               profiles,
               results,
               shifts,
               spectra,
               train,
               transforms,
               vaccination,
)
from .chapter import start

__all__ = ["adaptive", "adversarial_training", "attacks", "data", "defenses", "device",
           "evaluate", "jpeg", "models", "plots", "profiles", "results", "shifts", "spectra",
           "train", "transforms", "vaccination", "start"]
__version__ = "0.1.0"
