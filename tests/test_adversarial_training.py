"""Tests for PGD adversarial training: train.fit's perturb step and
helpers.adversarial_training.adversarial_classifier (inner attack, cache, robustness)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn

from helpers import adversarial_training, attacks, data, train, zoo
from helpers.profiles import TrainRecipe, get_profile
from tests.course_models import as_a_chapter_would

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = dataclasses.replace(
    get_profile("quick"), name="tiny",
    recipes={"mnist": TrainRecipe(train_size=300, epochs=1, batch_size=100, lr=1e-3)},
    adversarial_epochs=1, adversarial_steps=2, adversarial_alpha=0.04, adversarial_eps=0.1,
    adversarial_from_scratch=False)


def _cache_files(folder):
    return sorted(folder.glob("*.pt")) if folder.exists() else []


@pytest.fixture(scope="module")
def small_set():
    return data.load("mnist", "train", n=256).to("cpu")


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(32, 10))


# ---------------------------------------------------------------------------------------------
# train.fit(perturb=...)
# ---------------------------------------------------------------------------------------------

def test_fit_trains_on_the_perturbed_batches(small_set):
    images, labels = small_set
    model, eps = _mlp(), 0.1
    perturb = adversarial_training.PGDPerturbation(eps, steps=2)
    seen, made = [], []

    def recording(m, x, y):
        assert m is model and m.training  # fit hands over the model it trains, in train mode
        adv = perturb(m, x, y)
        assert m.training  # ... and the attack gave it back in train mode
        made.append((x, adv))
        return adv

    def hook(module, inputs):
        seen.append((module.training, inputs[0].detach().clone()))

    model[0].register_forward_pre_hook(hook)
    train.fit(model, images, labels, epochs=2, batch_size=64, lr=1e-3, perturb=recording,
              progress=False)
    assert len(made) == 2 * 4
    for clean, adv in made:  # every batch: within the eps ball, and really moved
        assert attacks.linf_norms(adv, clean).max() <= eps + 1e-6
        assert attacks.linf_norms(adv, clean).min() > eps / 2
        assert adv.min() >= 0 and adv.max() <= 1
    # the forward passes in training mode saw exactly the perturbed batches, in order; the
    # attack's own passes ran in eval mode (2 PGD steps per batch)
    trained_on = [x for training, x in seen if training]
    assert len(trained_on) == len(made)
    for x, (_, adv) in zip(trained_on, made, strict=True):
        assert torch.equal(x, adv)
    assert sum(not training for training, _ in seen) == 2 * len(made)


def test_fit_rejects_a_perturbation_that_changes_the_shape(small_set):
    images, labels = small_set
    with pytest.raises(ValueError, match="perturb changed the batch's shape"):
        train.fit(_mlp(), images, labels, epochs=1, batch_size=64, lr=1e-3, progress=False,
                  perturb=lambda m, x, y: x[:, :, :10])


def test_pgd_perturbation_checks_and_is_reproducible(small_set):
    images, labels = small_set
    x, y = images[:16], labels[:16]
    model = _mlp().eval()
    first = adversarial_training.PGDPerturbation(0.1, 3, seed=5)(model, x, y)
    again = adversarial_training.PGDPerturbation(0.1, 3, seed=5)(model, x, y)
    other = adversarial_training.PGDPerturbation(0.1, 3, seed=6)(model, x, y)
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        adversarial_training.PGDPerturbation(-0.1, 3)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        adversarial_training.PGDPerturbation(0.1, 0)


# ---------------------------------------------------------------------------------------------
# adversarial_classifier
# ---------------------------------------------------------------------------------------------

def test_adversarial_classifier_fine_tunes_the_clean_model_with_madrys_pgd(
        data_dir, cache_dir, monkeypatch):
    cpu = torch.device("cpu")
    calls, fits, starts = [], [], []
    real_pgd, real_fit = attacks.pgd, zoo.fit

    def recording_pgd(model, images, labels, **kwargs):
        adv = real_pgd(model, images, labels, **kwargs)
        calls.append({"n": len(images), "linf": attacks.linf_norms(adv, images).max().item(),
                      **kwargs})
        return adv

    def recording_fit(model, images, labels, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        fits.append(kwargs)
        return real_fit(model, images, labels, **kwargs)

    # patched first: the code that trains is part of every cache key, the clean model's too
    monkeypatch.setattr(attacks, "pgd", recording_pgd)
    monkeypatch.setattr(zoo, "fit", recording_fit)
    clean = zoo.classifier("mnist", profile=TINY, device=cpu, progress=False)
    assert len(_cache_files(cache_dir)) == 1 and len(fits) == 1 and calls == []
    model = adversarial_training.adversarial_classifier("mnist", profile=TINY, device=cpu,
                                                        progress=False)
    recipe = TINY.recipe("mnist")
    assert len(fits) == 2 and fits[1]["epochs"] == TINY.adversarial_epochs
    assert fits[1]["batch_size"] == recipe.batch_size
    assert fits[1]["lr"] == recipe.lr
    assert fits[1]["label_smoothing"] == 0.0  # Madry et al.: plain cross-entropy
    for name, weights in clean.state_dict().items():  # the fine-tune starts from the clean model
        assert torch.equal(starts[1][name], weights)
    assert len(calls) == 3  # 300 images in batches of 100, one epoch
    for call in calls:  # the profile's attack, inside its eps ball
        assert call["eps"] == TINY.adversarial_eps and call["steps"] == TINY.adversarial_steps
        assert call["alpha"] == TINY.adversarial_alpha
        assert 0 < call["linf"] <= TINY.adversarial_eps + 1e-6
    assert not model.training
    assert not torch.equal(model.state_dict()["0.weight"], clean.state_dict()["0.weight"])
    assert model.train_info["base_train_seconds"] == clean.train_info["train_seconds"]
    assert "adversarial" in model.train_info["key"]
    assert len(_cache_files(cache_dir)) == 2

    # from the cache: no training, the same weights
    again = adversarial_training.adversarial_classifier("mnist", profile=TINY, device=cpu,
                                                        progress=False)
    assert len(fits) == 2 and len(calls) == 3
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # other adversarial settings: a new entry, trained anew from the same clean model
    for change in ({"adversarial_eps": 0.2}, {"adversarial_steps": 1},
                   {"adversarial_alpha": 0.03}):
        adversarial_training.adversarial_classifier(
            "mnist", profile=dataclasses.replace(TINY, **change), device=cpu, progress=False)
    assert len(fits) == 5 and len(_cache_files(cache_dir)) == 5
    assert fits[2]["perturb"] is not fits[1]["perturb"]


def test_adversarial_classifier_from_scratch_never_sees_the_clean_model(
        data_dir, cache_dir, monkeypatch):
    """Madry et al.'s protocol (the full profile): fresh weights, seeded, no clean training;
    the same PGD and plain labels, cached apart from the fine-tuned model."""
    cpu, fits, starts = torch.device("cpu"), [], []
    real_fit = zoo.fit

    def recording_fit(model, images, labels, **kwargs):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        fits.append(kwargs)
        return real_fit(model, images, labels, **kwargs)

    monkeypatch.setattr(zoo, "fit", recording_fit)
    scratch = dataclasses.replace(TINY, adversarial_from_scratch=True)
    model = adversarial_training.adversarial_classifier("mnist", profile=scratch, device=cpu,
                                                        progress=False)
    assert len(fits) == 1 and fits[0]["label_smoothing"] == 0.0  # one run: no clean model
    assert fits[0]["perturb"].key.startswith("pgd2-eps25.5-alpha10.2")
    assert model.train_info["base_train_seconds"] == 0.0
    assert "from-scratch" in model.train_info["key"]
    torch.manual_seed(0)
    fresh = zoo.make_classifier("mnist", scratch)
    for name, weights in fresh.state_dict().items():  # seeded initial weights
        assert torch.equal(starts[0][name], weights)
    again = adversarial_training.adversarial_classifier("mnist", profile=scratch, device=cpu,
                                                        progress=False)
    assert len(fits) == 1  # cached
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_adversarial_fine_tuning_makes_a_model_more_robust(mnist_mlp):
    """MNIST, eps 0.1: an MLP's PGD-10 accuracy before and after two epochs of PGD-2 training.

    Measured over seeds 0-2: 12-15% before, 41-44% after, clean accuracy 90-92% both times.
    """
    model, x, y = copy.deepcopy(mnist_mlp[0]), mnist_mlp[1], mnist_mlp[2]
    x_train, y_train = data.load("mnist", "train", n=2000).to("cpu")  # what it was trained on

    def accuracies(m: nn.Module) -> tuple[float, float]:
        adv = attacks.pgd(m, x, y, eps=0.1, steps=10, generator=torch.Generator().manual_seed(0))
        return train.evaluate(m, x, y), train.evaluate(m, adv, y)

    clean_before, robust_before = accuracies(model)
    train.fit(model, x_train, y_train, epochs=2, batch_size=64, lr=1e-3, progress=False,
              perturb=adversarial_training.PGDPerturbation(0.1, steps=2))
    clean_after, robust_after = accuracies(model)
    assert robust_after > robust_before + 0.2, (robust_before, robust_after)
    assert clean_after > clean_before - 0.05, (clean_before, clean_after)


@pytest.fixture(scope="module")
def quick_adversarial(data_dir):
    """Chapter 6's adversarially trained classifiers and the clean ones they start from,
    trained as the chapter would (about 3.5 minutes on 2 cores from an empty cache), so the
    chapter finds them in the cache."""
    quick = get_profile("quick")
    cpu = torch.device("cpu")
    with as_a_chapter_would():
        return {name: (zoo.classifier(name, quick, device=cpu, progress=False),
                       adversarial_training.adversarial_classifier(name, quick, device=cpu,
                                                                   progress=False))
                for name in ("cifar10", "gtsrb")}


@pytest.mark.parametrize("name", ["cifar10", "gtsrb"])
def test_the_courses_adversarial_training_resists_the_pgd_that_breaks_its_original(
        quick_adversarial, name):
    """8/255, PGD-10, 200 test images (measured: CIFAR-10 0% -> 24%, GTSRB 5% -> 48.5%),
    and it was trained on plain labels: no label smoothing in its recipe."""
    original, robust = quick_adversarial[name]
    x, y = data.load(name, "test", n=200).to("cpu")

    def under_pgd(model: nn.Module) -> float:
        adv = attacks.pgd(model, x, y, 8 / 255, steps=10, quantize=True,
                          generator=torch.Generator().manual_seed(0))
        return train.evaluate(model, adv, y)

    before, after = under_pgd(original), under_pgd(robust)
    assert after > before + 0.15, (before, after)
    assert "ls0" in robust.train_info["key"] and "pgd7-eps8-alpha2" in robust.train_info["key"]
