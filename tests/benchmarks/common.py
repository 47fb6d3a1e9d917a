"""What every benchmark shares: the lesson data, machine facts, and side-by-side timing.

Importing this module points ``LESSON_DATA_DIR`` at ``../shared/data`` when that folder exists
and the variable is unset, as ``tests/conftest.py`` does for the tests.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `helpers` importable
    sys.path.insert(0, str(REPO))
SHARED_DATA = REPO.parent / "shared" / "data"
if "LESSON_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["LESSON_DATA_DIR"] = str(SHARED_DATA)

import torch  # noqa: E402


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--repeats`` and ``--threads``: the same meaning in every benchmark."""
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per contender (3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1; 0: torch's own choice)")


def add_profile_option(parser: argparse.ArgumentParser) -> None:
    """``--profile``: the sizes the training and chapter benchmarks use."""
    from helpers.profiles import PROFILE_ENV, PROFILES

    default = os.environ.get(PROFILE_ENV, "quick")
    parser.add_argument("--profile", default=default, choices=sorted(PROFILES),
                        help=f"the course profile to measure ({default}, from {PROFILE_ENV})")


def set_threads(threads: int) -> None:
    """One thread by default: on a shared 2-core machine two threads stall each other."""
    if threads > 0:
        torch.set_num_threads(threads)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str:
    try:
        return importlib.import_module(module).__version__
    except ImportError:
        return "not installed"


def machine_facts(device: torch.device) -> list[tuple[str, str]]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        ("date", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ("machine", f"{platform.node()} ({platform.platform()})"),
        ("cpu", f"{cpu_model()}; {os.cpu_count()} CPUs, {usable} usable"),
        ("load average (1, 5, 15 min)", load),
        ("torch threads", f"{torch.get_num_threads()} intra-op, "
                          f"{torch.get_num_interop_threads()} inter-op"),
        ("device", str(device) + (f" ({torch.cuda.get_device_name(device)})"
                                  if device.type == "cuda" else "")),
        ("python", platform.python_version()),
        *[(label, _version(module)) for label, module in (
            ("torch", "torch"), ("torchvision", "torchvision"), ("torchattacks", "torchattacks"),
            ("Pillow", "PIL"))],
    ]


def print_machine(device: torch.device) -> None:
    print("Machine")
    for key, value in machine_facts(device):
        print(f"  {key:<28} {value}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare(contenders: dict[str, Callable[..., Any]], repeats: int, device: torch.device,
            warm_up: dict | None = None) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """A warm-up run each (``run(**warm_up)``), then ``repeats`` timed runs, alternating, so
    that a change in the machine's load hits every contender alike."""
    for run in contenders.values():
        run(**(warm_up or {}))
    outputs: dict[str, Any] = {}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            _sync(device)
            start = time.perf_counter()
            outputs[name] = run()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times, outputs


def report(title: str, n: int, times: dict[str, list[float]]) -> float:
    """Print images/s and the median time of each contender and their ratio; returns it."""
    print(f"\n{title}")
    rates = {}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        rates[name] = n / median
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"  {name:<34} {rates[name]:9.1f} images/s   median {median:7.3f} s  "
              f"(runs: {runs})")
    (first, rate_first), (second, rate_second) = rates.items()
    ratio = rate_first / rate_second
    verdict = ("the same within 5%" if abs(ratio - 1) < 0.05
               else "faster" if ratio > 1 else "slower")
    print(f"  ratio {first} / {second}: {ratio:.2f}x ({verdict})")
    return ratio
