"""helpers.zoo: the course's classifiers, trained by their recipe once and then cached."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import models, transforms, zoo
from helpers.profiles import Profile, TrainRecipe

pytestmark = pytest.mark.usefixtures("single_thread")


def _cache_files(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# classifier(): the course's models through the cache
# ---------------------------------------------------------------------------------------------

TINY = Profile(name="tiny",
               recipes={"mnist": TrainRecipe(train_size=300, epochs=1, batch_size=100, lr=1e-3)},
               test_size=10, attack_size=10, cw_size=10, cw_steps=5, cw_search_steps=1,
               magnet_cw_search_steps=1,
               finetune_epochs=1, validation_size=10, detector_fpr=0.1, magnet_kappas=(0,),
               vaccine_qualities=(50,), vaccine_epochs=1, vaccine_from_scratch=False,
               adaptive_size=10,
               adaptive_eps=(8 / 255,), adaptive_steps=(2,), apgd_steps=2,
               apgd_restarts=1, square_queries=2, square_size=2, eot_samples=2,
               shield_datasets=(), deployed_draws=1,
               adversarial_epochs=1, adversarial_steps=1, adversarial_alpha=2 / 255,
               adversarial_eps=8 / 255, adversarial_from_scratch=False)


def test_a_training_transform_must_name_itself():
    """A bare function has no key; a transforms.Transform does (its name and setting)."""
    with pytest.raises(TypeError, match="Transform"):
        zoo.classifier("mnist", transform=lambda x: x, profile=TINY, device="cpu")
    with pytest.raises(TypeError, match="Transform"):
        zoo.finetuned(torch.nn.Linear(1, 1), "mnist", TINY, name="x", epochs=1,
                      transform=lambda x: x)


def test_classifier_trains_caches_and_separates_transforms(data_dir, cache_dir, monkeypatch,
                                                           single_thread):
    calls = []
    real_fit = zoo.fit

    def recording_fit(model, images, labels, **kwargs):
        calls.append({"n": len(images), **kwargs})
        return real_fit(model, images, labels, **kwargs)

    monkeypatch.setattr(zoo, "fit", recording_fit)
    cpu = torch.device("cpu")
    model = zoo.classifier("mnist", profile=TINY, device=cpu, progress=False)
    assert len(calls) == 1 and calls[0]["n"] == 300 and calls[0]["epochs"] == 1
    assert calls[0]["transform"] is None and calls[0]["augment"] is None
    assert models.parameter_count(model) == 312_202 and not model.training
    assert len(_cache_files(cache_dir)) == 1

    again = zoo.classifier("mnist", profile=TINY, device=cpu, progress=False)
    assert len(calls) == 1  # from the cache
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    halve = transforms.Transform("halve", lambda x, factor: x * factor, 0.5)
    vaccinated = zoo.classifier("mnist", profile=TINY, device=cpu, transform=halve,
                                progress=False)
    assert "-halve0.5-" in _cache_files(cache_dir)[-1] or \
        any("-halve0.5-" in f for f in _cache_files(cache_dir))
    assert len(calls) == 2 and calls[1]["transform"] is halve
    assert len(_cache_files(cache_dir)) == 2
    assert not torch.equal(vaccinated.state_dict()["0.weight"], model.state_dict()["0.weight"])
    zoo.classifier("mnist", profile=TINY, device=cpu, seed=1, progress=False)
    assert len(calls) == 3 and calls[2]["seed"] == 1


def test_a_changed_architecture_retrains(data_dir, cache_dir, monkeypatch):
    """No version number to bump: the same layers with another activation (the same weight
    shapes, so the old weights would load without a word) miss the cache and train anew."""
    cpu = torch.device("cpu")
    zoo.classifier("mnist", profile=TINY, device=cpu, progress=False)
    real = models.mnist_classifier

    def with_gelu() -> nn.Sequential:
        return nn.Sequential(*[nn.GELU() if isinstance(m, nn.ReLU) else m for m in real()])

    monkeypatch.setattr(models, "mnist_classifier", with_gelu)
    trained = []
    real_fit = zoo.fit
    monkeypatch.setattr(zoo, "fit", lambda *a, **k: trained.append(1) or real_fit(*a, **k))
    model = zoo.classifier("mnist", profile=TINY, device=cpu, progress=False)
    assert trained == [1] and isinstance(model[1], nn.GELU)
    assert len(_cache_files(cache_dir)) == 2


def test_an_alternative_architecture_is_named_in_the_key(data_dir, cache_dir):
    cpu = torch.device("cpu")
    cnn = zoo.classifier("mnist", profile=TINY, device=cpu, progress=False)
    mlp = zoo.classifier("mnist", profile=TINY, device=cpu, progress=False, architecture="mlp")
    assert isinstance(mlp[0], nn.Flatten) and isinstance(cnn[0], nn.Conv2d)
    assert not any(isinstance(m, nn.Conv2d) for m in mlp.modules())
    files = _cache_files(cache_dir)
    assert len(files) == 2 and any("mlp" in f for f in files)
    with pytest.raises(ValueError, match="no architecture 'resnet' for 'mnist'"):
        zoo.make_classifier("mnist", TINY, "resnet")
    with pytest.raises(ValueError, match="known: \\[\\]"):
        zoo.make_classifier("cifar10", TINY, "mlp")


def test_cached_only_refuses_to_train(data_dir, cache_dir):
    with pytest.raises(FileNotFoundError, match="no cached model"):
        zoo.classifier("mnist", profile=TINY, device="cpu", cached_only=True)
    assert _cache_files(cache_dir) == []
