"""How long inference takes: milliseconds per image, measured so that defenses compare fairly."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def per_image_ms(predict: Callable[[torch.Tensor], object], images: torch.Tensor,
                 repeats: int = 3) -> float:
    """Milliseconds per image of ``predict(images)``: the fastest of ``repeats`` timed runs
    after one warm-up, i.e. the run least disturbed by whatever else the machine was doing.
    Compare defenses by their ratio to the bare classifier timed the same way.
    """
    if repeats < 1 or len(images) == 0:
        raise ValueError(f"need at least one repeat and one image, got {repeats} and "
                         f"{len(images)}")
    predict(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    return 1000 * min(times) / len(images)
