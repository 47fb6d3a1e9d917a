"""Natural distribution shifts, applied to whole batches of float images in [0, 1].

Each shift has three severities (1 mild, 2 moderate, 3 severe). They are built from the real
test images, so a drop in accuracy is the shift's doing, not a different test set's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision.transforms.v2.functional as TF

from .jpeg import check_images, jpeg
from .train import evaluate
from .transforms import gaussian_blur


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    return TF.rotate(x, degrees, interpolation=TF.InterpolationMode.BILINEAR)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, sigma)


def noise(x: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    """Gaussian pixel noise from a fixed seed, so every model sees the same noisy images."""
    generator = torch.Generator().manual_seed(seed)
    return (x + std * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)


def contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Pull every image toward its own mean grey level (factor < 1 lowers contrast)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor * (x - mean)).clamp(0, 1)


def brightness(x: torch.Tensor, delta: float) -> torch.Tensor:
    return (x + delta).clamp(0, 1)


def invert(x: torch.Tensor, _: float = 1.0) -> torch.Tensor:
    return 1 - x


# name -> (function, parameter at severities 1, 2, 3, what the parameter means)
SHIFTS: dict[str, tuple[Callable[[torch.Tensor, float], torch.Tensor], tuple, str]] = {
    "rotation": (rotate, (10, 25, 45), "degrees"),
    "blur": (blur, (0.6, 1.0, 1.6), "Gaussian sigma (pixels)"),
    "noise": (noise, (0.04, 0.1, 0.2), "noise std"),
    "contrast": (contrast, (0.6, 0.35, 0.15), "contrast factor"),
    "brightness": (brightness, (0.15, 0.3, 0.45), "added brightness"),
    "inversion": (invert, (1, 1, 1), "(no parameter)"),
    "jpeg": (jpeg, (75, 30, 10), "JPEG quality"),
}


def apply_shift(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply shift ``name`` at ``severity`` 1-3 to a float batch in [0, 1].

    ``seed`` only matters for random shifts (noise): the same seed gives the same noise.
    """
    if name not in SHIFTS:
        raise ValueError(f"Unknown shift {name!r}; choose one of {list(SHIFTS)}.")
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in (1, 2, 3):
        raise ValueError(f"severity must be 1, 2 or 3, got {severity!r}.")
    check_images(x)
    fn, params, _ = SHIFTS[name]
    if fn is noise:
        return noise(x, params[severity - 1], seed)
    return fn(x, params[severity - 1])


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
