"""helpers.transforms: blur, median and bit depth against scipy and analytic cases; clear errors."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from helpers import transforms
from helpers.images import to_uint8
from helpers.transforms import bit_depth, gaussian_blur, median_filter, of_kind

TRANSFORMS = of_kind("defense")

pytestmark = pytest.mark.usefixtures("single_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SWEEP = [(name, s) for name, t in TRANSFORMS.items() for s in t.settings]


@pytest.fixture(scope="module")
def ndimage():
    return pytest.importorskip("scipy.ndimage", reason="scipy is the reference: pip install "
                               "--no-deps -r requirements-nodeps.txt")


def rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def pick(which: str, cifar_test, mnist_test) -> torch.Tensor:
    """Random images (odd, non-square size) or 32 real test images."""
    if which == "random":
        return rand(4, 3, 19, 24)
    return (cifar_test if which == "cifar" else mnist_test)[0][:32]


# --- median filter ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("which", ["random", "cifar", "mnist"])
def test_median_equals_scipy_mirror(ndimage, cifar_test, mnist_test, which, size):
    """torch's reflect padding is scipy's "mirror" mode; odd windows give the exact median."""
    x = pick(which, cifar_test, mnist_test)
    reference = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="mirror")
    assert torch.equal(median_filter(x, size), torch.from_numpy(reference))


def test_median_border_mirrors_without_repeating_the_edge():
    """A line one row in from the edge of a 3-row image: the mirrored window sees it twice."""
    x = torch.zeros(1, 1, 3, 6)
    x[..., 1, :] = 1
    expected = torch.tensor([1.0, 0.0, 1.0]).view(1, 1, 3, 1).expand(1, 1, 3, 6)
    assert torch.equal(median_filter(x, 3), expected)  # repeating the edge would give all 0


def test_median_size_one_is_identity():
    x = rand(2, 3, 8, 8)
    out = median_filter(x, 1)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("where", [(10, 7), (0, 0), (15, 0)])
def test_median_removes_one_outlier(where):
    x = torch.full((1, 3, 16, 12), 0.3)
    x[0, 1, where[0], where[1]] = 1.0
    assert torch.equal(median_filter(x, 3), torch.full_like(x, 0.3))


def test_median_chunks_agree_with_one_batch(monkeypatch):
    x = rand(7, 3, 9, 9)
    whole = median_filter(x, 3)
    monkeypatch.setattr(transforms, "MEDIAN_CHUNK", 3)
    assert torch.equal(median_filter(x, 3), whole)


# --- Gaussian blur ---------------------------------------------------------------------------

@pytest.mark.parametrize("sigma", [0.5, 0.75, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("value", [0.0, 0.37, 1.0])
def test_blur_keeps_a_constant_image(value, sigma):
    x = torch.full((2, 3, 20, 20), value)
    assert torch.allclose(gaussian_blur(x, sigma), x, rtol=0, atol=1e-6)  # float32 rounding


@pytest.mark.parametrize("sigma", [0.5, 0.75, 1.0, 1.5])
def test_blurred_delta_is_the_normalised_gaussian(sigma):
    """Away from the border, a delta comes out as the sampled Gaussian, which sums to 1."""
    x = torch.zeros(1, 1, 31, 31, dtype=torch.float64)
    x[..., 15, 15] = 1
    out = gaussian_blur(x, sigma)[0, 0]
    radius = math.ceil(3 * sigma)  # covers +-3 sigma
    g = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    g = g / g.sum()
    expected = torch.zeros(31, 31, dtype=torch.float64)
    expected[15 - radius:16 + radius, 15 - radius:16 + radius] = torch.outer(g, g)
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)
    assert out.sum().item() == pytest.approx(1, abs=1e-12)


@pytest.mark.parametrize("sigma", [0.5, 0.75, 1.0, 1.5])
@pytest.mark.parametrize("which", ["random", "cifar", "mnist"])
def test_blur_matches_scipy_mirror(ndimage, cifar_test, mnist_test, which, sigma):
    x = pick(which, cifar_test, mnist_test)
    reference = ndimage.gaussian_filter(x.double().numpy(), sigma=(0, 0, sigma, sigma),
                                        mode="mirror", truncate=3.0, radius=math.ceil(3 * sigma))
    difference = (gaussian_blur(x, sigma).double() - torch.from_numpy(reference)).abs().max()
    assert difference < 1e-5


def test_more_blur_removes_more_high_frequencies(cifar_test):
    """Energy above 0.25 cycles/pixel falls with sigma. A Hann window keeps the jump where the
    FFT wraps an image around from counting as high frequency."""
    x = cifar_test[0][:32]
    hann = torch.hann_window(32, periodic=False)
    window = torch.outer(hann, hann)

    def high_energy(images: torch.Tensor) -> float:
        centred = images - images.mean(dim=(2, 3), keepdim=True)
        spectrum = torch.fft.fft2(centred * window).abs() ** 2
        fy = torch.fft.fftfreq(32)[:, None]
        fx = torch.fft.fftfreq(32)[None, :]
        return spectrum[..., (fy**2 + fx**2).sqrt() > 0.25].sum().item()

    energies = [high_energy(x)] + [high_energy(gaussian_blur(x, s)) for s in [0.5, 1.0, 1.5, 2]]
    assert all(a > b for a, b in zip(energies, energies[1:], strict=False)), energies
    assert energies[-1] < 0.01 * energies[0]


def test_blur_is_differentiable():
    x = rand(1, 2, 6, 7, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda images: gaussian_blur(images, 0.75), (x,))


# --- bit depth -------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(1, 9))
def test_bit_depth_levels_error_and_idempotence(bits):
    x = torch.cat([rand(2, 3, 32, 32), torch.linspace(0, 1, 3 * 32 * 32).view(1, 3, 32, 32)])
    levels = 2**bits - 1
    out = bit_depth(x, bits)
    values = out.unique()
    assert len(values) <= levels + 1
    assert torch.equal(values * levels, (values * levels).round())  # on the grid k / levels
    assert (out - x).abs().max() <= 0.5 / levels + 1e-7
    assert torch.equal(bit_depth(out, bits), out)


def test_bit_depth_8_is_the_8_bit_grid(cifar_test):
    x = torch.cat([rand(4, 3, 32, 32), cifar_test[0][:4]])
    out = bit_depth(x, 8)
    assert torch.equal(out, torch.round(x * 255) / 255)
    assert torch.equal(out, to_uint8(x).float() / 255)
    assert torch.equal(bit_depth(cifar_test[0][:32], 8), cifar_test[0][:32])  # already 8-bit


def test_one_bit_is_a_threshold_at_one_half():
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 0.8, 1.0]).view(1, 1, 2, 3)
    assert bit_depth(x, 1).flatten().tolist() == [0, 0, 0, 1, 1, 1]


# --- all transformations ---------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, setting", SWEEP)
def test_shape_dtype_device_range(name, setting, dtype, device):
    x = rand(3, 3, 12, 17, dtype=dtype).to(device)
    x[0, 0, 0, :3] = torch.tensor([0.0, 1.0, 1.0])  # the extremes too
    out = TRANSFORMS[name].apply(x, setting)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name, setting", SWEEP)
def test_each_image_on_its_own(name, setting):
    """A batch gives what each image gives alone: no mixing across images or channels."""
    x = rand(5, 3, 10, 11)
    apply = TRANSFORMS[name].apply
    alone = torch.cat([apply(x[i:i + 1, c:c + 1], setting) for i in range(5) for c in range(3)])
    assert torch.allclose(apply(x, setting), alone.view_as(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_settings_go_from_mild_to_strong(cifar_test, name):
    x = cifar_test[0][:32]
    transform = TRANSFORMS[name]
    changes = [(transform.apply(x, s) - x).abs().mean().item() for s in transform.settings]
    assert all(a < b for a, b in zip(changes, changes[1:], strict=False)), changes
    assert transform.parameter in inspect.signature(transform.apply).parameters


@pytest.mark.parametrize("name, setting", SWEEP)
def test_empty_batch(name, setting):
    x = torch.empty(0, 3, 8, 8)
    assert TRANSFORMS[name].apply(x, setting).shape == x.shape


BAD_SETTINGS = [
    (gaussian_blur, 0, "sigma 0 would leave"),
    (gaussian_blur, -1.0, "positive"),
    (gaussian_blur, float("nan"), "positive"),
    (gaussian_blur, float("inf"), "positive"),
    (gaussian_blur, "1", "positive"),
    (gaussian_blur, True, "positive"),
    (median_filter, 0, "odd integer >= 1"),
    (median_filter, 2, "odd integer >= 1"),
    (median_filter, 4, "odd integer >= 1"),
    (median_filter, -3, "odd integer >= 1"),
    (median_filter, 3.0, "odd integer >= 1"),
    (median_filter, True, "odd integer >= 1"),
    (bit_depth, 0, "integer from 1"),
    (bit_depth, 9, "integer from 1"),
    (bit_depth, 4.5, "integer from 1"),
    (bit_depth, 4.0, "integer from 1"),
    (bit_depth, "4", "integer from 1"),
    (bit_depth, True, "integer from 1"),
]


@pytest.mark.parametrize("function, setting, message", BAD_SETTINGS)
def test_bad_settings_raise(function, setting, message):
    with pytest.raises(ValueError, match=message):
        function(rand(1, 3, 8, 8), setting)


BAD_IMAGES = [
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float tensor"),
    (torch.zeros(3, 8, 8), "batch N x C x H x W"),
    (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
    (torch.full((1, 3, 8, 8), 1.5), r"\[0, 1\]"),
    (torch.full((1, 3, 8, 8), -0.1), r"\[0, 1\]"),
]


@pytest.mark.parametrize("images, message", BAD_IMAGES)
@pytest.mark.parametrize("name", TRANSFORMS)
def test_bad_images_raise(name, images, message):
    transform = TRANSFORMS[name]
    with pytest.raises(ValueError, match=message):
        transform.apply(images, transform.settings[0])


def test_images_too_small_for_the_window_raise():
    with pytest.raises(ValueError, match="larger than 2 x 2; got 2 x 8"):
        median_filter(rand(1, 1, 2, 8), 5)
    with pytest.raises(ValueError, match="larger than 5 x 5; got 5 x 5"):
        gaussian_blur(rand(1, 1, 5, 5), 1.5)
    assert median_filter(rand(1, 1, 3, 3), 5).shape == (1, 1, 3, 3)  # just large enough

# ---------------------------------------------------------------------------------------------
# random_crop_flip
# ---------------------------------------------------------------------------------------------


def _images(n: int = 64, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    """Random images: no image equals its own mirror image or a shifted copy of itself."""
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("pad", [0, 1, 2, 4])
@pytest.mark.parametrize("flip", [False, True])
def test_random_crop_flip_keeps_shape_and_dtype(pad, flip):
    x = _images()
    out = transforms.random_crop_flip(x, _gen(), pad=pad, flip=flip)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    assert float(out.min()) >= float(x.min()) and float(out.max()) <= float(x.max())


def test_random_crop_flip_without_pad_or_flip_is_identity():
    x = _images()
    out = transforms.random_crop_flip(x, _gen(), pad=0, flip=False)
    assert torch.equal(out, x)
    assert torch.equal(out.flatten().sort().values, x.flatten().sort().values)  # pixel multiset


def test_pure_flip_mirrors_about_half_the_images():
    x = _images(n=200)
    out = transforms.random_crop_flip(x, _gen(3), pad=0, flip=True)
    mirrored = torch.flip(x, dims=[-1])
    same = (out == x).flatten(1).all(1)
    flipped = (out == mirrored).flatten(1).all(1)
    assert (same ^ flipped).all()  # every image is either untouched or exactly mirrored
    assert torch.equal(out[flipped], mirrored[flipped])
    assert 0.35 < flipped.float().mean() < 0.65
    # each image keeps its own pixels
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    # the generator decides: same seed, same choice; another seed, another choice
    again = transforms.random_crop_flip(x, _gen(3), pad=0, flip=True)
    assert torch.equal(again, out)
    other = transforms.random_crop_flip(x, _gen(4), pad=0, flip=True)
    assert not torch.equal(other, out)


@pytest.mark.parametrize("flip", [False, True])
def test_crops_are_windows_of_the_reflect_padded_image(flip):
    pad, (h, w) = 2, (12, 10)
    x = _images(n=60, h=h, w=w)
    out = transforms.random_crop_flip(x, _gen(1), pad=pad, flip=flip)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets, n_flipped = set(), 0
    for i in range(len(x)):
        found = []
        for dy in range(2 * pad + 1):
            for dx in range(2 * pad + 1):
                window = padded[i, :, dy:dy + h, dx:dx + w]
                if torch.equal(out[i], window):
                    found.append((dy, dx, False))
                if flip and torch.equal(out[i], window.flip(-1)):
                    found.append((dy, dx, True))
        assert len(found) == 1, f"image {i}: not exactly one shifted window ({found})"
        offsets.add(found[0][:2])
        n_flipped += found[0][2]
    assert len(offsets) > 10  # images get different shifts (25 are possible)
    assert {dy for dy, _ in offsets} == set(range(2 * pad + 1))
    if flip:
        assert 10 < n_flipped < 50
