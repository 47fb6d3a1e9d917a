"""Where tensors live, and one call that makes runs repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA when available, else CPU. ``LESSON_DEVICE`` (or ``prefer``) forces one, e.g. ``cpu``."""
    wanted = prefer or os.environ.get("LESSON_DEVICE")
    if wanted:
        device = torch.device(wanted)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"Device {wanted!r} was requested but CUDA is not available here; "
                               "unset LESSON_DEVICE or set it to 'cpu'.")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a CPU generator seeded the same way.

    On the CPU this makes a run repeat exactly; CUDA kernels may still differ in the last bits.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)
