"""Headline numbers a chapter records, so runs, profiles and chapters can be compared.

``record("01_distribution_shift", "cifar10_clean_accuracy", 0.77)`` writes
``lessondata/results/<profile>/01_distribution_shift.json`` (committed with the notebook).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import os
from pathlib import Path

from .data import LESSONDATA
from .device import get_device
from .files import atomic_path
from .profiles import get_profile

RESULTS_ENV = "LESSON_RESULTS_DIR"


def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, LESSONDATA / "results")).expanduser()


def results_path(chapter: str, profile: str | None = None) -> Path:
    return results_dir() / (profile or get_profile().name) / f"{chapter}.json"


def load_results(chapter: str, profile: str | None = None) -> dict[str, dict]:
    """All recorded numbers of ``chapter`` for ``profile`` ({} if none yet)."""
    path = results_path(chapter, profile)
    return json.loads(path.read_text()) if path.exists() else {}


def record(chapter: str, name: str, value: float, note: str = "") -> None:
    """Store one headline number with the profile, device and date that produced it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)):
        raise TypeError(f"result {name!r} must be a number (finite, not a bool), got {value!r}")
    profile = get_profile().name
    entries = load_results(chapter, profile)
    entries[name] = {"value": round(float(value), 6), "profile": profile,
                     "device": get_device().type, "date": dt.date.today().isoformat(),
                     **({"note": note} if note else {})}
    with atomic_path(results_path(chapter, profile)) as tmp, open(tmp, "w") as f:
        json.dump(dict(sorted(entries.items())), f, indent=1)
        f.write("\n")


def published(name: str) -> dict:
    """A published number from ``lessondata/published.json``, with its claim and source."""
    entries = json.loads((LESSONDATA / "published.json").read_text())
    if name not in entries:
        raise KeyError(f"no published number {name!r}; known: {sorted(entries)}")
    return entries[name]


def result_key(*parts: str) -> str:
    """A result's name from its parts: lower case, spaces dropped, "/" as "-", joined by "_".

    ``result_key("cifar10", "FGSM 2/255", "JPEG 75") == "cifar10_fgsm2-255_jpeg75"``.
    """
    return "_".join(p.lower().replace(" ", "").replace("/", "-") for p in parts)
