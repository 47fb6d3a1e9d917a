"""Cheap input transformations that Chapter 4 compares with JPEG as defenses.

Gaussian blur, a median filter and bit-depth reduction: none needs training, each works on a
whole float batch in [0, 1] (N x C x H x W) on the input's device and returns the same shape,
dtype and range. ``TRANSFORMS`` lists each with settings from mild to strong, so a chapter can
sweep them and compare defenses at a matched cost in clean accuracy.

Borders are mirrored without repeating the edge pixel (``d c b | a b c d | c b a``): torch's
``F.pad(mode="reflect")``, which is scipy.ndimage's ``mode="mirror"`` (scipy's ``"reflect"``
repeats the edge pixel and has no torch padding mode).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from .jpeg import check_images

MEDIAN_CHUNK = 512  # images per median step: its windows take size**2 times the batch's memory


def _check_padding(images: torch.Tensor, radius: int, what: str) -> None:
    """Reflect padding needs each side longer than the padding; say so instead of torch's error."""
    height, width = images.shape[-2:]
    if radius >= min(height, width):
        raise ValueError(f"{what} reaches {radius} pixels from each pixel, so reflect padding "
                         f"needs images larger than {radius} x {radius}; got {height} x {width}.")


def gaussian_kernel(sigma: float, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The normalised 1-D Gaussian sampled at integers -r..r, with r = ceil(3 sigma).

    The kernel covers +-3 sigma. scipy's ``gaussian_filter(truncate=3)`` rounds 3 sigma to the
    nearest integer instead; pass it ``radius=math.ceil(3 * sigma)`` to get this kernel.
    """
    radius = math.ceil(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel with a Gaussian of ``sigma`` pixels (separable, reflect padding).

    Removes fine detail, where small perturbations are thought to live. The kernel has odd size
    2 ceil(3 sigma) + 1 and sums to 1, so flat regions keep their value. Sigma must be positive:
    sigma 0 would be the identity, so skip the blur instead. Differentiable.
    """
    check_images(images)
    if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
            or not math.isfinite(sigma) or sigma <= 0):
        raise ValueError(f"Gaussian blur sigma must be a positive number of pixels, got "
                         f"{sigma!r}; sigma 0 would leave images unchanged, so skip the blur.")
    if images.numel() == 0:
        return images.clone()
    kernel = gaussian_kernel(float(sigma), images.dtype, images.device)
    radius = len(kernel) // 2
    _check_padding(images, radius, f"A Gaussian blur with sigma {sigma}")
    n, c, h, w = images.shape
    x = F.pad(images.reshape(n * c, 1, h, w), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))  # along rows
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))  # along columns
    return x.reshape(n, c, h, w).clamp_(0, 1)  # clamp: float rounding may step past 1


def median_filter(images: torch.Tensor, size: int) -> torch.Tensor:
    """Replace each pixel by the median of its ``size`` x ``size`` neighbourhood, per channel.

    Removes isolated outliers (salt-and-pepper noise, sparse perturbations) while keeping edges.
    ``size`` must be odd so the window has a single middle value: ``torch.median`` returns the
    lower of the two middle values of an even count. Size 1 is the identity. Reflect padding.
    Gradients flow to the pixel that is the median.
    """
    check_images(images)
    if (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1
            or size % 2 == 0):
        raise ValueError(f"Median filter size must be an odd integer >= 1 (1 leaves images "
                         f"unchanged; 3 and 5 are usual), got {size!r}.")
    size = int(size)
    if size == 1 or images.numel() == 0:
        return images.clone()
    radius = size // 2
    _check_padding(images, radius, f"A {size} x {size} median filter")
    parts = []
    for part in images.split(MEDIAN_CHUNK):  # bounds memory; each part is still a whole batch
        padded = F.pad(part, (radius,) * 4, mode="reflect")
        windows = padded.unfold(2, size, 1).unfold(3, size, 1)  # N x C x H x W x size x size
        parts.append(windows.flatten(-2).median(dim=-1).values)
    return torch.cat(parts)


def bit_depth(images: torch.Tensor, bits: int) -> torch.Tensor:
    """Round each channel to ``bits`` bits (1 to 8): ``round(x * (2**bits - 1)) / (2**bits - 1)``.

    Feature squeezing: fewer levels leave small perturbations fewer places to hide. Bits 8 is
    rounding to the 8-bit grid that image files store. Ties round to even, as ``torch.round``
    does. The gradient is zero almost everywhere, so attacks need to approximate it (BPDA).
    """
    check_images(images)
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= bits <= 8:
        raise ValueError(f"Bit depth must be an integer from 1 (black or white) to 8 (the 8-bit "
                         f"grid), got {bits!r}.")
    levels = 2 ** int(bits) - 1
    return images.mul(levels).round().div(levels)


class Transform(NamedTuple):
    """A transformation, the name of its strength parameter and its settings, mild to strong."""

    apply: Callable[[torch.Tensor, Any], torch.Tensor]
    parameter: str
    settings: tuple[float, ...]


# Each transformation by name, for sweeps: ``t.apply(images, s) for s in t.settings``.
TRANSFORMS: dict[str, Transform] = {
    "gaussian blur": Transform(gaussian_blur, "sigma", (0.5, 0.75, 1.0, 1.5)),
    "median filter": Transform(median_filter, "size", (3, 5)),
    "bit depth": Transform(bit_depth, "bits", (6, 5, 4, 3, 2)),
}
