"""helpers.cache: one rule for every cached model and tensor. The key covers the settings, the
data and the code that builds and trains the result; files are written atomically."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from helpers import cache, data, models, train, transforms, zoo
from helpers.profiles import get_profile

pytestmark = pytest.mark.usefixtures("single_thread")

TOY_KEY = {"dataset": "toy", "model": "linear", "profile": "test", "transform": "none",
           "seed": 3}


@pytest.fixture(autouse=True)
def _toy_data(monkeypatch):
    """The toy key names a data set that does not exist: give it a content hash."""
    real = data.content_digest
    monkeypatch.setattr(data, "content_digest",
                        lambda name, split="train": "toy" if name == "toy" else real(name, split))


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


def test_model_path_depends_on_every_key_part(cache_dir):
    trainer = _CountingTrainer()
    base = cache.model_path(TOY_KEY, _toy, trainer)
    assert base.parent == cache_dir and base.suffix == ".pt"
    assert base.name.startswith("toy-linear-test-none-3-")
    variants = [{**TOY_KEY, "seed": 1}, {**TOY_KEY, "transform": "jpeg75"},
                {**TOY_KEY, "profile": "full"}, {**TOY_KEY, "model": "other"},
                {**TOY_KEY, "recipe": {"lr": 2e-3}}, {**TOY_KEY, "extra": 1}]
    paths = [cache.model_path(k, _toy, trainer) for k in variants]
    assert len({base, *paths}) == len(variants) + 1
    # the same key in another order is the same file
    assert cache.model_path(dict(reversed(list(TOY_KEY.items()))), _toy, trainer) == base


def test_the_data_is_part_of_the_key(cache_dir, monkeypatch):
    before = cache.model_path(TOY_KEY, _toy, _CountingTrainer())
    monkeypatch.setattr(data, "content_digest", lambda name, split="train": "other data")
    assert cache.model_path(TOY_KEY, _toy, _CountingTrainer()) != before


def test_the_training_precision_is_part_of_the_key(cache_dir, monkeypatch):
    """A model trained in bfloat16 is another model than one trained in float32."""
    monkeypatch.setenv("LESSON_PRECISION", "float32")
    full = cache.model_path(TOY_KEY, _toy, _CountingTrainer())
    monkeypatch.setenv("LESSON_PRECISION", "bfloat16")
    assert cache.model_path(TOY_KEY, _toy, _CountingTrainer()) != full


def test_changed_training_code_misses_the_cache(cache_dir, monkeypatch):
    """Editing the code that trains (here ``fit``, as zoo calls it) gives another file."""
    profile = get_profile("quick")

    def path() -> object:
        return zoo_model_path("mnist", profile)

    before = path()
    real_fit = zoo.fit

    def edited_fit(*args, **kwargs):  # a different function body: a different fingerprint
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(zoo, "fit", edited_fit)
    assert path() != before
    monkeypatch.setattr(zoo, "fit", real_fit)
    assert path() == before


def zoo_model_path(dataset: str, profile) -> object:
    """The file ``zoo.classifier(dataset)`` would use, found without training."""
    seen = []
    real = cache.cached_model

    def spy(key, make, train, device=None, cached_only=False):
        seen.append(cache.model_path(key, make, train, device))
        raise LookupError

    cache.cached_model = spy
    try:
        with pytest.raises(LookupError):
            zoo.classifier(dataset, profile=profile, device="cpu")
    finally:
        cache.cached_model = real
    return seen[0]


def test_changed_model_code_misses_the_cache(cache_dir, monkeypatch):
    """An activation swapped in the architecture (same weight shapes) is a new model."""
    profile = get_profile("quick")
    before = zoo_model_path("cifar10", profile)
    real = models.cifar_classifier

    def with_relu(*args, **kwargs) -> nn.Sequential:
        model = real(*args, **kwargs)
        for block in model.modules():
            for name, child in block.named_children():
                if isinstance(child, nn.GELU):
                    setattr(block, name, nn.ReLU())
        return model

    monkeypatch.setattr(models, "cifar_classifier", with_relu)
    assert zoo_model_path("cifar10", profile) != before


def test_code_fingerprint_follows_calls_closures_and_settings():
    assert cache.code_fingerprint(train.fit) == cache.code_fingerprint(train.fit)
    assert cache.code_fingerprint(train.fit) != cache.code_fingerprint(train.predict)
    # a closure's settings count: JPEG at 75 is not JPEG at 25
    assert cache.code_fingerprint(transforms.jpeg_at(75)) != \
        cache.code_fingerprint(transforms.jpeg_at(25))

    def outer(quality):
        return lambda x: x * quality

    assert cache.code_fingerprint(outer(2)) != cache.code_fingerprint(outer(3))


def test_code_fingerprint_follows_helpers_calls_transitively(monkeypatch):
    """``build`` calls ``zoo.make_classifier``, which calls ``models.mnist_classifier``: a
    change two calls down changes the fingerprint of ``build``."""
    def build():
        return zoo.make_classifier("mnist", get_profile("quick"))

    before = cache.code_fingerprint(build)
    monkeypatch.setattr(models, "mnist_classifier", lambda: nn.Linear(2, 2))
    assert cache.code_fingerprint(build) != before


def test_a_loaded_model_computes_exactly_what_the_trained_one_did(cache_dir):
    """Both come back in channels-last layout, so the chapters' numbers do not depend on
    whether a model was trained in this run or loaded from the cache."""
    def make() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))

    def train(model: nn.Module) -> list[dict]:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
        return []

    x = torch.rand(5, 3, 4, 4)
    trained = cache.cached_model(TOY_KEY, make, train, device="cpu")
    loaded = cache.cached_model(TOY_KEY, make, train, device="cpu")
    assert trained is not loaded and trained[0].weight.is_contiguous(
        memory_format=torch.channels_last)
    assert loaded[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(trained(x), loaded(x))


def test_code_fingerprint_is_the_same_in_every_process():
    """No set or hash order leaks in: Python randomises string hashes per process."""
    script = ("from helpers import cache, zoo, vaccination; "
              "print(cache.code_fingerprint(zoo.classifier, vaccination.vaccinated))")
    prints = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
              for seed in ("1", "2")}
    assert len(prints) == 1, prints


def test_an_interrupted_write_leaves_nothing_that_loads(cache_dir, monkeypatch):
    trainer = _CountingTrainer()
    real_save = torch.save

    def crash_halfway(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash_halfway)
    with pytest.raises(KeyboardInterrupt):
        cache.cached_model(TOY_KEY, _toy, trainer, device="cpu")
    assert _cache_files(cache_dir) == []
    monkeypatch.setattr(torch, "save", real_save)
    cache.cached_model(TOY_KEY, _toy, trainer, device="cpu")
    assert trainer.calls == 2 and len(_cache_files(cache_dir)) == 1


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert cache.cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv(cache.CACHE_ENV)
    assert cache.cache_dir() == data.LESSONDATA / "models"


def test_cached_model_trains_once_then_loads(cache_dir):
    trainer = _CountingTrainer()
    first = cache.cached_model(TOY_KEY, _toy, trainer, device=torch.device("cpu"))
    assert trainer.calls == 1
    path = cache.model_path(TOY_KEY, _toy, trainer)
    assert _cache_files(cache_dir) == [path.name]  # the checkpoint, and no temp file
    assert not first.training
    assert first.train_info["history"] == [{"epoch": 1, "loss": 0.25}]
    assert first.train_info["train_seconds"] >= 0

    second = cache.cached_model(TOY_KEY, _toy, trainer, device=torch.device("cpu"))
    assert trainer.calls == 1  # loaded, not trained again
    assert not second.training
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in second.parameters())
    assert second.train_info["history"] == first.train_info["history"]
    assert second.train_info["key"] == first.train_info["key"]
    assert _cache_files(cache_dir) == [path.name]

    other = cache.cached_model({**TOY_KEY, "seed": 4}, _toy, trainer, device="cpu")
    assert trainer.calls == 2 and other is not second  # another key: trained anew
    assert len(_cache_files(cache_dir)) == 2


def test_cached_model_starts_from_the_same_weights_for_a_seed(cache_dir):
    initial = []

    def remember(model):
        initial.append([p.detach().clone() for p in model.parameters()])
        return []

    cache.cached_model({**TOY_KEY, "model": "a"}, _toy, remember, device="cpu")
    cache.cached_model({**TOY_KEY, "model": "b"}, _toy, remember, device="cpu")
    cache.cached_model({**TOY_KEY, "model": "c", "seed": 99}, _toy, remember, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(initial[0], initial[1], strict=True))
    assert not torch.equal(initial[0][0], initial[2][0])


@pytest.mark.parametrize("junk", [b"", b"\x00garbage\xff" * 100, b"PK\x03\x04half-written"])
def test_cached_model_ignores_a_garbage_checkpoint(cache_dir, junk):
    trainer = _CountingTrainer()
    path = cache.model_path(TOY_KEY, _toy, trainer)
    path.parent.mkdir(parents=True)
    path.write_bytes(junk)
    with pytest.warns(UserWarning, match="unreadable cache file"):
        model = cache.cached_model(TOY_KEY, _toy, trainer, device="cpu")
    assert trainer.calls == 1
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in model.parameters())
    assert _cache_files(cache_dir) == [path.name]  # replaced by a good one, no temp file
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # now it loads cleanly
        cache.cached_model(TOY_KEY, _toy, trainer, device="cpu")
    assert trainer.calls == 1


def test_another_architecture_is_another_file(cache_dir):
    """The architecture as built is part of the key: same settings, other layers, new file."""
    cache.cached_model(TOY_KEY, _toy, _CountingTrainer(), device="cpu")
    trainer = _CountingTrainer(fill=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = cache.cached_model(TOY_KEY, lambda: nn.Linear(3, 3), trainer, device="cpu")
    assert trainer.calls == 1 and isinstance(model, nn.Linear)
    assert len(_cache_files(cache_dir)) == 2


def test_fingerprint_changes_with_any_value_dtype_or_shape():
    x = torch.arange(12, dtype=torch.float32)
    assert cache.fingerprint(x) == cache.fingerprint(x.clone())
    nudged = x.clone()
    nudged[7] += 1e-6
    assert cache.fingerprint(nudged) != cache.fingerprint(x)
    assert cache.fingerprint(x.double()) != cache.fingerprint(x)
    assert cache.fingerprint(x.view(3, 4)) != cache.fingerprint(x.view(4, 3))
    assert cache.fingerprint(x.view(3, 4).t()) == cache.fingerprint(x.view(3, 4).t().clone())
    assert cache.fingerprint("source a") != cache.fingerprint("source b")
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    before = cache.fingerprint(model)
    model[1].running_mean += 1          # a buffer, not a parameter: still part of the model
    assert cache.fingerprint(model) != before


def test_cached_tensors_compute_once_then_load(cache_dir):
    calls = []

    def compute():
        calls.append(1)
        return {"a": torch.arange(3.0), "b": torch.ones(2, 2)}

    first = cache.cached_tensors("toy", {"k": 1}, compute, device=torch.device("cpu"))
    again = cache.cached_tensors("toy", {"k": 1}, compute, device=torch.device("cpu"))
    assert len(calls) == 1 and set(again) == {"a", "b"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    cache.cached_tensors("toy", {"k": 2}, compute, device=torch.device("cpu"))
    assert len(calls) == 2                                  # another key: computed anew
    assert len(_cache_files(cache_dir / "tensors")) == 2    # and no temp files


def test_cached_tensors_ignore_an_unreadable_file(cache_dir):
    results = iter([torch.zeros(1), torch.ones(1)])

    def compute():
        return {"a": next(results)}

    cache.cached_tensors("toy", {"k": 1}, compute, device="cpu")
    (path,) = (cache_dir / "tensors").iterdir()
    path.write_bytes(b"PK\x03\x04half-written")
    with pytest.warns(UserWarning, match="unreadable cache file"):
        result = cache.cached_tensors("toy", {"k": 1}, compute, device=torch.device("cpu"))
    assert torch.equal(result["a"], torch.ones(1))


def test_cached_tensors_key_includes_the_code(cache_dir):
    """Two computations under the same settings are two entries: their code differs."""
    a = cache.cached_tensors("toy", {"k": 1}, lambda: {"a": torch.zeros(1)}, device="cpu")
    b = cache.cached_tensors("toy", {"k": 1}, lambda: {"a": torch.ones(1)}, device="cpu")
    assert torch.equal(a["a"], torch.zeros(1)) and torch.equal(b["a"], torch.ones(1))


def test_failed_training_leaves_no_file(cache_dir):
    def broken(model):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached_model(TOY_KEY, _toy, broken, device="cpu")
    assert _cache_files(cache_dir) == []


def test_save_atomic_leaves_no_temp_file_when_saving_fails(tmp_path):
    target = tmp_path / "ckpt" / "m.pt"
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled
        cache.save_atomic({"f": lambda: 0}, target)
    assert list(target.parent.iterdir()) == []
    cache.save_atomic({"w": torch.ones(2)}, target)
    assert torch.equal(torch.load(target)["w"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["m.pt"]


