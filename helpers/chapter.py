"""The first call of every chapter: pick the profile and device, seed, and say so."""

from __future__ import annotations

import platform
import sys

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
