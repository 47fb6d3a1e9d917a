"""JPEG compression as a batched tensor operation, and its building blocks.

``jpeg(images, quality)`` encodes and decodes a whole batch through a libjpeg codec for
tensors: TorchCodec's image encoder and decoder when TorchCodec is installed and loads, else
torchvision's (``torchvision.io.encode_jpeg``/``decode_jpeg``, deprecated since torchvision
0.29), both decoding with nvjpeg when the images are on a GPU. ``jpeg_backend()`` names the one
in use; ``LESSON_JPEG_BACKEND=torchcodec`` or ``=torchvision`` forces one. Both are imported
only when a JPEG is first made, so ``import helpers`` does not depend on either. On the CPU the
result is bit-identical to Pillow's encoder and decoder at the same quality with 4:2:0 chroma
subsampling (Pillow's default), whichever backend codes it, which the tests check image by
image for each installed backend; a GPU decoder (nvjpeg) is not libjpeg, and the tests hold it
to ``GPU_DECODE_MEAN_GAP`` of the CPU's result instead. ``jpeg(images, quality,
subsampling="4:4:4")`` keeps every colour sample (Pillow's ``subsampling=0``): neither codec
can, so the batch is tiled into one mosaic that Pillow codes in a single call, which is exact
because at 4:4:4 every 8x8 block is coded on its own. ``chroma_subsampled`` applies 4:2:0 alone,
with no quantization, to tell the two lossy steps apart. ``encoded_sizes`` gives the file size
of each image.

The rest rebuilds the codec from its steps as plain, batched tensor functions, so a chapter
can show what JPEG throws away and an attack can differentiate through it: colour conversion
(``rgb_to_ycbcr``), 4:2:0 chroma subsampling (``subsample_chroma``), the 8x8 block DCT
(``block_dct``), the quality-scaled quantization tables (``quantization_tables``), rounding
the coefficients to multiples of those tables (``quantize_blocks``, the one step that loses
information apart from the subsampling) and the way back. ``jpeg_differentiable`` chains them.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import numbers
import os
import warnings
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from .images import check_images, quantize, to_uint8


def check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, numbers.Integral):
        raise ValueError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}.")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be from 1 (smallest file) to 100 (best), "
                         f"got {quality}.")
    return int(quality)


def check_jpeg_input(images: torch.Tensor, quality: int) -> int:
    """The checks every JPEG function here makes: images, quality, 1 or 3 channels."""
    check_images(images)
    quality = check_quality(quality)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"JPEG needs 1 (gray) or 3 (RGB) channels, got {images.shape[1]}.")
    return quality


# Chroma subsampling: 4:2:0 keeps one colour sample per 2x2 pixels (libjpeg's and Pillow's
# default), 4:4:4 keeps them all. Pillow calls them subsampling=2 and subsampling=0.
SUBSAMPLINGS = ("4:2:0", "4:4:4")


def check_subsampling(subsampling: str) -> str:
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {SUBSAMPLINGS} ('4:2:0': colour at half "
                         f"resolution, JPEG's default; '4:4:4': none), got {subsampling!r}.")
    return subsampling


def _check_three_channels(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"colour conversion needs an N x 3 x H x W batch, "
                         f"got shape {tuple(images.shape)}.")


# The codec behind ``jpeg`` and ``encoded_sizes``. torchvision deprecated its image encoder and
# decoder in 0.29 ("will be removed in a future release") for TorchCodec's, so TorchCodec comes
# first and torchvision is the fallback. Each is imported on first use, never when helpers is
# imported, so a release that drops one cannot break ``import helpers``.
BACKEND_ENV = "LESSON_JPEG_BACKEND"
BACKENDS = ("torchcodec", "torchvision")  # in order of preference
# What each needs: TorchCodec's image API (a list to decode_jpeg, JpegEncoder.to_tensor) from
# 0.16, a build matching torch's (its default Linux wheels need a CUDA build of torch);
# torchvision's lists to encode_jpeg (0.19) and decode_jpeg (0.20).
_INSTALL_HINT = {
    "torchcodec": "pip install 'torchcodec>=0.16' (a build matching your torch: "
                  "https://github.com/pytorch/torchcodec#installing-torchcodec)",
    "torchvision": "pip install 'torchvision>=0.20' (a build matching your torch, from before "
                   "torchvision removes torchvision.io.encode_jpeg)",
}

# A GPU decodes with nvjpeg, whose inverse DCT and chroma upsampling are not libjpeg's: the
# tests hold ``jpeg`` on a GPU to this mean absolute difference (in [0, 1] units, per batch)
# from the CPU's bit-exact result. It is the bound torchvision's own tests set between nvjpeg
# and libjpeg decoding the same file (2 levels of 255); bit-exactness is asserted on the CPU only.
GPU_DECODE_MEAN_GAP = 2 / 255


@dataclasses.dataclass(frozen=True)
class _Codec:
    """A JPEG codec for lists of uint8 C x H x W tensors (1 or 3 channels) on the CPU."""

    name: str
    version: str
    encode: Callable[[list[torch.Tensor], int], list[torch.Tensor]]  # images, quality -> files
    decode: Callable[[list[torch.Tensor], torch.device], list[torch.Tensor]]  # files, device


def _torchcodec() -> _Codec:
    import torchcodec
    from torchcodec.decoders import decode_jpeg
    from torchcodec.encoders import JpegEncoder

    def encode(images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
        # TorchCodec has no list encoder; torchvision's list call loops over images the same way
        return [JpegEncoder(image).to_tensor(quality=quality) for image in images]

    def decode(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        # one call for the batch: on a GPU a single batched nvjpeg decode
        return decode_jpeg(files, mode="UNCHANGED", device=device)

    return _Codec("torchcodec", torchcodec.__version__, encode, decode)


def _torchvision() -> _Codec:
    import torchvision
    from torchvision.io import decode_jpeg, encode_jpeg

    def encode(images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
        return encode_jpeg(images, quality=quality)

    def decode(files: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        return decode_jpeg(files, device=device)

    return _Codec("torchvision", torchvision.__version__, encode, decode)


_LOADERS = {"torchcodec": _torchcodec, "torchvision": _torchvision}


@functools.cache
def _load(name: str) -> tuple[_Codec | None, str, bool]:
    """(the codec, or None and why not, and whether the package is installed at all).

    Loads ``name`` once and tries it on a gray and a colour image, through the list calls
    ``jpeg`` makes, so a build that imports but does not work counts as unavailable.
    """
    try:
        codec = _LOADERS[name]()
        images = [torch.zeros(3, 16, 8, dtype=torch.uint8), torch.full((1, 8, 16), 200,
                                                                        dtype=torch.uint8)]
        with warnings.catch_warnings():  # torchvision's deprecation, even under -W error
            warnings.simplefilter("ignore", DeprecationWarning)
            decoded = codec.decode(codec.encode(images, 90), torch.device("cpu"))
        if [tuple(d.shape) for d in decoded] != [(3, 16, 8), (1, 8, 16)]:
            raise RuntimeError("a round trip gave the wrong shapes "
                               f"{[tuple(d.shape) for d in decoded]}")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == name:
            return None, f"{name} is not installed", False
        return None, f"{name} does not load ({type(exc).__name__}: {exc})", True
    except Exception as exc:  # noqa: BLE001 - a build that does not load or work: say why
        version = _installed_version(name)
        return None, f"{name} {version} does not work here ({type(exc).__name__}: {exc})", True
    return codec, "", True


def _installed_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "(version unknown)"


def _wanted_backend() -> str:
    setting = os.environ.get(BACKEND_ENV, "")
    wanted = setting.strip().lower() or "auto"
    if wanted not in ("auto", *BACKENDS):
        raise ValueError(f"{BACKEND_ENV}={setting!r}: use one of {', '.join(map(repr, BACKENDS))} "
                         "to force that JPEG codec, or unset it (or 'auto') to use TorchCodec "
                         "when it works and torchvision otherwise.")
    return wanted


def _codec() -> _Codec:
    """The codec to use now: the one ``LESSON_JPEG_BACKEND`` forces, else the first that works."""
    wanted = _wanted_backend()
    if wanted != "auto":
        codec, why, _ = _load(wanted)
        if codec is None:
            raise ImportError(f"{BACKEND_ENV}={wanted!r} asks for {wanted}'s JPEG codec, but "
                              f"{why}. Install it ({_INSTALL_HINT[wanted]}), or unset "
                              f"{BACKEND_ENV} to use whichever codec works.")
        return codec
    reasons = []
    for name in BACKENDS:
        codec, why, installed = _load(name)
        if codec is not None:
            if reasons:
                _warn_once(f"JPEG through {name}, because {'; '.join(reasons)}.")
            return codec
        if installed:  # installed but broken: worth a warning if another codec takes over
            reasons.append(why)
    whys = "; ".join(_load(name)[1] for name in BACKENDS)
    raise ImportError(f"No JPEG codec works here: {whys}. Install TorchCodec "
                      f"({_INSTALL_HINT['torchcodec']}), or else torchvision "
                      f"({_INSTALL_HINT['torchvision']}).")


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def jpeg_backend() -> str:
    """The codec ``jpeg`` and ``encoded_sizes`` use now: ``"torchcodec"`` or ``"torchvision"``.

    TorchCodec when it is installed and works, else torchvision; ``LESSON_JPEG_BACKEND`` set to
    either name forces it (an error if it does not work). Raises ``ImportError`` saying what to
    install when neither works.
    """
    return _codec().name


def jpeg_backend_version() -> str:
    """The version of the package behind :func:`jpeg_backend`, e.g. ``"0.17.0"``."""
    return _codec().version


def available_jpeg_backends() -> tuple[str, ...]:
    """The codecs that are installed and work here, in order of preference."""
    return tuple(name for name in BACKENDS if _load(name)[0] is not None)


def jpeg(images: torch.Tensor, quality: int, subsampling: str = "4:2:0") -> torch.Tensor:
    """Compress and decompress a float batch in [0, 1] (grayscale or RGB) at ``quality``.

    ``subsampling`` is ``"4:2:0"`` (colour at half resolution: the default of libjpeg, Pillow,
    TorchCodec and torchvision) or ``"4:4:4"`` (every colour sample kept); grayscale has no
    colour to subsample. Returns float images in [0, 1] on the input's device. Coded by the codec
    :func:`jpeg_backend` names: on the CPU bit-identical to Pillow; on a GPU decoded with
    nvjpeg, within ``GPU_DECODE_MEAN_GAP`` of that. Not differentiable: use
    ``jpeg_differentiable`` when an attack must see through it.
    """
    quality = check_jpeg_input(images, quality)
    check_subsampling(subsampling)
    if len(images) == 0:
        return images.clone()
    if subsampling == "4:4:4" and images.shape[1] == 3:
        return _jpeg_444_mosaic(to_uint8(images.detach()).cpu(), quality).to(
            images.device, images.dtype).div_(255)
    # encode on the CPU (libjpeg, the bit-exact reference); decode on the images' GPU (one
    # batched nvjpeg call, from CPU bytes) or on the CPU (libjpeg) for any other device
    codec = _codec()
    pixels = to_uint8(images.detach()).cpu().contiguous()
    device = images.device if images.device.type == "cuda" else torch.device("cpu")
    decoded = codec.decode(codec.encode(list(pixels), quality), device)
    return torch.stack(decoded).to(images.device, images.dtype).div_(255)


def _jpeg_444_mosaic(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """4:4:4 JPEG of a uint8 N x 3 x H x W batch through Pillow, as one mosaic image.

    Without subsampling libjpeg codes each 8x8 block of each channel on its own (the colour
    conversion is per pixel, and the decoder has no upsampling to mix neighbours), so a mosaic
    of images padded to multiples of 8 by repeating their edges, as libjpeg pads, decodes to
    exactly the images Pillow gives one by one (tested at every quality). One encoder call for
    the batch instead of a Python loop over images.
    """
    n, c, h, w = pixels.shape
    padded = pad_to_multiple(pixels.float(), 8).to(torch.uint8)
    h8, w8 = padded.shape[-2:]
    columns = max(1, min(n, 65_000 // w8, math.ceil(math.sqrt(n * h8 / w8))))
    rows = math.ceil(n / columns)
    tiles = torch.cat([padded, padded.new_zeros(rows * columns - n, c, h8, w8)])
    mosaic = tiles.reshape(rows, columns, c, h8, w8).permute(0, 3, 1, 4, 2)
    buffer = io.BytesIO()
    Image.fromarray(mosaic.reshape(rows * h8, columns * w8, c).numpy()).save(
        buffer, format="JPEG", quality=quality, subsampling=0)
    with Image.open(buffer) as decoded:
        out = torch.from_numpy(np.asarray(decoded).copy())
    out = out.reshape(rows, h8, columns, w8, c).permute(0, 2, 4, 1, 3)
    return out.reshape(rows * columns, c, h8, w8)[:n, :, :h, :w]


def chroma_subsampled(images: torch.Tensor) -> torch.Tensor:
    """4:2:0 chroma subsampling alone, as a JPEG codec does it, with no quantization.

    RGB to YCbCr, the colour channels averaged over 2x2 squares and brought back with the
    decoder's upsampling, back to RGB, rounded to the 8-bit grid: what JPEG's subsampling
    throws away, without the DCT step. Float arithmetic, so within a level or so of what
    libjpeg's integer arithmetic would give. Grayscale images come back only rounded.
    """
    check_images(images)
    if images.shape[1] == 1:
        return quantize(images)
    _check_three_channels(images)
    h, w = images.shape[-2:]
    ycbcr = rgb_to_ycbcr(pad_to_multiple(images, 2))
    chroma = upsample_chroma(subsample_chroma(ycbcr[:, 1:]))
    rgb = ycbcr_to_rgb(torch.cat([ycbcr[:, :1], chroma], dim=1))[..., :h, :w]
    return quantize(rgb.clamp(0, 1))


def encoded_sizes(images: torch.Tensor, quality: int) -> torch.Tensor:
    """The JPEG file size in bytes of each image at ``quality`` (int64, on the CPU).

    Encoded with libjpeg on the CPU whatever the images' device, so the sizes are those of the
    files Pillow saves at that quality (the tests check), not of a GPU encoder's.
    """
    quality = check_jpeg_input(images, quality)
    if len(images) == 0:
        return torch.zeros(0, dtype=torch.int64)
    pixels = to_uint8(images.detach().cpu()).contiguous()
    encoded = _codec().encode(list(pixels), quality)
    return torch.tensor([len(data) for data in encoded], dtype=torch.int64)


# The building blocks. Colours are JFIF's full-range YCbCr (ITU-R BT.601 weights) divided by
# 255 to lie in [0, 1] like the RGB images, so grays have chroma 128/255; the DCT works on
# 0..255 values centred on 0, the scale the quantization tables are written for.
CHROMA_CENTRE = 128 / 255

# Annex K of the JPEG standard (ITU-T T.81): the example tables every libjpeg uses at quality
# 50, in row-major order (row: vertical frequency, column: horizontal frequency).
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
) + ((99,) * 8,) * 4


# The gap between ``jpeg_differentiable`` and ``jpeg`` (in [0, 1] units) that the tests allow
# on real CIFAR-10 and MNIST test images at qualities 10 to 100: the mean absolute pixel
# difference per rounding mode, and the largest one; about 1.25 to 1.35 times the largest
# measured (see ``jpeg_differentiable``).
DIFFERENTIABLE_MEAN_GAP = {"cubic": 2.5 / 255, "straight-through": 1.6 / 255}
DIFFERENTIABLE_MAX_GAP = 64 / 255


def rgb_to_ycbcr(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] to JFIF YCbCr / 255: brightness Y, then blue and red differences."""
    _check_three_channels(images)
    r, g, b = images.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = CHROMA_CENTRE - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = CHROMA_CENTRE + 0.5 * r - 0.418688 * g - 0.081312 * b
    return torch.stack([y, cb, cr], dim=1)


def ycbcr_to_rgb(images: torch.Tensor) -> torch.Tensor:
    """JFIF YCbCr / 255 back to RGB (not clamped: a codec's output can leave [0, 1])."""
    _check_three_channels(images)
    y, cb, cr = images.unbind(1)
    cb, cr = cb - CHROMA_CENTRE, cr - CHROMA_CENTRE
    r = y + 1.402 * cr
    g = y - 0.344136 * cb - 0.714136 * cr
    b = y + 1.772 * cb
    return torch.stack([r, g, b], dim=1)


def quantization_tables(quality: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (luma, chroma) 8x8 quantization steps libjpeg uses at ``quality``, as float32.

    The Annex K tables scaled by IJG's rule in libjpeg's integer arithmetic: scale
    ``5000 // quality`` below 50, else ``200 - 2 * quality`` (percent); each step is
    ``(base * scale + 50) // 100`` kept within 1..255. Quality 50 gives the tables themselves,
    quality 100 all ones (nothing lost in quantization beyond rounding to integers).
    """
    quality = check_quality(quality)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return _scaled_table(LUMA_TABLE, scale), _scaled_table(CHROMA_TABLE, scale)


def _scaled_table(base: tuple[tuple[int, ...], ...], scale: int) -> torch.Tensor:
    return ((torch.tensor(base) * scale + 50) // 100).clamp(1, 255).float()


def dct_matrix(dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
    """The orthonormal 8x8 DCT-II matrix D: row u samples the u-th cosine at the 8 pixels.

    For a block B, ``D @ B @ D.T`` are its 64 coefficients and ``D.T @ C @ D`` inverts that.
    """
    u = torch.arange(8, dtype=torch.float64)[:, None]
    i = torch.arange(8, dtype=torch.float64)[None, :]
    d = torch.cos((2 * i + 1) * u * math.pi / 16) * math.sqrt(2 / 8)
    d[0] = math.sqrt(1 / 8)
    return d.to(dtype).to(device)  # cast first: some devices have no float64


def to_blocks(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W (sides multiples of 8) to N x C x H/8 x W/8 x 8 x 8 blocks."""
    n, c, h, w = images.shape
    if h % 8 or w % 8:
        raise ValueError(f"the sides must be multiples of 8, got {h} x {w}; pad with "
                         "`pad_to_multiple(x, 8)` first.")
    return images.reshape(n, c, h // 8, 8, w // 8, 8).transpose(3, 4)


def from_blocks(blocks: torch.Tensor) -> torch.Tensor:
    """N x C x H/8 x W/8 x 8 x 8 blocks back to N x C x H x W images."""
    n, c, rows, columns = blocks.shape[:4]
    return blocks.transpose(3, 4).reshape(n, c, rows * 8, columns * 8)


def block_dct(images: torch.Tensor) -> torch.Tensor:
    """The DCT of each 8x8 block of each channel, in place of the block (same shape).

    Orthonormal, so no energy is lost or gained; the top-left (DC) coefficient of a block is 8
    times its mean. Sides must be multiples of 8 (``pad_to_multiple`` first).
    """
    d = dct_matrix(images.dtype, images.device)
    return from_blocks(d @ to_blocks(images) @ d.T)


def block_idct(coefficients: torch.Tensor) -> torch.Tensor:
    """The inverse of ``block_dct``: each 8x8 block of coefficients back to pixels."""
    d = dct_matrix(coefficients.dtype, coefficients.device)
    return from_blocks(d.T @ to_blocks(coefficients) @ d)


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """Repeat the last row and column until both sides are multiples of ``multiple``.

    What libjpeg does with partial blocks; crop the result back with ``[..., :h, :w]``.
    """
    h, w = images.shape[-2:]
    padding = (0, -w % multiple, 0, -h % multiple)
    return torch.nn.functional.pad(images, padding, mode="replicate") if any(padding) else images


def subsample_chroma(chroma: torch.Tensor) -> torch.Tensor:
    """4:2:0 subsampling: the mean of each 2x2 square (even sides), as libjpeg's encoder does."""
    return torch.nn.functional.avg_pool2d(chroma, 2)


def upsample_chroma(chroma: torch.Tensor) -> torch.Tensor:
    """Back to full resolution, as libjpeg's decoder does ("fancy upsampling").

    Each new sample is 3/4 of the nearest stored one and 1/4 of the next, in each direction,
    with the edges repeated: exactly bilinear interpolation at half-pixel centres.
    """
    return torch.nn.functional.interpolate(chroma, scale_factor=2, mode="bilinear",
                                           align_corners=False)


def cubic_round(x: torch.Tensor) -> torch.Tensor:
    """Shin & Song's (2017) smooth rounding: ``r + (x - r)**3`` with r = round(x) a constant.

    Forward it is within 1/8 of round(x); its gradient ``3 (x - r)**2`` is never negative.
    """
    r = torch.round(x).detach()
    return r + (x - r) ** 3


def straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, the identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


ROUNDINGS = {"cubic": cubic_round, "straight-through": straight_through_round}


def quantize_blocks(channels: torch.Tensor, table: torch.Tensor,
                    rounding: Callable[[torch.Tensor], torch.Tensor] = torch.round,
                    ) -> torch.Tensor:
    """JPEG's lossy step on channels in [0, 1] (sides multiples of 8), back to pixels.

    Each block's DCT coefficients (of 0..255 values centred on 0) are rounded to multiples of
    the 8x8 ``table`` (or of one table per channel, stacked C x 8 x 8). Not clamped.
    """
    h, w = channels.shape[-2:]
    table = table.to(channels.device, channels.dtype)  # 8 x 8, or C x 8 x 8: one per channel
    steps = table.repeat(*[1] * (table.ndim - 2), h // 8, w // 8)
    coefficients = block_dct(channels * 255 - 128)
    return (block_idct(rounding(coefficients / steps) * steps) + 128) / 255


def jpeg_differentiable(images: torch.Tensor, quality: int, rounding: str = "cubic",
                        subsampling: str = "4:2:0") -> torch.Tensor:
    """A JPEG round trip made of differentiable tensor operations, close to ``jpeg``.

    The same steps as libjpeg at 4:2:0 (grayscale: luma only): YCbCr, chroma subsampling,
    8x8 DCT, rounding to multiples of the quality's tables, inverse DCT, upsampling, RGB,
    clamped to [0, 1]; ``subsampling="4:4:4"`` skips the subsampling, as ``jpeg`` does.
    Rounding is ``"cubic"`` (Shin & Song 2017) or ``"straight-through"``.
    It works on any device and keeps the graph for attacks. It does not copy the codec's
    integer arithmetic or round its output to 8 bits, so it differs from ``jpeg`` a little.
    Measured against ``jpeg`` on 256 CIFAR-10 and 256 MNIST test images (CPU, torchvision
    0.29's libjpeg-turbo), mean / largest absolute pixel difference, in 1/255:

        quality                 10       30       50       75       90       100
        CIFAR-10, cubic         1.95/43  1.60/27  1.47/27  1.37/21  1.23/14  0.62/4
        CIFAR-10, straight      0.81/47  1.18/29  1.20/30  1.26/21  1.24/16  0.64/5
        MNIST, cubic            0.94/32  0.69/34  0.57/28  0.45/15  0.30/10  0.09/2
        MNIST, straight         0.14/35  0.17/37  0.16/27  0.21/17  0.25/10  0.10/2
        JPEG itself, CIFAR-10   13.71    9.15     7.66     5.99     4.08     2.04

    (the last row: mean |jpeg(x) - x|, what JPEG changes). Over qualities 10, 20, ..., 100 the
    largest means were 1.95 (cubic) and 1.29 (straight-through) and the largest pixel 47; the
    tests hold it to ``DIFFERENTIABLE_MEAN_GAP`` and ``DIFFERENTIABLE_MAX_GAP``. Most of the
    mean gap on colour images comes from the codec's integer colour arithmetic (grayscale
    MNIST, without it, is much closer); the few large ones are coefficients rounding the other
    way. Cubic rounding is further from ``jpeg`` forward (within 1/8 of a step per coefficient),
    and its gradient fades near a step, where straight-through passes it all. These are pixel
    gaps only: whether a model predicts the same on both outputs is not measured here.
    """
    check_jpeg_input(images, quality)
    check_subsampling(subsampling)
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {sorted(ROUNDINGS)}, got {rounding!r}.")
    if len(images) == 0:
        return images.clone()
    luma_table, chroma_table = quantization_tables(quality)
    round_ = ROUNDINGS[rounding]
    h, w = images.shape[-2:]
    if images.shape[1] == 1:
        luma = quantize_blocks(pad_to_multiple(images, 8), luma_table, round_)
        return luma[..., :h, :w].clamp(0, 1)
    if subsampling == "4:4:4":
        ycbcr = quantize_blocks(rgb_to_ycbcr(pad_to_multiple(images, 8)),
                                torch.stack([luma_table, chroma_table, chroma_table]), round_)
        return ycbcr_to_rgb(ycbcr[..., :h, :w]).clamp(0, 1)
    ycbcr = rgb_to_ycbcr(pad_to_multiple(images, 16))
    luma = quantize_blocks(ycbcr[:, :1], luma_table, round_)
    chroma = quantize_blocks(subsample_chroma(ycbcr[:, 1:]), chroma_table, round_)
    # the decoder upsamples only the chroma samples of the image itself, edges repeated
    chroma = upsample_chroma(chroma[..., :(h + 1) // 2, :(w + 1) // 2])[..., :h, :w]
    return ycbcr_to_rgb(torch.cat([luma[..., :h, :w], chroma], dim=1)).clamp(0, 1)
