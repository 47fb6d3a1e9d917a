"""Models the chapters train too, built by tests exactly as a chapter would build them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from helpers import cache

# Read when the test modules are collected, before any test changes them.
COURSE_CACHE = cache.cache_dir()  # LESSON_CACHE_DIR, or lessondata/models
CHAPTER_THREADS = torch.get_num_threads()  # what a chapter's kernel gets: torch's default


@contextlib.contextmanager
def as_a_chapter_would() -> Iterator[Path]:
    """Build models exactly as a chapter would: in the chapters' model cache
    (``LESSON_CACHE_DIR`` as the test run started, by default ``lessondata/models``) and with
    torch's default number of threads. A model trained on one thread differs in its last bits
    from one trained on two, and so would every number a chapter then computes with it.
    For module fixtures that need a model a chapter trains too."""
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LESSON_CACHE_DIR", str(COURSE_CACHE))
        torch.set_num_threads(CHAPTER_THREADS)
        try:
            yield COURSE_CACHE
        finally:
            torch.set_num_threads(threads)
