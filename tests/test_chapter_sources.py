"""The chapters' text sources: each ``book/NN_*.md`` (MyST Markdown, jupytext) is paired with the
executed ``book/NN_*.ipynb`` the site and Colab read, and the two must agree; the set-up cell
names the configured repository; and the prose quotes measured numbers through ``glue`` rather
than typing them, so a re-run cannot leave a sentence that its own outputs contradict.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from tests.bookfiles import CONFIG, ROOT

SOURCES = sorted((ROOT / "book").glob("[0-9][0-9]_*.md"))
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

# Numbers a chapter's Markdown may type, because they are not measured by the chapter: settings
# (a budget, a threshold rule) and figures quoted from papers (each with its source nearby).
# Everything else that looks measured (see MEASURED) must come from a glue role.
TYPED_NUMBERS: dict[str, dict[str, str]] = {
    "01_distribution_shift": {
        "95%": "the confidence level of the intervals quoted, a setting",
    },
    "02_adversarial_examples": {
        "95%": "the confidence level of the intervals drawn, a setting",
        "0.01": "Carlini-Wagner's learning rate (the CW paper's), a setting",
        "3%": "the budget 8/255 as a share of the pixel range, a setting",
        "0.02": "DeepFool's customary overshoot, a setting",
        "0.05": "an MNIST attack budget (eps), a setting",
        "0.2": "an MNIST attack budget (eps) and a DeepFool overshoot, settings",
        "0.3": "an MNIST attack budget (eps), the usual one, a setting",
        "0.0039": "1/255, one step of an 8-bit image, a constant",
    },
    "03_magnet_reformer": {
        "90%": "the attack success a Carlini-Wagner point needs to be drawn, a setting",
        "95%": "the confidence level of the intervals drawn, a setting",
        "0.1": "noise std of MNIST's denoising training and of the noisy-digit figure, "
               "and Carlini-Wagner's Adam step: settings",
        "0.025": "noise std of CIFAR-10's denoising training, a setting",
        "0.1%": "the paper's false-positive budget (Meng & Chen 2017), a setting",
        "0.5%": "the quick profile's false-positive budget, a setting",
        "0.2": "DeepFool's overshoot in this chapter, a setting",
        "0.02": "DeepFool's customary overshoot, a setting",
    },
    "04_jpeg_defense": {
        "0.02": "DeepFool's customary overshoot, a setting",
        "95%": "the confidence level of the intervals drawn, a setting",
    },
    "05_vaccination": {
        "95%": "the confidence level of the intervals drawn, a setting",
    },
    "06_adaptive_attacks": {
        "100%": "a sanity check's target (an attack that succeeds on every image at a "
                "large eps), not a measurement",
        "95%": "the confidence level of the intervals quoted, a setting",
    },
}

# What counts as a measured number in prose: a percentage, a number of (percentage) points, a
# ratio like "5.1x", or a decimal fraction like "0.314".
MEASURED = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?\s?%"
    r"|(?<![\w.])\d+(?:\.\d+)?(?:\s|-)(?:percentage\s)?points?\b"
    r"|(?<![\w.])\d+(?:\.\d+)?x\b"
    r"|(?<![\w.])0\.\d+\b")
# Removed before looking: glue roles, inline code and maths, code fences.
NOT_PROSE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`|`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$|```.*?```",
                       re.DOTALL)


def _cells(notebook) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", [])))
            for c in notebook.cells]


def test_every_chapter_has_its_text_source_and_nothing_else():
    assert [p.stem for p in SOURCES] == [p.stem for p in NOTEBOOKS]
    assert not (ROOT / "tools" / "nbtools.py").exists(), "the generator is gone: edit the .md"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_is_in_sync(source: Path):
    """Cell by cell, the same types, sources and tags (run ``jupytext --sync`` after editing)."""
    text = jupytext.read(source)
    notebook = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert text.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,md:myst"
    pairs = list(zip(_cells(text), _cells(notebook), strict=False))
    for i, (a, b) in enumerate(pairs):
        assert a == b, (f"{source.name} and its .ipynb differ at cell {i}: run "
                        f"`jupytext --sync {source.relative_to(ROOT)}`\n{a}\n{b}")
    assert len(text.cells) == len(notebook.cells), f"{source.name}: a cell is missing"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_setup_cell_uses_the_configured_repository(source: Path):
    code = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
    first = code[0].source
    assert "google.colab" in first, "the first code cell must be the Colab set-up cell"
    assert re.search(r'REPO_URL = "([^"]+)"', first).group(1) == CONFIG["repository"]["url"]
    assert re.search(r'BRANCH = "([^"]+)"', first).group(1) == CONFIG["repository"]["branch"]
    assert "remove-cell" in code[0].metadata.get("tags", [])
    assert "enable_custom_widget_manager" in first
    stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    stored_code = [c for c in stored.cells if c.cell_type == "code"]
    assert not stored_code[0].outputs, "the set-up cell must do nothing (print nothing) locally"


def typed_measurements(markdown: str) -> list[str]:
    """The measured-looking numbers typed in ``markdown`` (glue roles, code, maths left out)."""
    # a directive's fence lines (```{exercise} ...) are not code spans: drop them first
    markdown = re.sub(r"^`{3,}.*$", "", markdown, flags=re.MULTILINE)
    return [m.group(0).strip() for m in MEASURED.finditer(NOT_PROSE.sub(" ", markdown))]


def test_typed_measurement_rule():
    assert typed_measurements("JPEG 75 keeps 52.8% and gains 3 points, 5.1x slower, L2 0.31") \
        == ["52.8%", "3 points", "5.1x", "0.31"]
    assert typed_measurements("keeps {glue:text}`a:.1%` at quality 75, eps 8/255, `0.5%`, "
                              "8x8 blocks, $0.1\\%$, 10k images, 2-core") == []
    # inside a directive: its fence is not a code span, its prose is still prose
    assert typed_measurements("```{exercise} Title\n:label: x\n\nuse `eps = 0.5` to "
                              "reach 52.8%\n```") == ["52.8%"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_prose_glues_measured_numbers(source: Path):
    allowed = TYPED_NUMBERS[source.stem]
    typed = [number for cell in jupytext.read(source).cells if cell.cell_type == "markdown"
             for number in typed_measurements(cell.source) if number not in allowed]
    assert not typed, (f"{source.name} types measured numbers {typed}: glue them from the "
                       "cell that computes them (helpers.results.glue or record), or, if one is a "
                       "setting or a published figure, add it to TYPED_NUMBERS with the reason")


def test_code_and_notebooks_pass_ruff():
    """Style, and the chapters' code lines short enough for the page (book/ruff.toml)."""
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Exercises: sphinx-exercise directives at the end of every chapter
# ---------------------------------------------------------------------------------------------

DIRECTIVE = re.compile(r"^(`{3,})\{(exercise|solution|solution-start|solution-end)\}([^\n]*)\n"
                       r"(.*?)^\1\s*$", re.DOTALL | re.MULTILINE)


def exercises_of(source: Path) -> dict[str, dict]:
    """Each exercise's label -> its text, its solution's kind, and the code cells of a gated
    solution (``solution-start`` ... ``solution-end``, which the notebook runs)."""
    found: dict[str, dict] = {}
    open_label = None
    for cell in jupytext.read(source).cells:
        if cell.cell_type == "code":
            if open_label is not None:
                found[open_label]["code"].append(
                    (cell.source, sorted(cell.metadata.get("tags", []))))
            continue
        for _fence, kind, argument, body in DIRECTIVE.findall(cell.source):
            options = dict(re.findall(r"^:(\w+):\s*(.*)$", body, flags=re.MULTILINE))
            if kind == "exercise":
                label = options.get("label")
                assert label, f"{source.name}: an exercise without a :label: ({argument})"
                assert label not in found, f"{source.name}: exercise label {label} twice"
                found[label] = {"text": body, "solution": None, "code": [], "class": None}
            elif kind in ("solution", "solution-start"):
                label = argument.strip()
                assert label in found, f"{source.name}: a solution to unknown {label!r}"
                found[label].update(solution=kind, **{"class": options.get("class")})
                open_label = label if kind == "solution-start" else None
            else:
                assert open_label is not None, f"{source.name}: solution-end with none open"
                open_label = None
    assert open_label is None, f"{source.name}: solution to {open_label} never ends"
    return found


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_chapter_ends_with_exercises_and_folded_solutions(source: Path):
    """3-5 exercises, each with its time on a CPU and on a GPU and a solution folded by
    default; at least two solve in code the notebook runs, each with a hidden check that
    fails if the solution stops working."""
    text = source.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[-1] == "Exercises", f"{source.name}: end with a '## Exercises' section"
    found = exercises_of(source)
    assert 3 <= len(found) <= 5, f"{source.name}: {len(found)} exercises"
    chapter = source.stem[:2]
    for label, exercise in found.items():
        assert label.startswith(f"ch{chapter}-"), f"{label}: prefix labels with ch{chapter}-"
        assert exercise["solution"], f"{source.name}: {label} has no solution"
        assert exercise["class"] == "dropdown", f"{label}: fold its solution (:class: dropdown)"
        assert re.search(r"on a CPU", exercise["text"]) and re.search(
            r"on a GPU", exercise["text"]), f"{label}: say how long it takes on a CPU and a GPU"
    coded = {label: e["code"] for label, e in found.items() if e["code"]}
    assert len(coded) >= 2, f"{source.name}: only {sorted(coded)} solve in code"
    for label, cells in coded.items():
        shown = [code for code, tags in cells if "remove-cell" not in tags]
        checks = [code for code, tags in cells if "remove-cell" in tags]
        assert shown, f"{label}: the solution's code is shown to the reader"
        assert any("assert" in code for code in checks), (
            f"{label}: add a hidden (remove-cell) check of the solution's result")
