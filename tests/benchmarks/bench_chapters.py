"""Benchmark: each chapter's wall time under nbval, as the test command runs it.

Run from the repository root (the quick profile takes about 15 minutes on 2 CPU cores)::

    python -m tests.benchmarks.bench_chapters                   # every chapter in _toc.yml
    python -m tests.benchmarks.bench_chapters book/02_adversarial_examples.ipynb
    python -m tests.benchmarks.bench_chapters --model-cache lessondata/models   # reuse models

Each notebook runs in its own ``python -m pytest --nbval-lax <notebook>`` (the project's pytest
settings add ``--nbval-current-env``), in ``_toc.yml`` order, with ``LESSON_PROFILE`` set to
``--profile`` (default: ``LESSON_PROFILE``, else ``quick``). By default the chapters share a
new, empty model cache, so the times include training, as in CI on a fresh clone (later
chapters reuse the models earlier ones trained, so run them in order); ``--model-cache DIR``
uses a cache you already have.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from helpers.device import get_device
from tests.benchmarks.common import REPO, add_profile_option, print_machine
from tests.bookfiles import source_path, toc_docnames


def toc_notebooks() -> list[Path]:
    """The chapters in ``_toc.yml`` order (notebooks only)."""
    paths = [source_path(docname) for docname in toc_docnames()]
    return [path for path in paths if path.suffix == ".ipynb"]


def time_notebook(path: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall time of ``pytest --nbval-lax path`` and pytest's closing line."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir",
               str(REPO), "--nbval-lax", "-q", str(path.resolve())]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    lines = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed)",
                                                                      line)]
    outcome = lines[-1].strip("= ") if lines else f"exit {result.returncode}"
    if result.returncode != 0:
        failures = [line for line in result.stdout.splitlines()
                    if line.startswith(("FAILED", "ERROR"))]
        outcome = "  ".join([f"FAILED ({outcome}):", *failures[:3]])
    return seconds, outcome


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-cache", type=Path, default=None,
                        help="LESSON_CACHE_DIR for the chapters (default: a new, empty folder)")


def run(args: argparse.Namespace, notebooks: list[Path]) -> dict[str, float]:
    """Run each notebook under nbval; print and return the wall times."""
    with tempfile.TemporaryDirectory(prefix="bench-chapters-") as empty_cache:
        cache = args.model_cache or Path(empty_cache)
        env = {**os.environ, "LESSON_PROFILE": args.profile,
               "LESSON_CACHE_DIR": str(Path(cache).resolve())}
        print(f"\nChapters under nbval (--nbval-lax), {args.profile} profile, model cache "
              f"{cache}{' (new, empty)' if args.model_cache is None else ''}")
        times = {}
        for path in notebooks:
            seconds, outcome = time_notebook(path, env)
            times[path.name] = seconds
            print(f"  {path.name:<40} {seconds:7.1f} s  {outcome}", flush=True)
        print(f"  {'all chapters':<40} {sum(times.values()):7.1f} s")
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to time (default: every chapter in _toc.yml, in order)")
    add_profile_option(parser)
    add_options(parser)
    args = parser.parse_args(argv)
    print_machine(get_device())
    run(args, args.notebooks or toc_notebooks())


if __name__ == "__main__":
    main()
