"""helpers.jpeg: bit-identical to Pillow on the CPU, every batch size, and clear input errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.jpeg import check_images, check_quality, jpeg, to_uint8

pytestmark = pytest.mark.usefixtures("single_thread")

QUALITIES = [10, 50, 75, 95, 100]


def pillow_jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    """The reference: each image through Pillow's encoder (default 4:2:0) and decoder."""
    out = []
    for image in to_uint8(images):
        pixels = image.permute(1, 2, 0).numpy()
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            assert decoded.mode == ("L" if pixels.shape[2] == 1 else "RGB")
            array = np.asarray(decoded)
        array = array[..., None] if array.ndim == 2 else array
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize("which", ["cifar", "mnist"])
def test_bit_identical_to_pillow(cifar_test, mnist_test, which, quality):
    x = (cifar_test if which == "cifar" else mnist_test)[0][:48]
    out = jpeg(x, quality)
    reference = pillow_jpeg(x, quality)
    assert out.shape == x.shape
    assert torch.equal(out, reference)
    assert not torch.equal(out, x)  # it did compress (even quality 100 rounds colours)


def test_bit_identical_to_pillow_odd_sizes():
    """Sizes that are not multiples of the 8x8 (16x16 with subsampling) blocks."""
    x = torch.rand(3, 3, 17, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(jpeg(x, 60), pillow_jpeg(x, 60))
    gray = torch.rand(2, 1, 5, 31, generator=torch.Generator().manual_seed(1))
    assert torch.equal(jpeg(gray, 60), pillow_jpeg(gray, 60))


@pytest.mark.parametrize("batch", [0, 1, 2, 7])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_batch_size(batch, channels):
    x = torch.rand(batch, channels, 16, 16, generator=torch.Generator().manual_seed(batch))
    out = jpeg(x, 75)
    assert out.shape == x.shape and out.dtype == torch.float32 and out.device == x.device
    if batch:
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        assert torch.equal(out, pillow_jpeg(x, 75))
        # each image is compressed on its own: a batch equals its images one by one
        assert torch.equal(out, torch.cat([jpeg(x[i:i + 1], 75) for i in range(batch)]))
    else:
        assert out is not x  # a new tensor even when there is nothing to compress


def test_output_is_float_on_the_8_bit_grid_in_unit_range(cifar_test):
    x = cifar_test[0][:16]
    out = jpeg(x, 30)
    assert out.dtype == torch.float32 and out.device == x.device
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert torch.equal(to_uint8(out).float() / 255, out)
    assert jpeg(x.double(), 30).dtype == torch.float64


def test_input_is_not_modified_and_gradients_are_not_required(cifar_test):
    x = cifar_test[0][:4].clone().requires_grad_(True)
    before = x.detach().clone()
    out = jpeg(x, 50)
    assert torch.equal(x.detach(), before)
    assert not out.requires_grad


def test_memory_layout_does_not_matter(cifar_test):
    x = cifar_test[0][:8]
    expected = jpeg(x, 75)
    assert torch.equal(jpeg(x.contiguous(memory_format=torch.channels_last), 75), expected)
    hwc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # e.g. from a numpy HWC array
    assert torch.equal(jpeg(hwc, 75), expected)
    assert torch.equal(jpeg(x[:, :, ::2, ::2], 75), jpeg(x[:, :, ::2, ::2].contiguous(), 75))


def test_lower_quality_means_larger_error(cifar_test, mnist_test):
    for x in (cifar_test[0][:64], mnist_test[0][:64]):
        errors = [(jpeg(x, q) - x).abs().mean().item() for q in (5, 10, 30, 50, 75, 95, 100)]
        assert errors == sorted(errors, reverse=True), errors
        assert errors[0] > 3 * errors[-1]


@pytest.mark.parametrize("quality", [0, 101, -5, 75.5, True, False, "75", None])
def test_bad_quality_raises(quality):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="quality"):
        jpeg(x, quality)


@pytest.mark.parametrize("quality", [1, 100, np.int64(40), torch.tensor(40).item()])
def test_integer_like_quality_is_accepted(quality):
    assert check_quality(quality) == int(quality)
    assert jpeg(torch.rand(1, 3, 8, 8), quality).shape == (1, 3, 8, 8)


@pytest.mark.parametrize(("images", "hint"), [
    (torch.rand(2, 3, 8, 8) * 1.5, "[0, 1]"),
    (torch.rand(2, 3, 8, 8) - 0.5, "[0, 1]"),
    (torch.rand(2, 3, 8, 8) * 255, "clamp or rescale"),
    (torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), "x.float() / 255"),
    (torch.rand(3, 8, 8), "x[None]"),
    (torch.rand(8, 8), "N x C x H x W"),
    (np.zeros((1, 3, 8, 8), np.float32), "float tensor"),
])
def test_bad_images_raise_with_a_helpful_message(images, hint):
    with pytest.raises(ValueError) as info:
        jpeg(images, 75)
    assert hint in str(info.value)


@pytest.mark.parametrize("channels", [2, 4])
def test_unsupported_channel_counts_raise(channels):
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\) channels"):
        jpeg(torch.rand(1, channels, 8, 8), 75)


def test_check_images_accepts_the_bounds_exactly():
    check_images(torch.zeros(1, 1, 2, 2))
    check_images(torch.ones(1, 3, 2, 2))
    check_images(torch.empty(0, 3, 2, 2))


def test_nan_images_are_rejected():
    x = torch.rand(1, 3, 8, 8)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError):
        jpeg(x, 75)
