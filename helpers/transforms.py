"""Input transformations: the training augmentation, natural shifts, cheap defenses.

``random_crop_flip`` is the classifiers' augmentation. The natural shifts of Chapter 1
(rotation, blur, noise, contrast, brightness, inversion, JPEG) and the defenses Chapter 4
compares with JPEG (Gaussian blur, a median filter, bit-depth reduction) need no training;
each works on a whole float batch in [0, 1] (N x C x H x W) on the input's device and returns
the same shape, dtype and range. ``REGISTRY`` lists every kind with its settings from mild to
strong, so a chapter can sweep them; a :class:`Transform` is one of them at one setting, with
the ``key`` that names it in cache keys.

Borders are mirrored without repeating the edge pixel (``d c b | a b c d | c b a``): torch's
``F.pad(mode="reflect")``, which is scipy.ndimage's ``mode="mirror"`` (scipy's ``"reflect"``
repeats the edge pixel and has no torch padding mode).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from .images import check_images
from .jpeg import check_quality, jpeg

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


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 2,
                     flip: bool = True) -> torch.Tensor:
    """Translate each image by up to ``pad`` pixels (reflect padding) and flip half of them.

    One gather for the whole batch: every image gets its own shift, no Python loop per image.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + shifts[0, :, None])[:, :, None]
    cols = (torch.arange(w, device=x.device)[None, :] + shifts[1, :, None])[:, None, :]
    if flip:
        flipped = torch.rand(n, generator=generator).to(x.device) < 0.5
        cols = torch.where(flipped[:, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------------------------------------
# Natural shifts (Chapter 1): changes in how images are captured or stored, not attacks
# ---------------------------------------------------------------------------------------------

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



def jpeg_round_trip(x: torch.Tensor, quality: int) -> torch.Tensor:
    return jpeg(x, quality)


# ---------------------------------------------------------------------------------------------
# One transformation at one setting, and the registry of every kind the course uses
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Transform:
    """One input transformation at one setting (JPEG at quality 75, rotation by 25 degrees):
    called on a float batch, and named by ``key`` wherever a result depends on it (the file
    name of a model trained on it, say)."""

    name: str
    apply: Callable[[torch.Tensor, Any], torch.Tensor]
    setting: Any

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.apply(images, self.setting)

    @property
    def key(self) -> str:
        return f"{self.name.replace(' ', '-')}{self.setting:g}"


class Family(NamedTuple):
    """A kind of transformation: the function, its strength parameter, the settings the course
    uses from mild to strong, and its role: a natural ``"shift"`` (Chapter 1, severities 1-3)
    or a ``"defense"`` compared with JPEG (Chapter 4)."""

    apply: Callable[[torch.Tensor, Any], torch.Tensor]
    parameter: str
    settings: tuple
    kind: str


# Every transformation the chapters sweep, by name: ``family.apply(images, s) for s in
# family.settings``; ``of_kind("shift")`` and ``of_kind("defense")`` select a chapter's.
REGISTRY: dict[str, Family] = {
    "rotation": Family(rotate, "degrees", (10, 25, 45), "shift"),
    "blur": Family(blur, "Gaussian sigma (pixels)", (0.6, 1.0, 1.6), "shift"),
    "noise": Family(noise, "noise std", (0.04, 0.1, 0.2), "shift"),
    "contrast": Family(contrast, "contrast factor", (0.6, 0.35, 0.15), "shift"),
    "brightness": Family(brightness, "added brightness", (0.15, 0.3, 0.45), "shift"),
    "inversion": Family(invert, "(no parameter)", (1, 1, 1), "shift"),
    "jpeg": Family(jpeg_round_trip, "JPEG quality", (75, 30, 10), "shift"),
    "gaussian blur": Family(gaussian_blur, "sigma", (0.5, 0.75, 1.0, 1.5), "defense"),
    "median filter": Family(median_filter, "size", (3, 5), "defense"),
    "bit depth": Family(bit_depth, "bits", (6, 5, 4, 3, 2), "defense"),
}


def of_kind(kind: str) -> dict[str, Family]:
    """The registry's families of one kind (``"shift"`` or ``"defense"``), in order."""
    chosen = {name: family for name, family in REGISTRY.items() if family.kind == kind}
    if not chosen:
        raise ValueError(f"no transformations of kind {kind!r}; kinds: "
                         f"{sorted({f.kind for f in REGISTRY.values()})}")
    return chosen


def at(name: str, setting: Any) -> Transform:
    """The registry's transformation ``name`` at ``setting``, e.g. ``at("rotation", 25)``."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown transformation {name!r}; choose one of {list(REGISTRY)}.")
    return Transform(name, REGISTRY[name].apply, setting)


def jpeg_at(quality: int) -> Transform:
    """The JPEG round trip at ``quality`` as a one-argument batch transform (key ``jpeg75``)."""
    return Transform("jpeg", jpeg_round_trip, check_quality(quality))
