"""PGD adversarial training (Madry et al. 2018): the baseline every defense is compared with.

Madry et al. train on the worst case in the eps ball: each batch is replaced by PGD adversarial
examples against the current model before the weights are updated. Here that is
``train.fit(..., perturb=pgd_perturbation(eps, steps))`` starting from the course's clean
classifier (see :func:`adversarial_classifier` for why fine-tuning rather than training anew).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import attacks, train
from .profiles import Profile, get_profile


def pgd_perturbation(eps: float, steps: int, seed: int = 0) -> train.Perturbation:
    """``perturb(model, images, labels)`` for ``train.fit``: PGD with ``steps`` steps at ``eps``.

    The step size is ``attacks.pgd``'s default, ``2.5 * eps / steps``, and every batch gets a
    random start from a generator seeded with ``seed``, so a run is reproducible. The attack
    runs the model in eval mode and restores its training mode (``attacks.pgd`` does).
    """
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    attacks._check_positive_int("steps", steps)
    generator = torch.Generator().manual_seed(seed)

    def perturb(model: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
        return attacks.pgd(model, images, labels, eps=eps, steps=steps, generator=generator)

    return perturb


def adversarial_settings(profile: Profile) -> dict:
    """What determines the fine-tune beyond the clean model's recipe: part of its cache key."""
    steps, eps = profile.adversarial_steps, profile.adversarial_eps
    return {"method": "pgd-finetune", "eps": eps, "steps": steps,
            "alpha": attacks._pgd_step_size(eps, steps, None),  # attacks.pgd's default
            "epochs": profile.adversarial_epochs}


def adversarial_classifier(dataset: str, *, profile: Profile | None = None,
                           device: torch.device | None = None, seed: int = 0,
                           progress: bool = True) -> nn.Module:
    """The course's classifier for ``dataset``, PGD adversarially fine-tuned; from the cache.

    Starts from the clean classifier ``train.classifier(dataset, seed=seed)`` and trains
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
    profile = profile or get_profile()
    settings = adversarial_settings(profile)
    base = train.classifier(dataset, seed=seed, profile=profile, device=device,
                            progress=progress)
    name = f"pgd{settings['steps']}-eps{settings['eps'] * 255:g}"
    model = train.finetuned(base, dataset, name=f"adversarial-{name}",
                            epochs=settings["epochs"], key_extra={"adversarial": settings},
                            perturb=pgd_perturbation(settings["eps"], settings["steps"], seed),
                            seed=seed, profile=profile, device=device, progress=progress)
    model.train_info = {**model.train_info,
                        "base_train_seconds": base.train_info["train_seconds"]}
    return model
