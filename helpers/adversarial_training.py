"""PGD adversarial training (Madry et al. 2018): the baseline every defense is compared with.

Madry et al. train on the worst case in the eps ball: each batch is replaced by PGD adversarial
examples against the current model before the weights are updated. Here that is
``train.fit(..., perturb=PGDPerturbation(eps, steps))`` starting from the course's clean
classifier (see :func:`adversarial_classifier` for why fine-tuning rather than training anew).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import attacks, zoo
from .profiles import Profile


@dataclass
class PGDPerturbation:
    """``perturb(model, images, labels)`` for ``train.fit``: PGD with ``steps`` steps at ``eps``.

    The step size is ``attacks.pgd``'s default, ``2.5 * eps / steps``, and every batch gets a
    random start from a generator seeded with ``seed``, so a run is reproducible. The attack
    runs the model in eval mode and restores its training mode (``attacks.pgd`` does).
    ``key`` names it in the cache key of the model trained with it.
    """

    eps: float
    steps: int
    seed: int = 0
    generator: torch.Generator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")
        attacks.check_positive_int("steps", self.steps)
        self.generator = torch.Generator().manual_seed(self.seed)

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        return attacks.pgd(model, images, labels, eps=self.eps, steps=self.steps,
                           generator=self.generator)

    @property
    def key(self) -> str:
        alpha = attacks.pgd_step_size(self.eps, self.steps, None)
        return (f"pgd{self.steps}-eps{self.eps * 255:g}-alpha{alpha * 255:g}"
                f"-seed{self.seed}")


def adversarial_classifier(dataset: str, profile: Profile, *,
                           device: torch.device | None = None, seed: int = 0,
                           progress: bool = True) -> nn.Module:
    """The course's classifier for ``dataset``, PGD adversarially fine-tuned; from the cache.

    Starts from the clean classifier ``zoo.classifier(dataset, seed=seed)`` and trains
    ``profile.adversarial_epochs`` more epochs on PGD examples (``profile.adversarial_eps``,
    ``profile.adversarial_steps`` steps of ``2.5 * eps / steps``) of the recipe's training
    images, with its batch size, learning rate (one-cycle, as in ``train.fit``), augmentation
    and label smoothing. Fine-tuning, not training from scratch as Madry et al. (2018) did:
    every PGD step costs a forward and a backward pass, so adversarial training from scratch
    costs about ``steps + 1`` times clean training for many more epochs, which the quick
    profile cannot afford on a CPU; starting from features that already classify, a few
    adversarial epochs buy much of the robustness a small model gets. The recipe's full
    learning rate rather than a smaller fine-tuning one: on the quick CIFAR-10 model (200 test
    images, PGD-10 at 8/255) a third of it gave 26% robust and 55% clean accuracy, the full
    rate 32% and 53.5%; the robustness has to be learnt, and a gentle rate learns less of it.
    Cached under a key naming these settings, so changing any of them retrains.
    ``model.train_info["train_seconds"]`` is the fine-tune's time only; the clean model's is
    ``train_info["base_train_seconds"]``.
    """
    perturb = PGDPerturbation(profile.adversarial_eps, profile.adversarial_steps, seed)
    base = zoo.classifier(dataset, profile, seed=seed, device=device, progress=progress)
    model = zoo.finetuned(base, dataset, profile, name="adversarial",
                          epochs=profile.adversarial_epochs, perturb=perturb, seed=seed,
                          device=device, progress=progress)
    model.train_info = {**model.train_info,
                        "base_train_seconds": base.train_info["train_seconds"]}
    return model
