"""PGD adversarial training (Madry et al. 2018): the baseline every defense is compared with.

Madry et al. train on the worst case in the eps ball: each batch is replaced by PGD adversarial
examples against the current model before the weights are updated, with plain cross-entropy
(no label smoothing, which can mask gradients from a cross-entropy attacker). Here that is
``train.fit(..., perturb=PGDPerturbation(eps, steps, alpha))``, from scratch or from the
course's clean classifier as the profile says (see :func:`adversarial_classifier`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import attacks, zoo
from .device import training_dtype
from .profiles import Profile


@dataclass
class PGDPerturbation:
    """``perturb(model, images, labels)`` for ``train.fit``: PGD with ``steps`` steps at ``eps``.

    The step size is ``alpha`` (default ``attacks.pgd``'s, ``2.5 * eps / steps``), and every
    batch gets a random start from a generator seeded with ``seed``, so a run is reproducible.
    The attack runs the model in eval mode and restores its training mode (``attacks.pgd``
    does), in bfloat16 where ``fit`` trains in it (:func:`~helpers.device.training_dtype`;
    twice as fast on the CI machine; a step's sign hardly depends on it), else float32.
    ``key`` names it in the cache key of the model trained with it.
    """

    eps: float
    steps: int
    alpha: float | None = None
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        attacks.check_positive_int("steps", self.steps)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        # bfloat16 where fit trains in it; float16 has no loss scaling here, and an input
        # gradient flushed to zero would stop the attack, so it runs in float32 instead
        dtype = training_dtype(images.device)
        with torch.autocast(images.device.type, dtype=dtype, enabled=dtype == torch.bfloat16):
            adv = attacks.pgd(model, images, labels, eps=self.eps, steps=self.steps,
                              alpha=self.alpha, generator=self.generator)
        return adv.float()

    @property
    def key(self) -> str:
        alpha = attacks.pgd_step_size(self.eps, self.steps, self.alpha)
        return (f"pgd{self.steps}-eps{self.eps * 255:g}-alpha{alpha * 255:g}"
                f"-seed{self.seed}")


def adversarial_classifier(dataset: str, profile: Profile, *,
                           device: torch.device | None = None, seed: int = 0,
                           progress: bool = True) -> nn.Module:
    """The course's classifier for ``dataset``, PGD adversarially trained; from the cache.

    ``profile.adversarial_epochs`` epochs on PGD examples (``profile.adversarial_eps``,
    ``profile.adversarial_steps`` steps of ``profile.adversarial_alpha``, random start) of the
    recipe's training images, with its batch size, learning rate (one-cycle, as in
    ``train.fit``) and augmentation, and no label smoothing whatever the recipe says.
    ``profile.adversarial_from_scratch``: from freshly initialized weights (seeded with
    ``seed``), as Madry et al. (2018) trained; otherwise fine-tuned from the clean classifier
    ``zoo.classifier(dataset, seed=seed)``, which the quick profile does because adversarial
    training from scratch costs ``steps + 1`` times clean training for tens of epochs, beyond
    a CPU's minutes; starting from features that already classify, a few adversarial epochs
    buy much of the robustness a small model gets. Cached under a key naming these settings.
    ``model.train_info["train_seconds"]`` is the adversarial training's time only; the clean
    model's is ``train_info["base_train_seconds"]`` (0 from scratch).
    """
    perturb = PGDPerturbation(profile.adversarial_eps, profile.adversarial_steps,
                              profile.adversarial_alpha, seed)
    if profile.adversarial_from_scratch:
        torch.manual_seed(seed)
        base = zoo.make_classifier(dataset, profile)
        base.train_info = {"train_seconds": 0.0}
        start = "from-scratch"
    else:
        base = zoo.classifier(dataset, profile, seed=seed, device=device, progress=progress)
        start = "fine-tuned"
    recipe = dataclasses.replace(profile.recipe(dataset), label_smoothing=0.0)
    plain_labels = dataclasses.replace(profile, recipes={**profile.recipes, dataset: recipe})
    model = zoo.finetuned(base, dataset, plain_labels,
                          name=f"adversarial-{start}-ls{recipe.label_smoothing:g}",
                          epochs=profile.adversarial_epochs, perturb=perturb, seed=seed,
                          device=device, progress=progress)
    model.train_info = {**model.train_info,
                        "base_train_seconds": base.train_info["train_seconds"]}
    return model
