"""helpers.shifts: every shift keeps shape and range, severity means distance, noise is seeded,
and the random training transform leaves about half the batch clean."""

from __future__ import annotations

import pytest
import torch

from helpers import transforms
from helpers.jpeg import jpeg
from helpers.shifts import SHIFTS, apply_shift, random_shift

pytestmark = pytest.mark.usefixtures("single_thread")

SEVERITIES = (1, 2, 3)


@pytest.fixture(params=["cifar", "mnist"])
def images(request, cifar_test, mnist_test):
    return (cifar_test if request.param == "cifar" else mnist_test)[0][:64]


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("name", list(SHIFTS))
def test_every_shift_keeps_shape_dtype_and_range(images, name, severity):
    before = images.clone()
    out = apply_shift(images, name, severity)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.device == images.device
    assert torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(images, before)  # the input is not changed in place
    assert (out - images).abs().mean() > 1e-3  # it is a real change


@pytest.mark.parametrize("name", [n for n in SHIFTS if n != "inversion"])
def test_severity_increases_distance_from_the_original(images, name):
    distances = [(apply_shift(images, name, s) - images).abs().mean().item() for s in SEVERITIES]
    assert distances[0] < distances[1] < distances[2], distances


def test_inversion_is_the_same_at_every_severity_and_undoes_itself(images):
    once = apply_shift(images, "inversion", 1)
    assert torch.equal(once, 1 - images)
    for severity in SEVERITIES:
        assert torch.equal(apply_shift(images, "inversion", severity), once)
    assert torch.allclose(apply_shift(once, "inversion", 2), images, atol=1e-6)


def test_noise_is_seeded(images):
    a = apply_shift(images, "noise", 2, seed=7)
    b = apply_shift(images, "noise", 2, seed=7)
    c = apply_shift(images, "noise", 2, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(apply_shift(images, "noise", 2), apply_shift(images, "noise", 2, seed=0))
    # about the promised strength where nothing is clipped
    middle = (images > 0.3) & (images < 0.7)
    if middle.sum() > 1000:
        assert (a - images)[middle].std().item() == pytest.approx(0.1, rel=0.15)


def test_seed_only_matters_for_noise(images):
    for name in ("rotation", "blur", "contrast", "jpeg"):
        assert torch.equal(apply_shift(images, name, 2, seed=1),
                           apply_shift(images, name, 2, seed=2))


def test_rotation_by_zero_is_identity(images):
    assert torch.allclose(transforms.rotate(images, 0), images, atol=1e-6)


def test_rotation_turns_the_picture(images):
    """A quarter turn with the shift's own function moves pixels where a quarter turn should."""
    square = images[:, :, :28, :28]
    turned = transforms.rotate(square, 90)
    expected = torch.rot90(square, 1, dims=(2, 3))  # counter-clockwise, like TF.rotate
    assert (turned - expected).abs().mean() < 0.02


def test_contrast_keeps_each_images_mean_and_scales_spread(images):
    factor = SHIFTS["contrast"].settings[1]
    out = apply_shift(images, "contrast", 2)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5)
    spread = out.std(dim=(1, 2, 3)) / images.std(dim=(1, 2, 3))
    assert torch.allclose(spread, torch.full_like(spread, factor), atol=1e-4)


def test_brightness_only_brightens(images):
    out = apply_shift(images, "brightness", 1)
    delta = SHIFTS["brightness"].settings[0]
    assert (out >= images).all()
    assert torch.allclose(out, (images + delta).clamp(0, 1))


def test_blur_smooths_more_with_severity(images):
    def roughness(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean().item()

    values = [roughness(images)] + [roughness(apply_shift(images, "blur", s)) for s in SEVERITIES]
    assert values == sorted(values, reverse=True), values
    # blurring keeps the overall brightness
    blurred = apply_shift(images, "blur", 3)
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.02)


def test_jpeg_shift_is_jpeg_at_the_listed_quality(images):
    for severity, quality in zip(SEVERITIES, SHIFTS["jpeg"].settings, strict=True):
        assert torch.equal(apply_shift(images, "jpeg", severity), jpeg(images, quality))


def test_unknown_shift_raises():
    with pytest.raises(ValueError, match="Unknown shift") as info:
        apply_shift(torch.rand(1, 3, 8, 8), "fog", 1)
    assert "rotation" in str(info.value)  # it lists the choices


@pytest.mark.parametrize("severity", [0, 4, -1, "1", None])
def test_unknown_severity_raises(severity):
    with pytest.raises(ValueError, match="severity"):
        apply_shift(torch.rand(1, 3, 8, 8), "blur", severity)


def test_float_severity_raises_value_error():
    with pytest.raises(ValueError, match="severity"):
        apply_shift(torch.rand(1, 3, 8, 8), "blur", 2.0)


def test_bad_images_raise():
    with pytest.raises(ValueError, match="float"):
        apply_shift(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "blur", 1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        apply_shift(torch.rand(1, 3, 8, 8) * 2, "rotation", 1)


# ---------------------------------------------------------------------------------------------
# random_shift: the training transform
# ---------------------------------------------------------------------------------------------

def _unchanged(out, x):
    return (out == x).flatten(1).all(1)


def test_random_shift_leaves_about_half_clean(cifar_test):
    x = cifar_test[0]
    for seed in range(3):
        out = random_shift(x, torch.Generator().manual_seed(seed))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        clean = _unchanged(out, x).float().mean().item()
        assert 0.38 < clean < 0.62, clean


def test_random_shift_is_reproducible(cifar_test):
    x = cifar_test[0][:100]
    a = random_shift(x, torch.Generator().manual_seed(5))
    b = random_shift(x, torch.Generator().manual_seed(5))
    c = random_shift(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_random_shift_changes_each_image_by_one_listed_shift(cifar_test):
    names = ("rotation", "contrast", "inversion")
    x = cifar_test[0][:80]
    out = random_shift(x, torch.Generator().manual_seed(0), names=names)
    candidates = {(n, s): apply_shift(x, n, s) for n in names for s in SEVERITIES}
    used, severities = set(), set()
    for i in torch.nonzero(~_unchanged(out, x)).flatten().tolist():
        matches = [k for k, v in candidates.items() if torch.allclose(out[i], v[i], atol=1e-6)]
        assert len(matches) >= 1, f"image {i} is not one of the listed shifts"
        used.update(m[0] for m in matches)
        if len(matches) == 1:  # inversion looks the same at every severity
            severities.add(matches[0][1])
    assert used == set(names)
    assert severities == set(SEVERITIES)  # all three severities are drawn


def test_random_shift_with_only_inversion(cifar_test):
    x = cifar_test[0][:100]
    out = random_shift(x, torch.Generator().manual_seed(1), names=("inversion",))
    changed = ~_unchanged(out, x)
    assert 30 < changed.sum() < 70
    assert torch.equal(out[changed], 1 - x[changed])
