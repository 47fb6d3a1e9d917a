"""Where tensors live, in what precision training computes, and one call that makes runs
repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

PRECISION_ENV = "LESSON_PRECISION"
PRECISIONS = ("float32", "bfloat16", "float16")


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

    Chosen by the hardware (mixed precision: weights, gradients and the optimizer stay
    float32 whatever the forward pass computes in):

    * a CUDA GPU of compute capability 8.0 or above (Ampere, Ada, Hopper: A100, L4, H100):
      ``torch.bfloat16``, which has float32's range, so no loss scaling is needed;
    * an older CUDA GPU (Colab's T4 is 7.5; V100 7.0): ``torch.float16``, which these have
      fast tensor-core kernels for and bfloat16 only emulated; ``fit`` then scales the loss
      with a gradient scaler, since float16's small range would flush gradients to zero;
    * a CPU: ``torch.bfloat16`` where it has native bfloat16 arithmetic (AVX512-BF16 or AMX;
      about 2-3 times faster than float32 on the 2-core CI machine: README, Performance),
      else ``torch.float32``.

    Attacks, predictions and defenses always run in float32. ``LESSON_PRECISION`` set to
    ``float32``, ``bfloat16`` or ``float16`` forces one; models are cached per precision, so
    they never mix.
    """
    wanted = os.environ.get(PRECISION_ENV, "auto").strip().lower()
    if wanted not in ("auto", *PRECISIONS):
        raise ValueError(f"{PRECISION_ENV}={wanted!r}: use 'auto' (chosen by the hardware), "
                         f"or force one of {', '.join(repr(p) for p in PRECISIONS)}")
    if wanted != "auto":
        return getattr(torch, wanted)
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu":
        native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def gradient_scaler(device: torch.device, dtype: torch.dtype) -> torch.amp.GradScaler:
    """A loss scaler that is active only for float16 training (see :func:`training_dtype`);
    for bfloat16 and float32 every call passes through unchanged."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
