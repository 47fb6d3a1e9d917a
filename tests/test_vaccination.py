"""helpers.vaccination: JPEG-trained models, their controls, the ensemble vote, SHIELD's SLQ."""

from __future__ import annotations

import json

import pytest
import torch
from test_zoo import TINY

from helpers import cache, jpeg, profiles, train, transforms, vaccination, zoo
from tests.course_models import as_a_chapter_would

pytestmark = pytest.mark.usefixtures("single_thread")
CPU = torch.device("cpu")


def _key(model: torch.nn.Module) -> dict:
    return json.loads(model.train_info["key"])


def test_vaccinated_training_feeds_the_model_compressed_images(data_dir, cache_dir, monkeypatch):
    compressed, seen = [], []
    real_jpeg = jpeg.jpeg

    def recording_jpeg(images, quality):
        out = real_jpeg(images, quality)
        compressed.append((quality, out))
        return out

    monkeypatch.setattr(transforms, "jpeg", recording_jpeg)  # what jpeg_at calls
    real_make = zoo.make_classifier

    def make_recording(dataset, profile, architecture=None):
        model = real_make(dataset, profile, architecture)
        model.register_forward_pre_hook(
            lambda module, args: seen.append(args[0].detach().clone()) if module.training
            else None)
        return model

    monkeypatch.setattr(zoo, "make_classifier", make_recording)
    vaccination.control("mnist", profile=TINY, device=CPU, progress=False)
    seen.clear()  # the control's own (clean) training
    model = vaccination.vaccinated("mnist", 30, profile=TINY, device=CPU, progress=False)

    steps = -(-TINY.recipe("mnist").train_size // TINY.recipe("mnist").batch_size)
    assert len(seen) == steps * TINY.vaccine_epochs
    assert [q for q, _ in compressed] == [30] * len(seen)
    for batch, (_, out) in zip(seen, compressed, strict=True):
        assert torch.equal(batch, out), "the model must be trained on the JPEG output itself"
    assert _key(model)["transform"] == "jpeg30"


def test_control_differs_from_the_original_only_in_its_seed(data_dir, cache_dir):
    original = zoo.classifier("mnist", profile=TINY, device=CPU, progress=False)
    control = vaccination.control("mnist", profile=TINY, device=CPU, progress=False)
    a, b = _key(original), _key(control)
    assert {k for k in a if a[k] != b[k]} == {"seed"}
    assert b["seed"] == vaccination.CONTROL_SEED != a["seed"]
    assert not torch.equal(original.state_dict()["0.weight"], control.state_dict()["0.weight"])


def test_sham_differs_from_the_vaccinated_model_only_in_compression(data_dir, cache_dir):
    vaccinated = vaccination.vaccinated("mnist", 50, profile=TINY, device=CPU, progress=False)
    sham = vaccination.vaccinated("mnist", None, profile=TINY, device=CPU, progress=False)
    a, b = _key(vaccinated), _key(sham)
    assert {k for k in a if a[k] != b[k]} == {"model", "transform"}
    assert b["transform"] == "none" and a["epochs"] == b["epochs"] == TINY.vaccine_epochs
    assert a["base"] == cache.fingerprint(vaccination.control("mnist", profile=TINY, device=CPU))
    other = vaccination.vaccinated("mnist", 10, profile=TINY, device=CPU, progress=False)
    assert _key(other)["transform"] == "jpeg10"
    assert len(list(cache_dir.glob("*.pt"))) == 4  # control, two vaccinated, sham
    again = vaccination.vaccinated("mnist", 50, profile=TINY, device=CPU, progress=False)
    assert len(list(cache_dir.glob("*.pt"))) == 4
    for x, y in zip(vaccinated.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(x, y)


def test_both_protocols_from_scratch_and_diverse_members(data_dir, cache_dir):
    """The own-model protocol fine-tunes the original (seed 0) itself; from scratch trains the
    recipe on compressed images; diverse members each start from a control of their own."""
    original = zoo.classifier("mnist", profile=TINY, device=CPU, progress=False)
    own = vaccination.vaccinated("mnist", 50, profile=TINY, seed=vaccination.ORIGINAL_SEED,
                                 device=CPU, progress=False)
    assert _key(own)["base"] == cache.fingerprint(original)
    assert _key(own)["transform"] == "jpeg50"
    scratch = vaccination.from_scratch("mnist", 50, profile=TINY, device=CPU, progress=False)
    key = _key(scratch)
    assert key["transform"] == "jpeg50" and key["seed"] == vaccination.CONTROL_SEED
    assert "base" not in key and key["recipe"]["epochs"] == TINY.recipe("mnist").epochs
    members = vaccination.diverse_members("mnist", (50, 10), profile=TINY, device=CPU,
                                          progress=False)
    bases = [_key(m)["base"] for m in members.values()]
    assert len(set(bases)) == 2
    assert bases[0] == cache.fingerprint(vaccination.control("mnist", profile=TINY, device=CPU))
    assert [_key(m)["transform"] for m in members.values()] == ["jpeg50", "jpeg10"]


def test_jpeg_at_checks_the_quality_at_once():
    with pytest.raises(ValueError, match="quality"):
        transforms.jpeg_at(0)
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(transforms.jpeg_at(40)(x), jpeg.jpeg(x, 40))
    assert transforms.jpeg_at(40).key == "jpeg40"


def _logits(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows)


def test_vote_is_the_majority():
    a = _logits([5, 0, 0], [0, 5, 0])
    b = _logits([4, 1, 0], [0, 0, 9])
    c = _logits([0, 0, 1], [0, 3, 0])
    assert vaccination.vote([a, b, c]).tolist() == [0, 1]


def test_vote_breaks_ties_by_mean_probability_and_ignores_it_otherwise():
    # two models disagree: the more confident one wins the tie
    a = _logits([2, 0, 0])
    b = _logits([0, 9, 0])
    assert vaccination.vote([a, b]).tolist() == [1]
    # a confident minority does not beat a majority
    c = _logits([0, 0, 50])
    d = _logits([0, 0.1, 0])
    assert vaccination.vote([d, d, c]).tolist() == [1]
    # one model: its own prediction
    e = torch.randn(50, 10)
    assert torch.equal(vaccination.vote([e]), e.argmax(1))
    with pytest.raises(ValueError, match="at least one"):
        vaccination.vote([])


def test_ensemble_predict_votes_on_each_members_own_quality(mnist_test):
    x, _ = mnist_test
    x = x[:20]
    torch.manual_seed(0)
    members = {q: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
               for q in (90, 50, 10)}
    expected = vaccination.vote([m(jpeg.jpeg(x, q)) for q, m in members.items()])
    assert torch.equal(vaccination.ensemble_predict(members, x), expected)
    # it really compresses: the same members without JPEG vote differently on some image
    plain = vaccination.vote([m(x) for m in members.values()])
    logits_gap = sum((m(jpeg.jpeg(x, q)) - m(x)).abs().max() for q, m in members.items())
    assert logits_gap > 0 and plain.shape == expected.shape


def test_differentiable_stochastic_jpeg_uses_each_tiles_drawn_quality(cifar_test):
    """The same generator draws the same tiles; each tile of the differentiable version is
    close to the codec at that tile's quality (far from the other), and gradients flow."""
    x = cifar_test[0][:8]
    real = vaccination.stochastic_jpeg(x, (10, 100), torch.Generator().manual_seed(3))
    smooth = x.clone().requires_grad_(True)
    out = vaccination.stochastic_jpeg(smooth, (10, 100), torch.Generator().manual_seed(3),
                                      rounding="straight-through")
    tiles = lambda z: z.detach().unfold(2, 8, 8).unfold(3, 8, 8)  # noqa: E731
    gap = (tiles(out) - tiles(real)).abs().mean((1, 4, 5))  # per image and tile
    at_10, at_100 = jpeg.jpeg(x, 10), jpeg.jpeg(x, 100)
    other = torch.where((tiles(real) - tiles(at_10)).abs().mean((1, 4, 5)) < 1e-6,
                        (tiles(out) - tiles(at_100)).abs().mean((1, 4, 5)),
                        (tiles(out) - tiles(at_10)).abs().mean((1, 4, 5)))
    assert (gap < other).float().mean() > 0.9  # nearer its own quality's codec, tile by tile
    assert gap.mean() < jpeg.DIFFERENTIABLE_MEAN_GAP["straight-through"] * 2
    out.sum().backward()
    assert smooth.grad is not None and smooth.grad.abs().sum() > 0


def test_stochastic_jpeg_bpda_is_the_real_draw_forward_and_its_own_tiles_backward(cifar_test):
    """Forward: bit for bit the SLQ draw the same generator makes. Backward: the gradient of
    the differentiable SLQ with those same tiles (each block's own quality)."""
    x = cifar_test[0][:6]
    qualities = (20, 90)
    real = vaccination.stochastic_jpeg(x, qualities, torch.Generator().manual_seed(4))
    probe = x.clone().requires_grad_(True)
    out = vaccination.stochastic_jpeg_bpda(probe, qualities, torch.Generator().manual_seed(4))
    assert torch.equal(out, real)
    weights = torch.randn_like(x)
    (grad,) = torch.autograd.grad((out * weights).sum(), probe)
    twin = x.clone().requires_grad_(True)
    smooth = vaccination.stochastic_jpeg(twin, qualities, torch.Generator().manual_seed(4),
                                         rounding="straight-through")
    (expected,) = torch.autograd.grad((smooth * weights).sum(), twin)
    assert torch.equal(grad, expected)
    other = x.clone().requires_grad_(True)  # another draw: another gradient
    (elsewhere,) = torch.autograd.grad((vaccination.stochastic_jpeg_bpda(
        other, qualities, torch.Generator().manual_seed(5)) * weights).sum(), other)
    assert not torch.equal(grad, elsewhere)


def test_shield_predict_is_the_members_vote_on_one_slq_draw(cifar_test):
    x = cifar_test[0][:16]
    torch.manual_seed(0)
    members = {q: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
               for q in (25, 75)}
    quantized = vaccination.stochastic_jpeg(x, (25, 75), torch.Generator().manual_seed(1))
    expected = vaccination.vote([m(quantized) for m in members.values()])
    got = vaccination.shield_predict(members, x, torch.Generator().manual_seed(1))
    assert torch.equal(got, expected)


def test_stochastic_jpeg_takes_each_tile_from_one_quality(cifar_test):
    x = cifar_test[0][:8]
    qualities = (90, 20)
    out = vaccination.stochastic_jpeg(x, qualities, torch.Generator().manual_seed(0))
    candidates = torch.stack([jpeg.jpeg(x, q) for q in qualities])
    tiles = lambda t: t.unfold(-2, 8, 8).unfold(-2, 8, 8)  # noqa: E731 - ... x 4 x 4 x 8 x 8
    match = (tiles(out)[None] == tiles(candidates)).flatten(-2).all(-1).all(2)  # q x n x 4 x 4
    assert match.any(0).all(), "every tile must equal one quality's round trip"
    assert match[0].any() and match[1].any() and not match.all(0).all()
    again = vaccination.stochastic_jpeg(x, qualities, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert torch.equal(vaccination.stochastic_jpeg(x, (60,)), jpeg.jpeg(x, 60))
    with pytest.raises(ValueError, match="at least one quality"):
        vaccination.stochastic_jpeg(x, ())


@pytest.fixture(scope="module")
def quick_vaccinated(data_dir):
    """The quick profile's controls and the controls vaccinated at quality 25, Chapter 5's
    (about 100 s on 2 cores when the course's cache does not hold them yet)."""
    quick = profiles.get_profile("quick")
    with as_a_chapter_would():
        return {name: (vaccination.control(name, quick, device=CPU, progress=False),
                       vaccination.vaccinated(name, 25, quick, device=CPU, progress=False))
                for name in ("cifar10", "gtsrb")}


@pytest.mark.parametrize("name", ["cifar10", "gtsrb"])
def test_vaccination_pays_back_part_of_jpegs_clean_cost(quick_vaccinated, name):
    """Behind JPEG 25, the vaccinated model beats the model it was trained from on clean test
    images (measured on these 1,000: 67.5% -> 71.7% on CIFAR-10, 83.6% -> 91.9% on GTSRB)."""
    from helpers import data

    control, vaccinated = quick_vaccinated[name]
    x, y = data.load(name, "test", n=1000).to(CPU)
    compress = transforms.jpeg_at(25)
    before = train.evaluate(control, x, y, transform=compress)
    after = train.evaluate(vaccinated, x, y, transform=compress)
    assert after > before + 0.025, (before, after)
    assert after < train.evaluate(control, x, y) + 0.01  # JPEG 25 still costs something
