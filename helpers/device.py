"""Where tensors live, in what precision training computes, and one call that makes runs
repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

PRECISION_ENV = "LESSON_PRECISION"


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


def training_dtype(device: torch.device) -> torch.dtype:
    """What :func:`helpers.train.fit` computes its forward pass in on ``device``.

    ``torch.bfloat16`` (mixed precision: weights, gradients and the optimizer stay float32)
    where the hardware has native bfloat16 arithmetic: a CUDA GPU from Ampere on, or a CPU
    with AVX512-BF16 or AMX. There it trains about 2-3 times faster than float32 (measured on
    the 2-core CI machine: README, Performance). Elsewhere ``torch.float32``. Attacks,
    predictions and defenses always run in float32. ``LESSON_PRECISION=float32`` forces
    float32 everywhere; models are cached per precision, so the two never mix.
    """
    wanted = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if wanted not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"{PRECISION_ENV}={wanted!r}: use 'auto' (bfloat16 where the hardware "
                         "has it natively), 'float32' or 'bfloat16'")
    if wanted != "auto":
        return getattr(torch, wanted)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    elif device.type == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    else:
        native = False
    return torch.bfloat16 if native else torch.float32
