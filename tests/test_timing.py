"""helpers.timing: milliseconds per image, the fastest of a few runs after a warm-up."""

from __future__ import annotations

import pytest
import torch

from helpers import timing


def test_per_image_ms_is_the_fastest_timed_run_after_a_warm_up(monkeypatch):
    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0])     # timed runs of 3 s, 1 s and 2 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    calls = []
    ms = timing.per_image_ms(lambda z: calls.append(len(z)), torch.zeros(10, 1), repeats=3)
    assert calls == [10] * 4                               # a warm-up, then three timed runs
    assert ms == pytest.approx(1000 * 1.0 / 10)            # 1 s for 10 images: 100 ms each
    with pytest.raises(ValueError, match="at least one repeat"):
        timing.per_image_ms(lambda z: None, torch.zeros(10, 1), repeats=0)
