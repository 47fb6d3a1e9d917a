"""helpers.train: batch augmentation, fitting and evaluation, and the trained-model cache."""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import data, models, train
from helpers.device import seed_everything
from helpers.profiles import Profile, TrainRecipe, get_profile

pytestmark = pytest.mark.usefixtures("single_thread")

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
    out = train.random_crop_flip(x, _gen(), pad=pad, flip=flip)
    assert out.shape == x.shape and out.dtype == x.dtype and out.is_contiguous()
    assert float(out.min()) >= float(x.min()) and float(out.max()) <= float(x.max())


def test_random_crop_flip_without_pad_or_flip_is_identity():
    x = _images()
    out = train.random_crop_flip(x, _gen(), pad=0, flip=False)
    assert torch.equal(out, x)
    assert torch.equal(out.flatten().sort().values, x.flatten().sort().values)  # pixel multiset


def test_pure_flip_mirrors_about_half_the_images():
    x = _images(n=200)
    out = train.random_crop_flip(x, _gen(3), pad=0, flip=True)
    mirrored = torch.flip(x, dims=[-1])
    same = (out == x).flatten(1).all(1)
    flipped = (out == mirrored).flatten(1).all(1)
    assert (same ^ flipped).all()  # every image is either untouched or exactly mirrored
    assert torch.equal(out[flipped], mirrored[flipped])
    assert 0.35 < flipped.float().mean() < 0.65
    # each image keeps its own pixels
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    # the generator decides: same seed, same choice; another seed, another choice
    again = train.random_crop_flip(x, _gen(3), pad=0, flip=True)
    assert torch.equal(again, out)
    other = train.random_crop_flip(x, _gen(4), pad=0, flip=True)
    assert not torch.equal(other, out)


@pytest.mark.parametrize("flip", [False, True])
def test_crops_are_windows_of_the_reflect_padded_image(flip):
    pad, (h, w) = 2, (12, 10)
    x = _images(n=60, h=h, w=w)
    out = train.random_crop_flip(x, _gen(1), pad=pad, flip=flip)
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


# ---------------------------------------------------------------------------------------------
# fit, predict, evaluate
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_small(data_dir):
    train_set = data.load("mnist", "train", n=2000)
    test_set = data.load("mnist", "test", n=500)
    return train_set, test_set


def test_fit_learns_mnist(mnist_small, single_thread):
    train_set, test_set = mnist_small
    x, y = train_set.to("cpu")
    seed_everything(0)
    model = models.mnist_classifier()
    history = train.fit(model, x, y, epochs=2, batch_size=50, lr=3e-3, progress=False)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert 0 <= history[0]["train_accuracy"] <= history[1]["train_accuracy"] <= 1
    assert not model.training  # fit leaves the model ready for evaluation
    accuracy = train.evaluate(model, *test_set.to("cpu"))
    assert accuracy > 0.80, f"held-out accuracy {accuracy:.3f} after 2 epochs on 2000 images"


def _small_cifar_net() -> nn.Module:
    return models.cifar_classifier(10, widths=(8, 16, 16))


def _fit_once(x, y, seed=0, augment=None):
    seed_everything(seed)
    model = _small_cifar_net()
    history = train.fit(model, x, y, epochs=2, batch_size=32, lr=3e-3, augment=augment,
                        seed=seed, progress=False)
    return model, history


def test_cpu_fit_repeats_exactly(cifar_test, single_thread):
    x, y = cifar_test[0][:128], cifar_test[1][:128]
    a, history_a = _fit_once(x, y, augment=train.random_crop_flip)
    b, history_b = _fit_once(x, y, augment=train.random_crop_flip)
    assert history_a == history_b
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name
    c, _ = _fit_once(x, y, seed=1, augment=train.random_crop_flip)
    assert not torch.equal(c.state_dict()["1.weight"], state_a["1.weight"])


def test_fit_randomness_comes_from_its_seed(cifar_test):
    """Batch order and augmentation follow ``seed``, not whatever the global RNG holds."""
    x, y = cifar_test[0][:96], cifar_test[1][:96]
    torch.manual_seed(0)
    start = _small_cifar_net()
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    torch.manual_seed(1)
    train.fit(a, x, y, epochs=2, batch_size=32, lr=3e-3, augment=train.random_crop_flip,
              seed=5, progress=False)
    torch.manual_seed(2)
    train.fit(b, x, y, epochs=2, batch_size=32, lr=3e-3, augment=train.random_crop_flip,
              seed=5, progress=False)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name


def test_fit_takes_uint8_like_float(single_thread):
    images = torch.randint(0, 256, (96, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (96,))
    from_uint8, _ = _fit_once(images, labels)
    from_float, _ = _fit_once(images.float() / 255, labels)
    for a, b in zip(from_uint8.state_dict().values(), from_float.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_fit_applies_transform_and_augment_to_every_batch():
    seen = {"augment": 0, "transform": 0}

    def augment(batch, generator):
        assert isinstance(generator, torch.Generator)
        seen["augment"] += len(batch)
        return batch

    def transform(batch):
        seen["transform"] += len(batch)
        return batch

    x, y = torch.rand(50, 3, 32, 32), torch.randint(0, 10, (50,))
    train.fit(_small_cifar_net(), x, y, epochs=2, batch_size=16, lr=1e-3, augment=augment,
              transform=transform, progress=False)
    assert seen == {"augment": 100, "transform": 100}  # every image, every epoch, once


@pytest.mark.parametrize("total_steps", [1, 2, 3, 5, 8])
def test_fit_runs_for_short_schedules(total_steps):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.rand(total_steps * 2, 3, 2, 2), torch.randint(0, 3, (total_steps * 2,))
    history = train.fit(model, x, y, epochs=1, batch_size=2, lr=1e-2, progress=False)
    assert len(history) == 1


@pytest.mark.parametrize(("n_images", "epochs", "batch_size"), [(4, 1, 1), (64, 2, 32)])
def test_fit_with_exactly_four_steps(n_images, epochs, batch_size):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.rand(n_images, 3, 2, 2), torch.randint(0, 3, (n_images,))
    history = train.fit(model, x, y, epochs=epochs, batch_size=batch_size, lr=1e-2,
                        progress=False)
    assert len(history) == epochs


@pytest.mark.parametrize(("n_images", "n_labels"), [(10, 9), (0, 0)])
def test_fit_rejects_mismatched_or_empty_data(n_images, n_labels):
    with pytest.raises(ValueError, match="equally many"):
        train.fit(_small_cifar_net(), torch.rand(n_images, 3, 32, 32),
                  torch.zeros(n_labels, dtype=torch.long), epochs=1, batch_size=4, lr=1e-3,
                  progress=False)


@pytest.mark.parametrize("was_training", [True, False])
def test_predict_and_evaluate_restore_the_mode(mnist_test, was_training):
    x, y = mnist_test
    torch.manual_seed(0)
    model = models.mnist_classifier()  # has dropout: train mode would make outputs random
    model.train(was_training)
    first = train.predict(model, x, batch_size=100)
    assert model.training is was_training
    second = train.predict(model, x, batch_size=37)  # eval mode inside: no dropout noise
    assert torch.allclose(first, second, atol=1e-5)
    accuracy = train.evaluate(model, x, y)
    assert model.training is was_training
    assert accuracy == pytest.approx((first.argmax(1) == y).float().mean().item())


def test_predict_shapes_uint8_and_transform(mnist_test):
    x, y = mnist_test
    torch.manual_seed(0)
    model = models.mnist_classifier().eval()
    logits = train.predict(model, x)
    assert logits.shape == (len(x), 10) and logits.dtype == torch.float32
    as_uint8 = (x * 255).round().to(torch.uint8)
    assert torch.allclose(train.predict(model, as_uint8), logits, atol=1e-5)
    inverted = train.predict(model, x, transform=lambda b: 1 - b)
    assert torch.allclose(inverted, train.predict(model, 1 - x), atol=1e-5)
    accuracy = train.evaluate(model, x, y, transform=lambda b: 1 - b)
    assert accuracy == pytest.approx((inverted.argmax(1) == y).float().mean().item())


def test_predict_in_channels_last_layout_gives_the_plain_forward_pass():
    torch.manual_seed(0)
    model = _small_cifar_net().eval()
    x = torch.rand(64, 3, 32, 32)
    with torch.no_grad():
        plain = model(x.contiguous())
    logits = train.predict(model, x, batch_size=20)
    assert torch.allclose(logits, plain, atol=1e-4, rtol=1e-4)
    assert torch.equal(logits.argmax(1), plain.argmax(1))
    assert all(p.is_contiguous() for p in model.parameters())  # the model itself untouched


# ---------------------------------------------------------------------------------------------
# The checkpoint cache
# ---------------------------------------------------------------------------------------------

BASE_KEY = {"dataset": "mnist", "model": "magnet-cnn", "profile": "quick", "transform": "none",
            "seed": 0, "recipe": asdict(get_profile("quick").recipe("mnist"))}


def test_checkpoint_path_depends_on_every_key_part(cache_dir):
    base = train.checkpoint_path(BASE_KEY)
    assert base.parent == cache_dir and base.suffix == ".pt"
    assert base.name.startswith("mnist-magnet-cnn-quick-none-0-")
    variants = [
        {**BASE_KEY, "seed": 1},
        {**BASE_KEY, "transform": "jpeg75"},
        {**BASE_KEY, "recipe": {**BASE_KEY["recipe"], "lr": 2e-3}},
        {**BASE_KEY, "recipe": {**BASE_KEY["recipe"], "epochs": 3}},
        {**BASE_KEY, "profile": "full"},
        {**BASE_KEY, "dataset": "cifar10"},
        {**BASE_KEY, "model": "other"},
        {**BASE_KEY, "extra": 1},
    ]
    paths = [train.checkpoint_path(k) for k in variants]
    assert len({base, *paths}) == len(variants) + 1
    # the same key in another order is the same file
    assert train.checkpoint_path(dict(reversed(list(BASE_KEY.items())))) == base


def test_checkpoint_path_changes_with_training_code_version(cache_dir, monkeypatch):
    before = train.checkpoint_path(BASE_KEY)
    monkeypatch.setattr(train, "TRAINING_CODE_VERSION", train.TRAINING_CODE_VERSION + 1)
    assert train.checkpoint_path(BASE_KEY) != before


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv(train.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert train.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(train.CACHE_ENV)
    assert train.cache_dir() == data.LESSONDATA / "models"


TOY_KEY = {"dataset": "toy", "model": "linear", "profile": "test", "transform": "none",
           "seed": 3}


def _toy() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2))


class _CountingTrainer:
    """A stand-in for training: counts calls and sets recognisable weights."""

    def __init__(self, fill: float = 0.5):
        self.calls, self.fill = 0, fill

    def __call__(self, model: nn.Module) -> list[dict]:
        self.calls += 1
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(self.fill)
        return [{"epoch": 1, "loss": 0.25}]


def _cache_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_cached_model_trains_once_then_loads(cache_dir):
    trainer = _CountingTrainer()
    first = train.cached_model(TOY_KEY, _toy, trainer, device=torch.device("cpu"))
    assert trainer.calls == 1
    path = train.checkpoint_path(TOY_KEY)
    assert _cache_files(cache_dir) == [path.name]  # the checkpoint, and no temp file
    assert not first.training
    assert first.train_info["history"] == [{"epoch": 1, "loss": 0.25}]
    assert first.train_info["train_seconds"] >= 0

    second = train.cached_model(TOY_KEY, _toy, trainer, device=torch.device("cpu"))
    assert trainer.calls == 1  # loaded, not trained again
    assert not second.training
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in second.parameters())
    assert second.train_info["history"] == first.train_info["history"]
    assert second.train_info["key"] == first.train_info["key"]
    assert _cache_files(cache_dir) == [path.name]

    other = train.cached_model({**TOY_KEY, "seed": 4}, _toy, trainer, device="cpu")
    assert trainer.calls == 2 and other is not second  # another key: trained anew
    assert len(_cache_files(cache_dir)) == 2


def test_cached_model_starts_from_the_same_weights_for_a_seed(cache_dir):
    initial = []

    def remember(model):
        initial.append([p.detach().clone() for p in model.parameters()])
        return []

    train.cached_model({**TOY_KEY, "model": "a"}, _toy, remember, device="cpu")
    train.cached_model({**TOY_KEY, "model": "b"}, _toy, remember, device="cpu")
    train.cached_model({**TOY_KEY, "model": "c", "seed": 99}, _toy, remember, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(initial[0], initial[1], strict=True))
    assert not torch.equal(initial[0][0], initial[2][0])


@pytest.mark.parametrize("junk", [b"", b"\x00garbage\xff" * 100, b"PK\x03\x04half-written"])
def test_cached_model_ignores_a_garbage_checkpoint(cache_dir, junk):
    path = train.checkpoint_path(TOY_KEY)
    path.parent.mkdir(parents=True)
    path.write_bytes(junk)
    trainer = _CountingTrainer()
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        model = train.cached_model(TOY_KEY, _toy, trainer, device="cpu")
    assert trainer.calls == 1
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in model.parameters())
    assert _cache_files(cache_dir) == [path.name]  # replaced by a good one, no temp file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now it loads cleanly
        train.cached_model(TOY_KEY, _toy, trainer, device="cpu")
    assert trainer.calls == 1


def test_cached_model_retrains_on_a_checkpoint_of_another_architecture(cache_dir):
    train.cached_model(TOY_KEY, _toy, _CountingTrainer(), device="cpu")
    trainer = _CountingTrainer(fill=0.1)
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        model = train.cached_model(TOY_KEY, lambda: nn.Linear(3, 3), trainer, device="cpu")
    assert trainer.calls == 1 and isinstance(model, nn.Linear)


def test_fingerprint_changes_with_any_value_dtype_or_shape():
    x = torch.arange(12, dtype=torch.float32)
    assert train.fingerprint(x) == train.fingerprint(x.clone())
    nudged = x.clone()
    nudged[7] += 1e-6
    assert train.fingerprint(nudged) != train.fingerprint(x)
    assert train.fingerprint(x.double()) != train.fingerprint(x)
    assert train.fingerprint(x.view(3, 4)) != train.fingerprint(x.view(4, 3))
    assert train.fingerprint(x.view(3, 4).t()) == train.fingerprint(x.view(3, 4).t().clone())
    assert train.fingerprint("source a") != train.fingerprint("source b")
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    before = train.fingerprint(model)
    model[1].running_mean += 1          # a buffer, not a parameter: still part of the model
    assert train.fingerprint(model) != before


def test_cached_tensors_compute_once_then_load(cache_dir):
    calls = []

    def compute():
        calls.append(1)
        return {"a": torch.arange(3.0), "b": torch.ones(2, 2)}

    first = train.cached_tensors("toy", {"k": 1}, compute, device=torch.device("cpu"))
    again = train.cached_tensors("toy", {"k": 1}, compute, device=torch.device("cpu"))
    assert len(calls) == 1 and set(again) == {"a", "b"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    train.cached_tensors("toy", {"k": 2}, compute, device=torch.device("cpu"))
    assert len(calls) == 2                                  # another key: computed anew
    assert len(_cache_files(cache_dir / "tensors")) == 2    # and no temp files


def test_cached_tensors_ignore_an_unreadable_file(cache_dir):
    train.cached_tensors("toy", {"k": 1}, lambda: {"a": torch.zeros(1)}, device="cpu")
    (path,) = (cache_dir / "tensors").iterdir()
    path.write_bytes(b"PK\x03\x04half-written")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        result = train.cached_tensors("toy", {"k": 1}, lambda: {"a": torch.ones(1)},
                                      device=torch.device("cpu"))
    assert torch.equal(result["a"], torch.ones(1))


def test_failed_training_leaves_no_file(cache_dir):
    def broken(model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.cached_model(TOY_KEY, _toy, broken, device="cpu")
    assert _cache_files(cache_dir) == []


def test_save_atomic_leaves_no_temp_file_when_saving_fails(tmp_path):
    target = tmp_path / "ckpt" / "m.pt"
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled
        train.save_atomic({"f": lambda: 0}, target)
    assert list(target.parent.iterdir()) == []
    train.save_atomic({"w": torch.ones(2)}, target)
    assert torch.equal(torch.load(target)["w"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["m.pt"]


# ---------------------------------------------------------------------------------------------
# classifier(): the course's models through the cache
# ---------------------------------------------------------------------------------------------

TINY = Profile(name="tiny",
               recipes={"mnist": TrainRecipe(train_size=300, epochs=1, batch_size=100, lr=1e-3)},
               test_size=10, attack_size=10, cw_size=10, cw_steps=5, cw_search_steps=1,
               finetune_epochs=1, validation_size=10, detector_fpr=0.1, magnet_kappas=(0,),
               vaccine_qualities=(50,), vaccine_epochs=1, adaptive_size=10,
               adaptive_eps=(8 / 255,), adaptive_steps=(2,), eot_samples=2,
               adversarial_epochs=1, adversarial_steps=1, adversarial_eps=8 / 255)


def test_classifier_with_transform_needs_a_key():
    with pytest.raises(ValueError, match="transform_key"):
        train.classifier("mnist", transform=lambda x: x, profile=TINY, device="cpu")


def test_classifier_trains_caches_and_separates_transforms(data_dir, cache_dir, monkeypatch,
                                                           single_thread):
    calls = []
    real_fit = train.fit

    def recording_fit(model, images, labels, **kwargs):
        calls.append({"n": len(images), **kwargs})
        return real_fit(model, images, labels, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    cpu = torch.device("cpu")
    model = train.classifier("mnist", profile=TINY, device=cpu, progress=False)
    assert len(calls) == 1 and calls[0]["n"] == 300 and calls[0]["epochs"] == 1
    assert calls[0]["transform"] is None and calls[0]["augment"] is None
    assert models.parameter_count(model) == 312_202 and not model.training
    assert len(_cache_files(cache_dir)) == 1

    again = train.classifier("mnist", profile=TINY, device=cpu, progress=False)
    assert len(calls) == 1  # from the cache
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    def halve(x):
        return x / 2

    vaccinated = train.classifier("mnist", profile=TINY, device=cpu, transform=halve,
                                  transform_key="halve", progress=False)
    assert len(calls) == 2 and calls[1]["transform"] is halve
    assert len(_cache_files(cache_dir)) == 2
    assert not torch.equal(vaccinated.state_dict()["0.weight"], model.state_dict()["0.weight"])
    train.classifier("mnist", profile=TINY, device=cpu, seed=1, progress=False)
    assert len(calls) == 3 and calls[2]["seed"] == 1
