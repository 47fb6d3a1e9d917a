"""Repository-wide pytest settings that must also apply when only ``book/`` is collected."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

# nbval waits only 5 s for a finished cell's output messages to arrive. After a long training
# cell (progress-bar widgets send many messages) a busy 2-core CI machine can take longer than
# that to deliver them, and nbval then fails a cell that ran fine: CI saw 60 s exceeded after
# Chapter 5's 4-minute training cell, whose cell had run fine. Give it ten minutes.
NBVAL_OUTPUT_TIMEOUT_S = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook-cell items
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S


# Each chapter's wall time under nbval: the sum of its cells' set-up, run and tear-down times,
# printed at the end of every run (the README's per-chapter figures come from CI's output).
_notebook_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[Path(path).stem] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    if not _notebook_seconds:
        return
    terminalreporter.section("chapter wall times under nbval")
    for stem, seconds in sorted(_notebook_seconds.items()):
        terminalreporter.write_line(f"{stem}: {seconds / 60:.1f} min ({seconds:.0f} s)")
