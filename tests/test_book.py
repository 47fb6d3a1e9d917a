"""The book as a whole: stored notebooks, the Colab set-up, and a warnings-as-errors site build."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.bookfiles import CONFIG, ROOT, toc_docnames

CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


FRONT, BACK = ["book/how_to_use"], ["book/glossary", "book/references"]


def test_every_chapter_is_in_the_toc_in_order():
    """The introduction, how to use the book, the chapters in order, the glossary, the
    references."""
    assert CHAPTERS, "no chapters found in book/"
    assert toc_docnames()[1:] == FRONT + [f"book/{p.stem}" for p in CHAPTERS] + BACK


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_stored_executed_with_its_profile_line(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell must be executed"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    first = next(o for o in outputs if o["output_type"] == "stream")
    text = "".join(first["text"])
    for word in ("profile:", "device:", "torch ", "torchvision "):
        assert word in text, f"first output must state the {word.strip(': ')}: {text!r}"
    raw = path.read_text()
    for local in ("/work/", "/tmp/", "/root/"):
        assert local not in raw, f"{path.name} contains a local path {local}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_assert_cells_are_hidden_from_the_site(path):
    for cell in _cells(path):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and re.search(r"^assert ", source, re.MULTILINE):
            assert "remove-cell" in cell["metadata"].get("tags", []), source[:80]
        assert "NBVAL" not in source, "use tags, not nbval comment markers"


def test_site_builds_without_warnings(site_build):
    """Jupyter Book 1.x, warnings as errors, from the stored outputs (built once per run)."""
    assert site_build.returncode == 0, site_build.log
    html = site_build.html
    for path in CHAPTERS:
        page = (html / "book" / f"{path.stem}.html").read_text()
        expected = (f"colab.research.google.com/github/"
                    f"{CONFIG['repository']['url'].split('github.com/')[1]}/blob/"
                    f"{CONFIG['repository']['branch']}/book/{path.name}")
        assert expected in page, "Open-in-Colab link missing or wrong"
        assert page.count("<img") >= 3, "the chapter's figures are missing"
        if "application/vnd.jupyter.widget-view+json" in path.read_text():  # has widgets
            assert "application/vnd.jupyter.widget-state+json" in page, "widget state missing"
        assert "assert " not in re.sub(r"<[^>]+>", "", page), "an assert cell leaked to the site"
