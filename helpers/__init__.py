"""helpers: the small library the course's chapters grow.

Modules, one job each, listed so that each uses only those above it:

* ``profiles`` (how big), ``device`` (where, and seeds), ``files`` (atomic writes);
* ``images`` (what a batch of images is: checks, uint8 to float, the 8-bit grid),
  ``batching`` (memory-bounded chunks of images), ``data`` (the datasets as tensors);
* ``models`` (architectures), ``transforms`` (augmentation; blur, median filter, bit depth),
  ``jpeg`` (the codec, its steps, a differentiable version);
* ``train`` (fit, predict, evaluate), ``shifts`` (natural shifts, and accuracy under them),
  ``cache`` (trained models and computed tensors, one key rule), ``zoo`` (the course's
  classifiers: recipes, training, caching);
* ``attacks`` (FGSM, PGD, DeepFool, Carlini-Wagner, their building blocks, and the standard
  set Chapters 4-5 share, cached), ``spectra``;
* ``defenses`` (MagNet), ``vaccination`` (JPEG-trained models, the ensemble, SLQ),
  ``adversarial_training`` (the baseline), ``adaptive`` (BPDA, EOT, MagNet end to end);
* ``evaluate`` (scores: attacks against defenses on the same images), ``timing`` (ms per
  image), ``plots``, ``results`` (recorded and glued numbers), ``chapter`` (the first call of
  every chapter), ``publish``.
"""

from . import (
               adaptive,
               adversarial_training,
               attacks,
               batching,
               cache,
               data,
               defenses,
               device,
               evaluate,
               images,
               jpeg,
               models,
               plots,
               profiles,
               results,
               shifts,
               spectra,
               timing,
               train,
               transforms,
               vaccination,
               zoo,
)
from .chapter import show_settings, start

__all__ = ["adaptive", "adversarial_training", "attacks", "batching", "cache", "data",
           "defenses", "device", "evaluate", "images", "jpeg", "models", "plots", "profiles",
           "results", "shifts", "spectra", "timing", "train", "transforms", "vaccination", "zoo",
           "show_settings", "start"]
__version__ = "0.1.0"
