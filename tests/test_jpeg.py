"""helpers.jpeg: bit-identical to Pillow on the CPU with each installed codec (TorchCodec and
torchvision; CI must have both), within its stated tolerance on a GPU, every batch size, and
clear input errors; the choice of codec, and ``import helpers`` without one; the building blocks
against independent references; the differentiable round trip within its documented gap to the
real codec on real images; file sizes."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import textwrap
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import jpeg as jpeg_module
from helpers.jpeg import (
    BACKEND_ENV,
    BACKENDS,
    DIFFERENTIABLE_MAX_GAP,
    DIFFERENTIABLE_MEAN_GAP,
    GPU_DECODE_MEAN_GAP,
    ROUNDINGS,
    available_jpeg_backends,
    block_dct,
    block_idct,
    check_images,
    check_quality,
    check_subsampling,
    chroma_subsampled,
    cubic_round,
    encoded_sizes,
    jpeg,
    jpeg_backend,
    jpeg_backend_version,
    jpeg_differentiable,
    pad_to_multiple,
    quantization_tables,
    quantize_blocks,
    rgb_to_ycbcr,
    straight_through_round,
    subsample_chroma,
    to_uint8,
    upsample_chroma,
    ycbcr_to_rgb,
)

pytestmark = pytest.mark.usefixtures("single_thread")

QUALITIES = [10, 50, 75, 95, 100]
ROOT = Path(__file__).resolve().parents[1]


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Each JPEG codec in turn, forced through LESSON_JPEG_BACKEND; one that is not installed
    is skipped, except TorchCodec under CI (requirements-ci.txt pins it), which must test both."""
    name = request.param
    if name not in available_jpeg_backends():
        why = jpeg_module._load(name)[1]
        if name == "torchcodec" and under_ci():
            pytest.fail(f"CI must test both JPEG codecs, but {why}: "
                        "pip install -r requirements-ci.txt")
        pytest.skip(why)
    monkeypatch.setenv(BACKEND_ENV, name)
    assert jpeg_backend() == name
    return name


def pillow_jpeg(images: torch.Tensor, quality: int, subsampling: int = -1) -> torch.Tensor:
    """The reference: each image through Pillow's encoder (default -1: 4:2:0) and decoder."""
    out = []
    for image in to_uint8(images):
        pixels = image.permute(1, 2, 0).numpy()
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels)
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=quality, subsampling=subsampling)
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            assert decoded.mode == ("L" if pixels.shape[2] == 1 else "RGB")
            array = np.asarray(decoded)
        array = array[..., None] if array.ndim == 2 else array
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize("which", ["cifar", "mnist"])
def test_bit_identical_to_pillow(cifar_test, mnist_test, which, quality, backend):
    x = (cifar_test if which == "cifar" else mnist_test)[0][:48]
    out = jpeg(x, quality)
    reference = pillow_jpeg(x, quality)
    assert out.shape == x.shape
    assert torch.equal(out, reference)
    assert not torch.equal(out, x)  # it did compress (even quality 100 rounds colours)


def test_bit_identical_to_pillow_odd_sizes(backend):
    """Sizes that are not multiples of the 8x8 (16x16 with subsampling) blocks."""
    x = torch.rand(3, 3, 17, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(jpeg(x, 60), pillow_jpeg(x, 60))
    gray = torch.rand(2, 1, 5, 31, generator=torch.Generator().manual_seed(1))
    assert torch.equal(jpeg(gray, 60), pillow_jpeg(gray, 60))


def test_both_subsamplings_bit_identical_to_pillow_at_every_quality(cifar_test, backend):
    """4:2:0 against Pillow's subsampling=2 and 4:4:4 (the mosaic) against subsampling=0, at
    every quality 1-100, on real images, a batch that does not tile a square and odd sizes."""
    generator = torch.Generator().manual_seed(2)
    batches = [cifar_test[0][:13], torch.rand(3, 3, 17, 9, generator=generator),
               torch.rand(2, 3, 8, 40, generator=generator)]
    for quality in range(1, 101):
        for x in batches:
            assert torch.equal(jpeg(x, quality, "4:2:0"), pillow_jpeg(x, quality, 2)), quality
            assert torch.equal(jpeg(x, quality, "4:4:4"), pillow_jpeg(x, quality, 0)), quality


def test_subsampling_4_4_4_keeps_more_colour_and_leaves_gray_alone(cifar_test, mnist_test):
    x = cifar_test[0][:64]
    for quality, ratio in ((100, 0.5), (75, 0.9)):  # measured 0.22 and 0.83
        error_420 = (jpeg(x, quality, "4:2:0") - x).abs().mean()
        error_444 = (jpeg(x, quality, "4:4:4") - x).abs().mean()
        assert error_444 < ratio * error_420, quality
    gray = mnist_test[0][:16]  # one channel: nothing to subsample
    assert torch.equal(jpeg(gray, 50, "4:4:4"), jpeg(gray, 50, "4:2:0"))


def test_unknown_subsampling_raises_and_says_what_to_use(cifar_test):
    x = cifar_test[0][:2]
    for bad in ("4:2:2", 2, None):
        with pytest.raises(ValueError, match="4:4:4"):
            jpeg(x, 75, bad)
        with pytest.raises(ValueError, match="4:4:4"):
            jpeg_differentiable(x, 75, subsampling=bad)
        with pytest.raises(ValueError, match="4:4:4"):
            check_subsampling(bad)


def test_chroma_subsampling_alone(cifar_test, mnist_test):
    """4:2:0 without quantization: on the 8-bit grid, the brightness kept, the colour at half
    resolution (a flat colour survives exactly), and close to JPEG at quality 100 (whose
    quantization steps are all 1)."""
    x = cifar_test[0][:64]
    out = chroma_subsampled(x)
    assert out.shape == x.shape
    assert torch.equal(out, to_uint8(out).float() / 255)
    luma_change = (rgb_to_ycbcr(out)[:, 0] - rgb_to_ycbcr(x)[:, 0]).abs()
    assert luma_change.mean() < 0.5 / 255  # rounding, and clamping colours out of range
    assert (out - x).abs().mean() > 1 / 255  # the colour did change
    assert (out - jpeg(x, 100)).abs().mean() < 0.7 / 255  # measured 0.52 / 255
    flat = torch.tensor([0.8, 0.4, 0.2]).view(1, 3, 1, 1).expand(2, 3, 9, 7).contiguous()
    assert torch.allclose(chroma_subsampled(flat), to_uint8(flat).float() / 255)
    gray = mnist_test[0][:8]
    assert torch.equal(chroma_subsampled(gray), gray)  # nothing to subsample


@pytest.mark.parametrize("rounding", sorted(ROUNDINGS))
def test_differentiable_without_subsampling_is_close_to_the_real_codec(cifar_test, rounding):
    """4:4:4: the same bounds as 4:2:0 (measured largest pixel 40/255 from quality 20 up; at
    quality 10 straight-through rounding reaches 64/255, which is why 10 is left out)."""
    x = cifar_test[0]
    for quality in (20, 50, 75, 100):
        real = jpeg(x, quality, "4:4:4")
        gap = (jpeg_differentiable(x, quality, rounding, "4:4:4") - real).abs()
        assert gap.mean() <= DIFFERENTIABLE_MEAN_GAP[rounding], (quality, gap.mean() * 255)
        assert gap.max() <= DIFFERENTIABLE_MAX_GAP, (quality, gap.max() * 255)
        assert gap.mean() < 0.5 * (jpeg(x, quality) - real).abs().mean() + 1 / 255


@pytest.mark.parametrize("batch", [0, 1, 2, 7])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_batch_size(batch, channels, backend):
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


def test_memory_layout_does_not_matter(cifar_test, backend):
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


BAD_QUALITIES = [0, 101, -5, 75.5, True, False, "75", None]
BAD_IMAGES = [
    (torch.rand(2, 3, 8, 8) * 1.5, "[0, 1]"),
    (torch.rand(2, 3, 8, 8) - 0.5, "[0, 1]"),
    (torch.rand(2, 3, 8, 8) * 255, "clamp or rescale"),
    (torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8), "x.float() / 255"),
    (torch.rand(3, 8, 8), "x[None]"),
    (torch.rand(8, 8), "N x C x H x W"),
    (np.zeros((1, 3, 8, 8), np.float32), "float tensor"),
]


@pytest.mark.parametrize("quality", BAD_QUALITIES)
def test_bad_quality_raises(quality):
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="quality"):
        jpeg(x, quality)


@pytest.mark.parametrize("quality", [1, 100, np.int64(40), torch.tensor(40).item()])
def test_integer_like_quality_is_accepted(quality):
    assert check_quality(quality) == int(quality)
    assert jpeg(torch.rand(1, 3, 8, 8), quality).shape == (1, 3, 8, 8)


@pytest.mark.parametrize(("images", "hint"), BAD_IMAGES)
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


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinite_images_are_rejected(bad):
    x = torch.rand(1, 3, 8, 8)
    x[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        jpeg(x, 75)


# --- the codec behind jpeg: which one, and helpers without one ---------------------------------

@pytest.fixture
def fresh_codecs():
    """Forget which codecs loaded (and the fallback warning), before and after the test."""
    jpeg_module._load.cache_clear()
    jpeg_module._warn_once.cache_clear()
    yield
    jpeg_module._load.cache_clear()
    jpeg_module._warn_once.cache_clear()


def test_torchcodec_is_preferred_and_either_can_be_forced(monkeypatch, fresh_codecs):
    available = available_jpeg_backends()
    assert available, "no JPEG codec at all"
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert jpeg_backend() == available[0]  # TorchCodec when it works
    for setting in ("auto", "", "  AUTO "):
        monkeypatch.setenv(BACKEND_ENV, setting)
        assert jpeg_backend() == available[0]
    for name in available:
        monkeypatch.setenv(BACKEND_ENV, f" {name.upper()} ")
        assert jpeg_backend() == name
        assert jpeg_backend_version()[0].isdigit()


@pytest.mark.parametrize("setting", ["Pillow", "torch-codec", "nvjpeg"])
def test_an_unknown_backend_is_an_error_that_lists_the_choices(monkeypatch, setting):
    monkeypatch.setenv(BACKEND_ENV, setting)
    for call in (jpeg_backend, lambda: jpeg(torch.rand(1, 3, 8, 8), 75),
                 lambda: encoded_sizes(torch.rand(1, 3, 8, 8), 75)):
        with pytest.raises(ValueError, match=f"{BACKEND_ENV}='{setting}'") as info:
            call()
        assert "'torchcodec', 'torchvision'" in str(info.value) and "unset" in str(info.value)


def test_a_missing_torchcodec_falls_back_silently_unless_forced(monkeypatch, fresh_codecs):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # `import torchcodec` now fails
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    if "torchvision" not in available_jpeg_backends():
        pytest.skip("torchvision has no JPEG codec here")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning when not installed
        assert jpeg_backend() == "torchvision"
    assert available_jpeg_backends() == ("torchvision",)
    monkeypatch.setenv(BACKEND_ENV, "torchcodec")
    with pytest.raises(ImportError, match="torchcodec is not installed") as info:
        jpeg(torch.rand(1, 3, 8, 8), 75)
    assert "pip install 'torchcodec>=0.16'" in str(info.value)
    assert f"unset {BACKEND_ENV}" in str(info.value)


def test_a_broken_torchcodec_falls_back_with_a_warning(monkeypatch, fresh_codecs):
    """Installed but not loading (e.g. a CUDA wheel beside a CPU-only torch: OSError)."""
    def broken():
        raise OSError("Could not load this library: libtorchcodec_image.so")
    monkeypatch.setitem(jpeg_module._LOADERS, "torchcodec", broken)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    if "torchvision" not in available_jpeg_backends():
        pytest.skip("torchvision has no JPEG codec here")
    with pytest.warns(UserWarning, match="JPEG through torchvision, because torchcodec .* "
                                         "does not work here \\(OSError: Could not load"):
        x = torch.rand(2, 3, 8, 8)
        assert torch.equal(jpeg(x, 60), pillow_jpeg(x, 60))
    monkeypatch.setenv(BACKEND_ENV, "torchcodec")
    with pytest.raises(ImportError, match="torchcodec .* does not work here"):
        jpeg_backend()


def test_no_codec_at_all_says_what_to_install(monkeypatch, fresh_codecs):
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    def removed():
        raise ImportError("cannot import name 'encode_jpeg' from 'torchvision.io'")
    monkeypatch.setitem(jpeg_module._LOADERS, "torchvision", removed)
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert available_jpeg_backends() == ()
    for call in (jpeg_backend, lambda: jpeg(torch.rand(1, 3, 8, 8), 75),
                 lambda: encoded_sizes(torch.rand(1, 3, 8, 8), 75)):
        with pytest.raises(ImportError, match="No JPEG codec works here") as info:
            call()
        assert "torchcodec is not installed" in str(info.value)
        assert "cannot import name 'encode_jpeg'" in str(info.value)
        assert "pip install 'torchcodec>=0.16'" in str(info.value)
    # what needs no codec still works
    assert jpeg(torch.rand(1, 3, 8, 8), 75, "4:4:4").shape == (1, 3, 8, 8)
    assert jpeg_differentiable(torch.rand(1, 3, 8, 8), 75).shape == (1, 3, 8, 8)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop(BACKEND_ENV, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_helpers_loads_no_jpeg_codec_and_survives_losing_them():
    """In a fresh interpreter (one, as starting one costs seconds): ``import helpers`` imports
    no codec and binds none of their names in helpers.jpeg. Then helpers is imported again as
    after torchvision removes encode_jpeg/decode_jpeg, with no TorchCodec: it still imports,
    everything but the codec works, and jpeg() says what to install."""
    result = run_python("""
        import sys
        import helpers
        from helpers import jpeg
        assert not [m for m in sys.modules if m.split(".")[0] == "torchcodec"], "torchcodec"
        assert not {"encode_jpeg", "decode_jpeg", "JpegEncoder"} & set(vars(jpeg)), "bound"
        print("backend:", jpeg.jpeg_backend())

        for name in [m for m in sys.modules if m.split(".")[0] == "helpers"]:
            del sys.modules[name]
        import torchvision.io
        import torchvision.transforms.v2.functional  # torchvision's own users of the codec
        del torchvision.io.encode_jpeg, torchvision.io.decode_jpeg
        for name in [m for m in sys.modules if m.split(".")[0] == "torchcodec"]:
            del sys.modules[name]
        sys.modules["torchcodec"] = None  # not installed
        import helpers
        import torch
        x = torch.rand(2, 3, 16, 16)
        assert helpers.jpeg.jpeg_differentiable(x, 50).shape == x.shape
        assert helpers.jpeg.jpeg(x, 50, "4:4:4").shape == x.shape  # Pillow's
        try:
            helpers.jpeg.jpeg(x, 50)
        except ImportError as error:
            print(error)
        else:
            raise AssertionError("jpeg() worked without a codec")
    """)
    assert result.returncode == 0, result.stderr
    assert f"backend: {available_jpeg_backends()[0]}" in result.stdout
    assert "No JPEG codec works here" in result.stdout
    assert "pip install 'torchcodec>=0.16'" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvjpeg)")
@pytest.mark.parametrize("which", ["cifar", "mnist"])
def test_gpu_decoding_is_within_its_stated_tolerance_of_libjpeg(cifar_test, mnist_test, which,
                                                                backend):
    """On a GPU the same libjpeg files are decoded by nvjpeg (one batched call), which is not
    bit-identical to libjpeg: held to GPU_DECODE_MEAN_GAP (2/255 mean absolute difference,
    torchvision's own bound for nvjpeg against libjpeg) of the CPU's Pillow-exact result. What
    still runs on the CPU stays exact: 4:4:4 (Pillow) and the file sizes (libjpeg's encoder)."""
    x = (cifar_test if which == "cifar" else mnist_test)[0][:128]
    gpu_x = x.cuda()
    for quality in QUALITIES:
        cpu = jpeg(x, quality)
        gpu = jpeg(gpu_x, quality)
        assert gpu.device == gpu_x.device and gpu.dtype == x.dtype and gpu.shape == x.shape
        assert torch.equal(to_uint8(gpu).float() / 255, gpu)  # on the 8-bit grid
        gap = (gpu.cpu() - cpu).abs()
        assert gap.mean() <= GPU_DECODE_MEAN_GAP, (quality, 255 * gap.mean(), 255 * gap.max())
    assert torch.equal(jpeg(gpu_x, 75, "4:4:4").cpu(), pillow_jpeg(x, 75, 0))
    assert torch.equal(encoded_sizes(gpu_x, 75), encoded_sizes(x, 75))


# --- the building blocks ----------------------------------------------------------------------

# Annex K of the JPEG standard, typed in again here so that a typo in helpers.jpeg shows.
ANNEX_K_LUMA = [
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99],
]
ANNEX_K_CHROMA = [
    [17, 18, 24, 47, 99, 99, 99, 99],
    [18, 21, 26, 66, 99, 99, 99, 99],
    [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99],
] + [[99] * 8] * 4


def test_quantization_tables_at_quality_50_are_annex_k():
    luma, chroma = quantization_tables(50)
    assert luma.shape == chroma.shape == (8, 8) and luma.dtype == torch.float32
    assert torch.equal(luma, torch.tensor(ANNEX_K_LUMA, dtype=torch.float32))
    assert torch.equal(chroma, torch.tensor(ANNEX_K_CHROMA, dtype=torch.float32))


def test_quantization_tables_at_quality_100_are_all_ones_and_at_1_all_255():
    for table in quantization_tables(100):
        assert torch.equal(table, torch.ones(8, 8))
    for table in quantization_tables(1):
        assert torch.equal(table, torch.full((8, 8), 255.0))


def test_quantization_tables_are_those_in_the_files_jpeg_writes(backend):
    """Every quality: the tables in the codec's JPEG files, read back by Pillow."""
    pixels = torch.zeros(3, 8, 8, dtype=torch.uint8)
    for quality in range(1, 101):
        (encoded,) = jpeg_module._codec().encode([pixels], quality)
        with Image.open(io.BytesIO(encoded.numpy().tobytes())) as image:
            written = image.quantization
        expected = [torch.tensor(written[i], dtype=torch.float32).reshape(8, 8) for i in (0, 1)]
        luma, chroma = quantization_tables(quality)
        assert torch.equal(luma, expected[0]) and torch.equal(chroma, expected[1]), quality


def test_lower_quality_never_gives_smaller_steps():
    tables = [torch.stack(quantization_tables(q)) for q in range(1, 101)]
    for quality, (lower, higher) in enumerate(pairwise(tables), start=1):
        assert (lower >= higher).all(), quality
    assert (tables[9] > tables[89]).all()  # quality 10 against 90: every step is larger


@pytest.mark.parametrize("quality", BAD_QUALITIES)
def test_quantization_tables_reject_bad_quality(quality):
    with pytest.raises(ValueError, match="quality"):
        quantization_tables(quality)


def textbook_dct(block: np.ndarray) -> np.ndarray:
    """The orthonormal 2-D DCT-II of one 8x8 block, term by term from its definition."""
    def c(k: int) -> float:
        return math.sqrt(1 / 8) if k == 0 else math.sqrt(2 / 8)
    out = np.zeros((8, 8))
    for u in range(8):
        for v in range(8):
            out[u, v] = c(u) * c(v) * sum(
                block[i, j] * math.cos((2 * i + 1) * u * math.pi / 16)
                * math.cos((2 * j + 1) * v * math.pi / 16) for i in range(8) for j in range(8))
    return out


def reference_dct(blocks: np.ndarray) -> np.ndarray:
    """scipy's DCT of the last two axes when scipy is there, else the textbook formula."""
    try:
        from scipy.fft import dctn
    except ImportError:
        flat = blocks.reshape(-1, 8, 8)
        return np.stack([textbook_dct(block) for block in flat]).reshape(blocks.shape)
    return dctn(blocks, axes=(-2, -1), norm="ortho")


def test_block_dct_transforms_each_8x8_block_in_place():
    x = torch.rand(2, 3, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    coefficients = block_dct(x)
    assert coefficients.shape == x.shape and coefficients.dtype == x.dtype
    for i in range(2):
        for j in range(3):
            rows, columns = slice(8 * i, 8 * i + 8), slice(8 * j, 8 * j + 8)
            expected = reference_dct(x[..., rows, columns].numpy())
            np.testing.assert_allclose(coefficients[..., rows, columns].numpy(), expected,
                                       atol=1e-10)


def test_block_dct_matches_the_textbook_formula_in_float32():
    x = torch.rand(1, 1, 8, 16, generator=torch.Generator().manual_seed(1)) * 255 - 128
    coefficients = block_dct(x)
    for j in range(2):
        expected = textbook_dct(x[0, 0, :, 8 * j:8 * j + 8].double().numpy())
        np.testing.assert_allclose(coefficients[0, 0, :, 8 * j:8 * j + 8].numpy(), expected,
                                   atol=1e-3)  # values up to ~1000: float32's relative 1e-6


def test_block_idct_inverts_block_dct():
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(block_idct(block_dct(x)), x, atol=1e-5)
    assert torch.allclose(block_dct(block_idct(x)), x, atol=1e-5)


def test_block_dct_keeps_the_energy_of_every_block():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    coefficients = block_dct(x)

    def energy(t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(2, (2, 8)).unflatten(4, (2, 8)).pow(2).sum((3, 5))
    assert torch.allclose(energy(coefficients), energy(x), rtol=1e-5)


def test_the_dc_coefficient_of_a_constant_block_is_8_times_its_value():
    x = torch.cat([torch.full((1, 1, 8, 8), 0.3), torch.full((1, 1, 8, 8), -2.0)], dim=3)
    coefficients = block_dct(x)
    assert coefficients[0, 0, 0, 0].item() == pytest.approx(8 * 0.3, abs=1e-5)
    assert coefficients[0, 0, 0, 8].item() == pytest.approx(8 * -2.0, abs=1e-5)
    coefficients[0, 0, 0, 0] = coefficients[0, 0, 0, 8] = 0
    assert coefficients.abs().max() < 1e-5


def test_block_dct_needs_sides_that_are_multiples_of_8():
    with pytest.raises(ValueError, match="pad_to_multiple"):
        block_dct(torch.rand(1, 1, 8, 12))
    with pytest.raises(ValueError, match="pad_to_multiple"):
        block_idct(torch.rand(1, 3, 9, 8))


def test_pad_to_multiple_repeats_the_edges():
    x = torch.rand(2, 1, 5, 11, generator=torch.Generator().manual_seed(4))
    padded = pad_to_multiple(x, 8)
    assert padded.shape == (2, 1, 8, 16)
    assert torch.equal(padded[..., :5, :11], x)
    assert torch.equal(padded[..., 5:, :11], x[..., 4:5, :].expand(-1, -1, 3, -1))
    assert torch.equal(padded[..., 10:], padded[..., 10:11].expand(-1, -1, -1, 6))
    assert pad_to_multiple(padded, 8) is padded


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-5)
    assert torch.allclose(rgb_to_ycbcr(ycbcr_to_rgb(x)), x, atol=1e-5)


@pytest.mark.parametrize(("rgb", "ycbcr"), [
    ((1, 1, 1), (1, 128 / 255, 128 / 255)),                            # white
    ((0, 0, 0), (0, 128 / 255, 128 / 255)),                            # black
    ((1, 0, 0), (0.299, (128 - 0.168736 * 255) / 255, (128 + 0.5 * 255) / 255)),  # red
    ((0, 0, 1), (0.114, (128 + 0.5 * 255) / 255, (128 - 0.081312 * 255) / 255)),  # blue
])
def test_ycbcr_of_known_colours_follows_jfif(rgb, ycbcr):
    """JFIF: Y = .299 R + .587 G + .114 B, Cb = 128 - .168736 R - .331264 G + .5 B, Cr = 128
    + .5 R - .418688 G - .081312 B (0..255), here divided by 255."""
    pixel = torch.tensor(rgb, dtype=torch.float32).reshape(1, 3, 1, 1)
    expected = torch.tensor(ycbcr, dtype=torch.float32).reshape(1, 3, 1, 1)
    assert torch.allclose(rgb_to_ycbcr(pixel), expected, atol=1e-6)
    assert torch.allclose(ycbcr_to_rgb(expected), pixel, atol=1e-5)


def test_ycbcr_agrees_with_pillow():
    pixels = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(6))
    pillow = np.asarray(Image.fromarray(pixels.numpy()).convert("YCbCr")).astype(np.float64)
    ours = rgb_to_ycbcr(pixels.permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0) * 255
    assert np.abs(ours.double().numpy() - pillow).max() <= 1  # Pillow rounds to integers


def test_colour_conversion_needs_three_channels():
    for convert in (rgb_to_ycbcr, ycbcr_to_rgb):
        with pytest.raises(ValueError, match="N x 3 x H x W"):
            convert(torch.rand(1, 1, 8, 8))


def test_subsample_chroma_averages_2x2_squares():
    x = torch.rand(2, 2, 4, 6, generator=torch.Generator().manual_seed(7))
    small = subsample_chroma(x)
    assert small.shape == (2, 2, 2, 3)
    for i in range(2):
        for j in range(3):
            square = x[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            assert torch.allclose(small[..., i, j], square.mean((-2, -1)))


def test_upsample_chroma_weighs_neighbours_3_to_1_like_libjpeg():
    chroma = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).reshape(1, 1, 2, 2)
    weights = torch.tensor([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])  # edges repeated
    assert torch.allclose(upsample_chroma(chroma)[0, 0], weights @ chroma[0, 0] @ weights.T)
    flat = torch.full((1, 2, 3, 5), 0.4)
    assert torch.allclose(upsample_chroma(flat), torch.full((1, 2, 6, 10), 0.4))


def test_the_two_roundings_forward_and_backward():
    x = torch.tensor([0.4, 1.5, -2.2, 3.0, 0.6], requires_grad=True)
    r = torch.round(x.detach())
    assert torch.allclose(cubic_round(x), r + (x.detach() - r) ** 3)
    assert torch.equal(straight_through_round(x), r)
    (gradient,) = torch.autograd.grad(cubic_round(x).sum(), x)
    assert torch.allclose(gradient, 3 * (x.detach() - r) ** 2)
    (gradient,) = torch.autograd.grad(straight_through_round(x).sum(), x)
    assert torch.equal(gradient, torch.ones(5))


def test_cubic_rounding_stays_within_an_eighth_of_a_step():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(8))
    table = quantization_tables(30)[0]
    steps = table.repeat(2, 2)

    def rounded(rounding) -> torch.Tensor:  # the coefficients a rounding leaves, in steps
        return block_dct(quantize_blocks(x, table, rounding) * 255 - 128) / steps
    exact, straight, cubic = (rounded(r) for r in (torch.round, straight_through_round,
                                                   cubic_round))
    assert torch.allclose(exact, exact.round(), atol=1e-3)  # multiples of the steps
    assert torch.allclose(straight, exact, atol=1e-3)
    assert 0.01 < (cubic - exact).abs().max() <= 1 / 8 + 1e-3


# --- jpeg_differentiable ----------------------------------------------------------------------

@pytest.mark.parametrize("rounding", sorted(ROUNDINGS))
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 3, 17, 9), (2, 1, 28, 28), (1, 1, 5, 31)])
def test_differentiable_shape_dtype_and_range(shape, rounding):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(9))
    out = jpeg_differentiable(x, 40, rounding)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    real = jpeg(x, 40)  # noise, not a photo: JPEG changes it a lot, and our copy a bit more
    assert 0 < (out - real).abs().mean() < 0.3 * (real - x).abs().mean()
    assert jpeg_differentiable(x.double(), 40, rounding).dtype == torch.float64
    empty = torch.empty(0, *shape[1:])
    assert jpeg_differentiable(empty, 40, rounding).shape == empty.shape


@pytest.mark.parametrize("rounding", sorted(ROUNDINGS))
def test_differentiable_gradients_are_finite_and_nonzero(cifar_test, mnist_test, rounding):
    for x in (cifar_test[0][:4], mnist_test[0][:4]):
        x = x.clone().requires_grad_(True)
        out = jpeg_differentiable(x, 50, rounding)
        assert out.requires_grad
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(10))
        (gradient,) = torch.autograd.grad((out * weights).sum(), x)
        assert gradient.shape == x.shape and torch.isfinite(gradient).all()
        assert (gradient != 0).float().mean() > 0.5


def test_straight_through_passes_the_gradient_through_unchanged():
    """Grayscale, no pixel clamped: every step but the rounding is linear and invertible."""
    x = (0.25 + 0.5 * torch.rand(2, 1, 16, 24, generator=torch.Generator().manual_seed(11)))
    x.requires_grad_(True)
    out = jpeg_differentiable(x, 50, "straight-through")
    assert 0 < out.min() and out.max() < 1
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(12))
    (gradient,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.allclose(gradient, weights, atol=1e-5)


@pytest.mark.parametrize("rounding", sorted(ROUNDINGS))
@pytest.mark.parametrize("which", ["cifar", "mnist"])
def test_differentiable_is_close_to_the_real_codec(cifar_test, mnist_test, which, rounding):
    """The documented bounds, on the 256 real test images the docstring's numbers come from."""
    x = (cifar_test if which == "cifar" else mnist_test)[0]
    for quality in (10, 20, 30, 50, 75, 90, 100):
        real = jpeg(x, quality)
        gap = (jpeg_differentiable(x, quality, rounding) - real).abs()
        assert gap.mean() <= DIFFERENTIABLE_MEAN_GAP[rounding], (quality, gap.mean() * 255)
        assert gap.max() <= DIFFERENTIABLE_MAX_GAP, (quality, gap.max() * 255)
        if quality < 100:  # much closer to the codec than the codec is to its input
            assert gap.mean() < 0.4 * (real - x).abs().mean(), quality
        else:  # little is lost: chroma upsampling must be libjpeg's for this
            assert gap.mean() < 1 / 255


@pytest.mark.parametrize("transpose", [False, True])
def test_differentiable_upsamples_chroma_at_the_edges_like_libjpeg(transpose):
    """20 rows, not a multiple of 16: the decoder repeats the last real chroma row rather than
    use the padding's. A red row over a blue last row shows the difference (26/255 if not)."""
    x = torch.full((1, 3, 20, 16), 0.5)
    x[0, :, 18] = torch.tensor([0.9, 0.2, 0.2])[:, None]
    x[0, :, 19] = torch.tensor([0.2, 0.2, 0.9])[:, None]
    x = x.transpose(2, 3).contiguous() if transpose else x
    assert (jpeg_differentiable(x, 100, "straight-through") - jpeg(x, 100)).abs().max() < 4 / 255


def test_differentiable_at_quality_100_is_nearly_the_identity(mnist_test, cifar_test):
    gray = mnist_test[0][:64]
    change = (jpeg_differentiable(gray, 100) - gray).abs()
    assert change.mean() < 0.5 / 255 and change.max() < 2 / 255
    colour = cifar_test[0][:64]  # what remains is mostly the chroma at half resolution
    assert (jpeg_differentiable(colour, 100) - colour).abs().mean() < 3 / 255


@pytest.mark.parametrize(("images", "hint"), BAD_IMAGES)
def test_differentiable_and_sizes_reject_bad_images_like_jpeg(images, hint):
    def message(function) -> str:
        with pytest.raises(ValueError) as info:
            function(images, 75)
        return str(info.value)
    expected = message(jpeg)
    assert hint in expected
    assert message(jpeg_differentiable) == expected
    assert message(encoded_sizes) == expected


@pytest.mark.parametrize("quality", BAD_QUALITIES)
def test_differentiable_and_sizes_reject_bad_quality(quality):
    x = torch.rand(2, 3, 8, 8)
    for function in (jpeg_differentiable, encoded_sizes):
        with pytest.raises(ValueError, match="quality"):
            function(x, quality)


def test_differentiable_rejects_unknown_channels_and_roundings():
    for channels in (2, 4):
        with pytest.raises(ValueError, match="1 \\(gray\\) or 3 \\(RGB\\) channels"):
            jpeg_differentiable(torch.rand(1, channels, 8, 8), 75)
    with pytest.raises(ValueError, match="straight-through"):
        jpeg_differentiable(torch.rand(1, 3, 8, 8), 75, rounding="round")


# --- encoded_sizes ----------------------------------------------------------------------------

def test_encoded_sizes_are_the_sizes_of_pillows_files(cifar_test, mnist_test, backend):
    for x in (cifar_test[0][:8], mnist_test[0][:8]):
        sizes = encoded_sizes(x, 75)
        assert sizes.shape == (8,) and sizes.dtype == torch.int64
        expected = []
        for image in to_uint8(x):
            pixels = image.permute(1, 2, 0).numpy()
            buffer = io.BytesIO()
            Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels).save(
                buffer, format="JPEG", quality=75)
            expected.append(len(buffer.getvalue()))
        assert sizes.tolist() == expected
    assert encoded_sizes(torch.empty(0, 3, 8, 8), 75).shape == (0,)


def test_file_size_falls_with_quality(cifar_test):
    x = cifar_test[0]
    sizes = {q: encoded_sizes(x, q) for q in range(10, 101, 10)}
    means = [sizes[q].float().mean().item() for q in sorted(sizes)]
    assert all(a < b for a, b in pairwise(means)), means
    assert (sizes[10] < sizes[90]).all()
    assert means[-1] > 2 * means[0]
