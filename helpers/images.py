"""The image core every module shares: what a batch of images is, and the 8-bit grid.

A batch is a float tensor N x C x H x W with values in [0, 1]; data sets store uint8, and image
files hold only the 256 levels of the 8-bit grid. Everything that checks, converts or rounds
images does it here, once.
"""

from __future__ import annotations

import torch


def check_images(images: torch.Tensor, what: str = "images") -> None:
    """Raise a clear ValueError unless ``images`` is a float N x C x H x W batch in [0, 1]."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [0, 1]; convert uint8 with "
                         "`x.float() / 255`.")
    if images.ndim != 4:
        raise ValueError(f"{what} must be a batch N x C x H x W, got shape {tuple(images.shape)}; "
                         "add a batch axis with `x[None]` for one image.")
    if not images.numel():
        return
    # One pass for both checks: a NaN anywhere makes min and max NaN, an infinity shows in one
    # of them (isfinite().all(), min() and max() took a fifth of jpeg's time on CIFAR-10).
    low, high = torch.aminmax(images.detach())
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise ValueError(f"{what} contain NaN or infinite values.")
    if low < 0 or high > 1:
        raise ValueError(f"{what} must lie in [0, 1] (got min {low.item():.3g}, "
                         f"max {high.item():.3g}); clamp or rescale them first.")


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images as float32 in [0, 1]; float images unchanged."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] rounded to the 8-bit grid, as uint8: what an image file stores.

    Rounds half to even (``torch.round``).
    """
    return images.mul(255).round_().to(torch.uint8)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Float images rounded to the 8-bit grid, still float: ``to_uint8(x) / 255``."""
    return to_uint8(images).to(images.dtype).div_(255)
