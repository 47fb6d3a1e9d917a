"""Repository-wide pytest settings that must also apply when only ``book/`` is collected."""

from __future__ import annotations

import pytest

# nbval waits only 5 s for a finished cell's output messages to arrive. After a long training
# cell (progress-bar widgets send many messages) a busy 2-core CI machine can take longer than
# that to deliver them, and nbval then fails a cell that ran fine. Give it a minute.
NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if hasattr(item, "output_timeout"):  # nbval's notebook-cell items
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
