"""The book's sources as the tests see them: the configuration, the table of contents in order,
and what each page's source says the built page must show (title, headings, figures, widgets).

Shared by ``tests/test_book.py`` (the notebooks) and ``tests/test_site.py`` (the built site), so
both read ``_toc.yml`` the same way and new chapters are covered as soon as they are listed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG: dict = yaml.safe_load((ROOT / "_config.yml").read_text())
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Cells with these tags are not on the page (remove-input keeps the output, not the source).
REMOVED = {"remove-cell"}
SOURCE_REMOVED = {"remove-cell", "remove-input"}
OUTPUT_REMOVED = {"remove-cell", "remove-output"}


def toc_docnames() -> list[str]:
    """Every page in ``_toc.yml``, root first, in reading order (parts, chapters, sections)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())

    def walk(entries: list[dict]) -> list[str]:
        names = []
        for entry in entries:
            if "file" in entry:
                names.append(_docname(entry["file"]))
            names += walk(entry.get("chapters", []) + entry.get("sections", []))
        return names

    return [_docname(toc["root"])] + walk(toc.get("parts", []) + toc.get("chapters", []))


def _docname(file: str) -> str:
    return re.sub(r"\.(ipynb|md)$", "", file)


def source_path(docname: str) -> Path:
    """The notebook or Markdown file a page is built from."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{docname}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"_toc.yml lists {docname!r}, but neither {docname}.ipynb nor "
                            f"{docname}.md exists")


def notebook(path: Path) -> dict:
    return json.loads(path.read_text())


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


@dataclass(frozen=True)
class PageSource:
    """What a page's source promises the built page shows."""

    docname: str
    path: Path
    headings: list[str]  # Markdown headings, in order, as plain text
    figures: int  # images: image outputs of shown cells, plus Markdown images
    widget_views: int  # widget outputs of shown cells
    sliders: int  # slider widgets inside those views
    progress_bars: int  # progress-bar widgets inside those views
    hidden_source: list[str]  # source lines of hidden cells that no shown cell has

    @property
    def title(self) -> str:
        return self.headings[0] if self.headings else ""

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix == ".ipynb"


def page_source(docname: str) -> PageSource:
    """Read a page's source (notebook or Markdown) into the facts the site tests check."""
    path = source_path(docname)
    if path.suffix == ".md":
        text = path.read_text()
        return PageSource(docname, path, markdown_headings(text), markdown_images(text), 0, 0,
                          0, [])
    nb = notebook(path)
    headings, figures, views, shown_lines, hidden_lines = [], 0, [], set(), []
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and not tags(cell) & REMOVED:
            headings += markdown_headings(source)
            figures += markdown_images(source)
        if cell["cell_type"] != "code":
            continue
        lines = [line.strip() for line in source.splitlines() if len(line.strip()) >= 12]
        if tags(cell) & SOURCE_REMOVED:
            hidden_lines += lines
        else:
            shown_lines.update(lines)
        if tags(cell) & OUTPUT_REMOVED:
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                views.append(data[WIDGET_VIEW]["model_id"])
            elif any(mime.startswith("image/") for mime in data):
                figures += 1
    state = nb["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    shown = [model["model_name"] for model in _reachable(views, state)]
    sliders = sum(name.endswith("SliderModel") and "Style" not in name for name in shown)
    progress = sum(name.endswith("ProgressModel") and "Style" not in name for name in shown)
    hidden = list(dict.fromkeys(line for line in hidden_lines if line not in shown_lines))
    return PageSource(docname, path, headings, figures, len(views), sliders, progress, hidden)


def _reachable(model_ids: list[str], state: dict) -> list[dict]:
    """The widget models the views show: each view's model and every model it refers to."""
    seen: dict[str, dict] = {}
    todo = list(model_ids)
    while todo:
        model_id = todo.pop()
        if model_id in seen or model_id not in state:
            continue
        seen[model_id] = state[model_id]
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model_id]["state"]))
    return list(seen.values())


def markdown_headings(text: str) -> list[str]:
    """ATX headings outside code fences, as the plain text a reader sees."""
    headings, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and (match := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            headings.append(plain_text(match.group(1)))
    return headings


def markdown_images(text: str) -> int:
    return len(re.findall(r"!\[[^\]]*\]\(|<img\b", text))


def plain_text(markdown: str) -> str:
    """Inline Markdown as text: links keep their text; code, emphasis and escapes lose marks."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    text = re.sub(r"(\*\*|__|\*|`)", "", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return " ".join(text.split())
