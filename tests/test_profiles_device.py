"""helpers.profiles, helpers.device and helpers.chapter: choosing sizes, the device, seeds."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from helpers import chapter, data, device, profiles
from helpers.profiles import PROFILE_ENV, get_profile

pytestmark = pytest.mark.usefixtures("single_thread")

# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def test_quick_and_full_exist_with_recipes_for_every_dataset():
    assert {"quick", "full"} <= set(profiles.PROFILES)
    for name in ("quick", "full"):
        profile = get_profile(name)
        assert profile.name == name
        for dataset in data.DATASETS:
            recipe = profile.recipe(dataset)
            assert recipe.epochs >= 1 and recipe.batch_size >= 1 and recipe.lr > 0
            assert recipe.train_size is None or recipe.train_size > 0
            assert len(recipe.widths) == 3


def test_quick_is_smaller_than_full():
    quick, full = get_profile("quick"), get_profile("full")
    assert quick.attack_size < full.attack_size
    assert quick.test_size is not None and full.test_size is None
    assert quick.recipe("mnist").train_size is not None
    # paper scale: the whole training set but the 5,000 images held out for thresholds
    assert full.recipe("mnist").train_size == 55_000 and full.recipe("cifar10").train_size == 45_000
    for name in ("mnist", "cifar10"):   # less training work (MNIST: more images, 2 epochs)
        q, f = quick.recipe(name), full.recipe(name)
        assert q.train_size * q.epochs < f.train_size * f.epochs, name
    # quick MNIST trains on every training image but the ones Chapter 3 holds out
    assert quick.recipe("mnist").train_size + quick.validation_size == 60_000
    assert full.recipe("cifar10").widths == (64, 256, 256)


def test_default_is_quick(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert get_profile().name == "quick"


def test_env_var_is_honoured(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "full")
    assert get_profile().name == "full"
    assert get_profile("quick").name == "quick"  # an explicit name wins over the env var


@pytest.mark.parametrize("spelling", ["FULL", "Full", " full ", "full\n"])
def test_names_are_case_and_space_insensitive(monkeypatch, spelling):
    assert get_profile(spelling).name == "full"
    monkeypatch.setenv(PROFILE_ENV, spelling)
    assert get_profile().name == "full"


@pytest.mark.parametrize("bad", ["fast", "quick2", "ful"])
def test_unknown_profile_raises_naming_the_env_var(monkeypatch, bad):
    with pytest.raises(ValueError, match=PROFILE_ENV) as info:
        get_profile(bad)
    assert "quick" in str(info.value) and "full" in str(info.value)
    monkeypatch.setenv(PROFILE_ENV, bad)
    with pytest.raises(ValueError, match=PROFILE_ENV):
        get_profile()


def test_unknown_dataset_recipe_is_a_key_error():
    with pytest.raises(KeyError, match="svhn"):
        get_profile("quick").recipe("svhn")


def test_profiles_are_frozen():
    profile = get_profile("quick")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.attack_size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.recipe("mnist").epochs = 100  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Device
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("LESSON_DEVICE", raising=False)


def test_cpu_fallback_without_cuda(no_cuda):
    assert device.get_device() == torch.device("cpu")


def test_cuda_chosen_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LESSON_DEVICE", raising=False)
    assert device.get_device().type == "cuda"
    monkeypatch.setenv("LESSON_DEVICE", "cpu")  # forced CPU even with a GPU
    assert device.get_device() == torch.device("cpu")


@pytest.mark.parametrize("wanted", ["cuda", "cuda:0"])
def test_requested_cuda_without_cuda_raises(no_cuda, monkeypatch, wanted):
    monkeypatch.setenv("LESSON_DEVICE", wanted)
    with pytest.raises(RuntimeError, match="LESSON_DEVICE"):
        device.get_device()
    monkeypatch.delenv("LESSON_DEVICE")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        device.get_device(prefer=wanted)


def test_prefer_argument_and_env(no_cuda, monkeypatch):
    assert device.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("LESSON_DEVICE", "cpu")
    assert device.get_device() == torch.device("cpu")


def test_invalid_device_string_raises(no_cuda, monkeypatch):
    monkeypatch.setenv("LESSON_DEVICE", "gpu-please")
    with pytest.raises(RuntimeError):
        device.get_device()


def _draws(generator: torch.Generator):
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
            torch.rand(3, generator=generator).tolist())


def test_seed_everything_repeats_all_draws():
    first = _draws(device.seed_everything(123))
    second = _draws(device.seed_everything(123))
    assert first == second
    other = _draws(device.seed_everything(124))
    for a, b in zip(first, other, strict=True):
        assert a != b
    assert isinstance(device.seed_everything(0), torch.Generator)


def test_seed_everything_accepts_large_seeds():
    """NumPy takes seeds below 2**32 only; bigger seeds are folded, not rejected."""
    a = _draws(device.seed_everything(2**40 + 7))
    b = _draws(device.seed_everything(2**40 + 7))
    assert a == b


# ---------------------------------------------------------------------------------------------
# chapter.start: the first call of every chapter
# ---------------------------------------------------------------------------------------------

def test_start_prints_the_run_line_and_seeds(no_cuda, monkeypatch, capsys):
    monkeypatch.setenv(PROFILE_ENV, "quick")
    profile, dev = chapter.start("00_test", seed=5)
    x = torch.rand(4)
    out = capsys.readouterr().out
    assert profile.name == "quick" and dev == torch.device("cpu")
    assert out.startswith("00_test | profile: quick | device: cpu")
    assert f"torch {torch.__version__}" in out and "LESSON_PROFILE=full" in out
    expected = str(device.training_dtype(dev)).removeprefix("torch.")
    assert f"| training in {expected} |" in out
    from helpers.jpeg import jpeg_backend, jpeg_backend_version
    assert f"| jpeg: {jpeg_backend()} {jpeg_backend_version()} |" in out  # what coded JPEG
    chapter.start("00_test", seed=5)
    assert torch.equal(torch.rand(4), x)
    capsys.readouterr()
    monkeypatch.setenv(PROFILE_ENV, "full")
    profile, _ = chapter.start("00_test")
    assert profile.name == "full" and "Quick profile" not in capsys.readouterr().out


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_training_is_mixed_precision_only_where_the_cpu_has_bfloat16(monkeypatch, native,
                                                                      expected):
    monkeypatch.delenv(device.PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert device.training_dtype(torch.device("cpu")) == expected


@pytest.mark.parametrize("capability, expected", [
    ((7, 0), torch.float16),   # V100
    ((7, 5), torch.float16),   # T4, Colab's default GPU: no native bfloat16
    ((8, 0), torch.bfloat16),  # A100
    ((8, 9), torch.bfloat16),  # L4
    ((9, 0), torch.bfloat16),  # H100
])
def test_gpu_precision_follows_the_compute_capability(monkeypatch, capability, expected):
    monkeypatch.delenv(device.PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _=None: capability)
    assert device.training_dtype(torch.device("cuda")) == expected
    # (a CUDA scaler switches itself off where there is no GPU, so the CPU's shows the rule)
    scaler = device.gradient_scaler(torch.device("cpu"), expected)
    assert scaler.is_enabled() == (expected == torch.float16), "scale float16's loss only"


def test_training_precision_setting_wins_and_is_checked(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setenv(device.PRECISION_ENV, "float32")
    assert device.training_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.setenv(device.PRECISION_ENV, " BFloat16 ")
    assert device.training_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setenv(device.PRECISION_ENV, "float16")
    assert device.training_dtype(torch.device("cpu")) == torch.float16
    monkeypatch.setenv(device.PRECISION_ENV, "fp16")
    with pytest.raises(ValueError, match="LESSON_PRECISION='fp16'.*'float16'"):
        device.training_dtype(torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# chapter.show_settings: the settings a paragraph discusses, with their values
# ---------------------------------------------------------------------------------------------

def test_every_setting_is_described():
    described = chapter.setting_descriptions()
    missing = [name for name, text in described.items()
               if not text and name not in ("name", "recipes", "notes")]
    assert not missing, f"give these Profile fields a comment in profiles.py: {missing}"
    assert described["eot_samples"] == "Chapter 6: random draws averaged per gradient (EOT)"


def test_show_settings_prints_values_as_a_reader_writes_them(capsys):
    quick = profiles.get_profile("quick")
    chapter.show_settings(quick, "adaptive_eps", "attack_size", "shield_datasets",
                          "detector_fpr", "vaccine_from_scratch")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Settings of the quick profile:"
    values = [line.split("  ")[1].strip() for line in out[1:]]
    assert values[0] == "adaptive_eps = (2/255, 4/255, 8/255)"
    assert values[1] == f"attack_size = {quick.attack_size:,}"
    assert values[2] == "shield_datasets = (cifar10)"
    assert values[3] == f"detector_fpr = {quick.detector_fpr}"
    assert values[4] == "vaccine_from_scratch = False"
    assert out[1].endswith("Chapter 6: L-inf budgets of the adaptive attacks")
    chapter.show_settings(profiles.get_profile("full"), "attack_size")
    assert "attack_size = 10,000" in capsys.readouterr().out


def test_show_settings_rejects_an_unknown_name():
    with pytest.raises(KeyError, match="unknown profile settings.*eot_samplez"):
        chapter.show_settings(profiles.get_profile("quick"), "eot_samplez")
