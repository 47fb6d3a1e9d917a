"""JPEG compression as a batched tensor operation.

``jpeg(images, quality)`` encodes and decodes a whole batch through torchvision's libjpeg
bindings (nvjpeg on a GPU). On the CPU the result is bit-identical to Pillow's encoder and
decoder at the same quality with 4:2:0 chroma subsampling (Pillow's default), which the tests
check image by image.
"""

from __future__ import annotations

import numbers

import torch
from torchvision.io import decode_jpeg, encode_jpeg


def check_images(images: torch.Tensor, what: str = "images") -> None:
    """Raise a clear ValueError unless ``images`` is a float N x C x H x W batch in [0, 1]."""
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(f"{what} must be a float tensor in [0, 1]; convert uint8 with "
                         "`x.float() / 255`.")
    if images.ndim != 4:
        raise ValueError(f"{what} must be a batch N x C x H x W, got shape {tuple(images.shape)}; "
                         "add a batch axis with `x[None]` for one image.")
    if images.numel() and not torch.isfinite(images).all():
        raise ValueError(f"{what} contain NaN or infinite values.")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{what} must lie in [0, 1] (got min {images.min().item():.3g}, "
                         f"max {images.max().item():.3g}); clamp or rescale them first.")


def check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
        raise ValueError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}.")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be from 1 (smallest file) to 100 (best), "
                         f"got {quality}.")
    return int(quality)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Round float images in [0, 1] to the 8-bit grid (what any image file stores)."""
    return images.mul(255).round_().to(torch.uint8)


def jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """Compress and decompress a float batch in [0, 1] (grayscale or RGB) at ``quality``.

    Returns float images in [0, 1] on the input's device. Not differentiable: use
    ``jpeg_differentiable`` when an attack must see through it.
    """
    check_images(images)
    quality = check_quality(quality)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"JPEG needs 1 (gray) or 3 (RGB) channels, got {images.shape[1]}.")
    if len(images) == 0:
        return images.clone()
    pixels = to_uint8(images.detach())
    encoded = encode_jpeg(list(pixels), quality=quality)
    decoded = decode_jpeg(encoded, device=images.device)
    return torch.stack(decoded).to(images.dtype).div_(255)
