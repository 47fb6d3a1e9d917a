"""Natural distribution shifts at three severities, and a model's accuracy under them.

Each shift (defined in :mod:`helpers.transforms`, kind ``"shift"``) has three severities (1 mild,
2 moderate, 3 severe). They are applied to the real test images, so a drop in accuracy is the
shift's doing, not a different test set's.
"""

from __future__ import annotations

import torch

from .images import check_images
from .train import evaluate
from .transforms import Family, noise, of_kind

# The natural shifts: the registry's families of kind "shift", each with three severities.
SHIFTS: dict[str, Family] = of_kind("shift")


def apply_shift(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply shift ``name`` at ``severity`` 1-3 to a float batch in [0, 1].

    ``seed`` only matters for random shifts (noise): the same seed gives the same noise.
    """
    if name not in SHIFTS:
        raise ValueError(f"Unknown shift {name!r}; choose one of {list(SHIFTS)}.")
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in (1, 2, 3):
        raise ValueError(f"severity must be 1, 2 or 3, got {severity!r}.")
    check_images(x)
    family = SHIFTS[name]
    setting = family.settings[severity - 1]
    if family.apply is noise:
        return noise(x, setting, seed)
    return family.apply(x, setting)


def random_shift(x: torch.Tensor, generator: torch.Generator,
                 names: tuple[str, ...] = tuple(SHIFTS)) -> torch.Tensor:
    """A training transform: half the batch stays clean, the rest gets one random shift each.

    Shifts are applied to groups of images (one call per shift and severity), not per image.
    """
    n = len(x)
    choice = torch.randint(0, len(names) * 3, (n,), generator=generator)
    clean = torch.rand(n, generator=generator) < 0.5
    out = x.clone()
    for code in range(len(names) * 3):
        idx = torch.nonzero((choice == code) & ~clean).flatten().to(x.device)
        if len(idx):
            seed = int(torch.randint(0, 2**31 - 1, (), generator=generator))
            out[idx] = apply_shift(x[idx], names[code // 3], code % 3 + 1, seed)
    return out


def accuracy_under_shifts(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                          names: tuple[str, ...] = tuple(SHIFTS)) -> dict[str, list[float]]:
    """``{shift: [clean, severity 1, 2, 3]}`` accuracies of ``model`` on the same test images."""
    clean = evaluate(model, images, labels)
    return {name: [clean] + [evaluate(model, apply_shift(images, name, s), labels)
                             for s in (1, 2, 3)] for name in names}
