"""The first call of every chapter: pick the profile and device, seed, and say so; and the
settings a chapter discusses, printed with their values."""

from __future__ import annotations

import dataclasses
import inspect
import platform
import re
import sys
from fractions import Fraction

import torch
import torchvision

from .device import get_device, seed_everything, training_dtype
from .jpeg import jpeg_backend, jpeg_backend_version
from .profiles import Profile, get_profile


def describe_run(profile: Profile, device: torch.device) -> str:
    """One line naming everything that produced a chapter's numbers."""
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    precision = str(training_dtype(device)).removeprefix("torch.")
    return (f"profile: {profile.name} | device: {device.type}{gpu} | training in {precision} | "
            f"torch {torch.__version__} | torchvision {torchvision.__version__} | "
            f"jpeg: {jpeg_backend()} {jpeg_backend_version()} | "
            f"python {platform.python_version()}")


def start(chapter: str, seed: int = 0) -> tuple[Profile, torch.device]:
    """Choose profile and device, seed everything, print the run line; returns (profile, device)."""
    profile = get_profile()
    device = get_device()
    seed_everything(seed)
    print(f"{chapter} | {describe_run(profile, device)}")
    if profile.name == "quick":
        print("Quick profile: small models and subsets, so the chapter runs on a CPU in minutes.\n"
              "Its numbers are indicative, not paper scale: set LESSON_PROFILE=full on a GPU.")
    sys.stdout.flush()
    return profile, device


def setting_descriptions() -> dict[str, str]:
    """Each ``Profile`` field's comment in ``profiles.py``: the one place a setting is explained."""
    source = inspect.getsource(Profile)
    found = dict(re.findall(r"^\s+(\w+): [^#\n]+# (.+)$", source, flags=re.MULTILINE))
    return {f.name: found.get(f.name, "") for f in dataclasses.fields(Profile)}


def _shown(value: object) -> str:
    """A setting as a reader would write it: 8/255 rather than 0.0313..., 10,000 with a comma."""
    if isinstance(value, tuple):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    if isinstance(value, float) and not value.is_integer():
        in_steps = Fraction(value).limit_denominator(255)
        if in_steps.denominator == 255 and abs(float(in_steps) - value) < 1e-12:
            return f"{in_steps.numerator}/255"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def show_settings(profile: Profile, *names: str) -> None:
    """Print the profile's values of ``names``, each with what it sets, so a reader sees how
    small (quick) or large (full) the experiment behind a paragraph is."""
    descriptions = setting_descriptions()
    unknown = [name for name in names if name not in descriptions]
    if unknown:
        raise KeyError(f"unknown profile settings {unknown}; known: {sorted(descriptions)}")
    values = {name: _shown(getattr(profile, name)) for name in names}
    width = max(len(f"{n} = {v}") for n, v in values.items())
    print(f"Settings of the {profile.name} profile:")
    for name, value in values.items():
        print(f"  {f'{name} = {value}':{width}s}  {descriptions[name]}")
    sys.stdout.flush()
