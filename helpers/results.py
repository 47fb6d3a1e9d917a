"""Headline numbers a chapter records, and numbers its prose quotes.

``record("01_distribution_shift", "cifar10_clean_accuracy", 0.77, profile)`` writes
``lessondata/results/<profile>/01_distribution_shift.json`` (committed with the notebook) and
glues the value under the same name, so the chapter's Markdown quotes it as
``{glue:text}`cifar10_clean_accuracy:.1%``` instead of typing a number that could drift.
The file holds nothing volatile (no dates, no timings): re-running a chapter whose numbers did
not change leaves it byte for byte as it was.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path

from .data import LESSONDATA
from .device import get_device
from .files import atomic_path
from .profiles import Profile

RESULTS_ENV = "LESSON_RESULTS_DIR"


def results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, LESSONDATA / "results")).expanduser()


def _profile_name(profile: Profile | str) -> str:
    return profile if isinstance(profile, str) else profile.name


def results_path(chapter: str, profile: Profile | str) -> Path:
    return results_dir() / _profile_name(profile) / f"{chapter}.json"


def load_results(chapter: str, profile: Profile | str) -> dict[str, dict]:
    """All recorded numbers of ``chapter`` for ``profile`` ({} if none yet)."""
    path = results_path(chapter, profile)
    return json.loads(path.read_text()) if path.exists() else {}


def _checked_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)):
        raise TypeError(f"result {name!r} must be a number (finite, not a bool), got {value!r}")
    return float(value)


def record(chapter: str, name: str, value: float, profile: Profile | str,
           note: str = "") -> None:
    """Store one headline number with the profile (the chapter's, from ``helpers.start``) and
    the device that produced it, and glue it.

    Deterministic: the same numbers give the same file, byte for byte (keys sorted, values
    rounded to 6 decimals, no date). Do not record timings; they change with every run.
    """
    value = round(_checked_number(name, value), 6)
    profile = _profile_name(profile)
    entries = load_results(chapter, profile)
    entries[name] = {"value": value, "profile": profile, "device": get_device().type,
                     **({"note": note} if note else {})}
    text = json.dumps(dict(sorted(entries.items())), indent=1) + "\n"
    path = results_path(chapter, profile)
    if not path.exists() or path.read_text() != text:
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write(text)
    glue(name, value)


def glue(name: str, value: object) -> None:
    """Make ``value`` quotable in the chapter's Markdown as ``{glue:text}`name:.1%```.

    Uses MyST-NB's ``glue`` (how Jupyter Book 1.x fills prose from outputs), without showing
    anything in the notebook. Where MyST-NB is not installed (Colab), it does nothing: the
    chapter still runs, and the Markdown shows the role's text instead of the number.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = _checked_number(name, value)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)


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


def binomial_se(accuracy: float, n: int) -> float:
    """One standard error of an accuracy measured on ``n`` images (binomial)."""
    if n <= 0 or not 0 <= accuracy <= 1:
        raise ValueError(f"need 0 <= accuracy <= 1 and n > 0, got {accuracy!r} and {n!r}")
    return math.sqrt(accuracy * (1 - accuracy) / n)


def interval95(accuracy: float, n: int) -> float:
    """Half-width of the 95% binomial interval of an accuracy on ``n`` images (normal
    approximation, 1.96 standard errors): "62% +- 4.3 points" is ``62%`` and ``0.043``."""
    return 1.96 * binomial_se(accuracy, n)


def wilson_interval(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval ``(low, high)`` of an accuracy on ``n`` images.

    Unlike :func:`interval95`'s normal approximation it does not shrink to nothing at 0% or
    100%: 0 of 200 images correct is ``(0, 1.9%)``, not a certain 0%. For the accuracies an
    adaptive attack leaves, often a few images, that is the interval to report.
    """
    binomial_se(accuracy, n)  # checks the arguments
    centre = (accuracy + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(accuracy * (1 - accuracy) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def glue_with_interval(name: str, accuracy: float, n: int) -> None:
    """Glue ``accuracy`` as ``name`` and its 95% half-width in points as ``name_pm``, so the
    prose writes ``{glue:text}`name:.0%` (+- {glue:text}`name_pm:.0f` points)``."""
    glue(name, accuracy)
    glue(f"{name}_pm", 100 * interval95(accuracy, n))


def clearly_above(a: float, b: float, n: int, z: float = 2.0) -> bool:
    """Is accuracy ``a`` above ``b`` by more than ``z`` standard errors of their difference?

    Both measured on ``n`` images. The difference's error is taken as if the two were
    independent, which overstates it for the paired comparisons the chapters make (the same
    images for both), so a ``True`` here is conservative. Assert cells use it so that a claim
    rests only on a gap larger than the sampling noise.
    """
    return a - b > z * math.hypot(binomial_se(a, n), binomial_se(b, n))
