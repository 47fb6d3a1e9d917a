"""helpers.results.published: the paper's numbers a chapter compares with, each with its source."""

from __future__ import annotations

import json
import numbers
import re

import pytest

from helpers import results
from helpers.data import LESSONDATA

REPO = LESSONDATA.parent
ENTRIES = json.loads((LESSONDATA / "published.json").read_text())


def test_published_json_is_not_empty():
    assert isinstance(ENTRIES, dict) and ENTRIES


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_every_entry_has_value_claim_and_source(name):
    """A number (``value``) or a verbatim quotation (``quote``), with its claim and source."""
    entry = results.published(name)
    assert entry == ENTRIES[name]
    assert ("value" in entry) != ("quote" in entry), name
    if "quote" in entry:
        assert isinstance(entry["quote"], str) and entry["quote"].strip(), name
    else:
        assert isinstance(entry["value"], numbers.Real) and not isinstance(entry["value"], bool)
    for key in ("claim", "source"):
        assert isinstance(entry[key], str) and entry[key].strip(), (name, key)


def test_unknown_name_is_a_key_error_that_names_the_known_ones():
    with pytest.raises(KeyError, match="no_such_number") as info:
        results.published("no_such_number")
    for name in ENTRIES:
        assert name in str(info.value)


def _sources() -> list[str]:
    """The chapters' code: notebook code cells and the tools that write them."""
    texts = [path.read_text() for path in sorted((REPO / "tools").glob("*.py"))]
    for path in sorted((REPO / "book").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        texts += ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    return texts


def test_every_published_name_the_chapters_ask_for_exists():
    asked = {name for text in _sources()
             for name in re.findall(r"published\(\s*[\"']([^\"']+)[\"']", text)}
    assert asked, "no chapter calls results.published; update this test"
    assert asked <= set(ENTRIES), sorted(asked - set(ENTRIES))
