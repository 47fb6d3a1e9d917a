"""helpers.results (recorded headline numbers) and helpers.plots (figures and slider galleries)."""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from helpers import plots, results
from helpers.profiles import get_profile

pytestmark = pytest.mark.usefixtures("single_thread")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def quick_cpu(monkeypatch):
    monkeypatch.setenv("LESSON_PROFILE", "quick")
    monkeypatch.setenv("LESSON_DEVICE", "cpu")


def test_record_writes_json_under_results_dir(results_dir, quick_cpu):
    results.record("01_test", "clean_accuracy", 0.8125, "quick")
    path = results_dir / "quick" / "01_test.json"
    assert path.is_file() and results.results_path("01_test", "quick") == path
    entry = json.loads(path.read_text())["clean_accuracy"]
    assert entry == {"value": 0.8125, "profile": "quick", "device": "cpu"}
    assert [p.name for p in path.parent.iterdir()] == ["01_test.json"]  # no temp file left


def test_second_record_keeps_the_first(results_dir, quick_cpu):
    results.record("01_test", "b_second", 2, "quick", note="an int is a number too")
    results.record("01_test", "a_first", 0.5, "quick")
    stored = results.load_results("01_test", "quick")
    assert set(stored) == {"a_first", "b_second"}
    assert stored["b_second"]["value"] == 2.0
    assert stored["b_second"]["note"] == "an int is a number too"
    assert "note" not in stored["a_first"]
    # the file lists names in order, so committed diffs stay small
    text = (results_dir / "quick" / "01_test.json").read_text()
    assert text.index("a_first") < text.index("b_second") and text.endswith("\n")
    # recording a name again replaces its value only
    results.record("01_test", "a_first", 0.75, "quick")
    stored = results.load_results("01_test", "quick")
    assert stored["a_first"]["value"] == 0.75 and stored["b_second"]["value"] == 2.0


def test_values_are_rounded_to_six_digits(results_dir, quick_cpu):
    results.record("01_test", "x", 1 / 3, "quick")
    assert results.load_results("01_test", "quick")["x"]["value"] == 0.333333


def test_profiles_and_chapters_are_kept_apart(results_dir, quick_cpu, monkeypatch):
    """The profile is the one passed (the chapter's), whatever the environment says."""
    results.record("01_test", "x", 0.1, "quick")
    results.record("02_test", "x", 0.2, "quick")
    monkeypatch.setenv("LESSON_PROFILE", "quick")
    results.record("01_test", "x", 0.3, get_profile("full"))
    assert (results_dir / "full" / "01_test.json").is_file()
    assert results.load_results("01_test", "full")["x"]["value"] == 0.3
    assert results.load_results("01_test", "quick")["x"]["value"] == 0.1
    assert results.load_results("02_test", "quick")["x"]["value"] == 0.2
    assert results.load_results("03_none", "quick") == {}


@pytest.mark.parametrize("value", ["0.5", None, [0.5], torch.tensor([0.5, 0.6])])
def test_non_numbers_raise_type_error(results_dir, quick_cpu, value):
    with pytest.raises(TypeError, match="must be a number"):
        results.record("01_test", "x", value, "quick")
    assert not (results_dir / "quick" / "01_test.json").exists()


@pytest.mark.parametrize("value", [np.float32(0.5), np.int64(3)])
def test_numpy_numbers_are_recorded(results_dir, quick_cpu, value):
    results.record("01_test", "x", value, "quick")
    assert results.load_results("01_test", "quick")["x"]["value"] == pytest.approx(float(value))


def test_the_writer_is_deterministic(results_dir, quick_cpu):
    """The same numbers give the same bytes, whatever the order or the day they were recorded,
    and an unchanged file is not rewritten (a re-run leaves ``git status`` clean)."""
    results.record("01_test", "b", 0.25, "quick")
    results.record("01_test", "a", 1 / 3, "quick", note="n")
    path = results_dir / "quick" / "01_test.json"
    first, stamp = path.read_bytes(), path.stat().st_mtime_ns
    results.record("01_test", "a", 1 / 3, "quick", note="n")
    results.record("01_test", "b", 0.25, "quick")
    assert path.read_bytes() == first and path.stat().st_mtime_ns == stamp
    path.unlink()
    results.record("01_test", "a", 1 / 3, "quick", note="n")
    results.record("01_test", "b", 0.25, "quick")
    assert path.read_bytes() == first
    assert json.loads(first) == {
        "a": {"value": 0.333333, "profile": "quick", "device": "cpu", "note": "n"},
        "b": {"value": 0.25, "profile": "quick", "device": "cpu"}}


def test_glue_stores_a_plain_number_for_the_page(monkeypatch):
    glued = []
    monkeypatch.setattr("myst_nb.glue", lambda name, value, display: glued.append(
        (name, value, type(value), display)))
    results.glue("acc", np.float32(0.5))
    results.glue("label", "JPEG 75")
    assert glued == [("acc", 0.5, float, False), ("label", "JPEG 75", str, False)]
    with pytest.raises(TypeError, match="must be a number"):
        results.glue("bad", float("nan"))


def test_glue_does_nothing_without_myst_nb(monkeypatch):
    """In Colab MyST-NB is missing: a chapter must still run."""
    real_import = builtins.__import__

    def no_myst_nb(name, *args, **kwargs):
        if name.startswith("myst_nb"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst_nb)
    results.glue("acc", 0.5)  # no error


def test_record_glues_the_recorded_value(results_dir, quick_cpu, monkeypatch):
    glued = []
    monkeypatch.setattr(results, "glue", lambda name, value: glued.append((name, value)))
    results.record("01_test", "x", 1 / 3, "quick")
    assert glued == [("x", 0.333333)]


def test_binomial_standard_error_and_clear_gaps():
    assert results.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert results.binomial_se(0.0, 10) == 0.0
    # 60% vs 40% on 100 images: the gap (20 points) is 2.9 standard errors of the difference
    assert results.clearly_above(0.6, 0.4, 100)
    assert not results.clearly_above(0.4, 0.6, 100)
    # 2 points on 500 images is within the noise; 2 points on 50,000 is not
    assert not results.clearly_above(0.52, 0.50, 500)
    assert results.clearly_above(0.52, 0.50, 50_000)
    # the boundary: 2 standard errors of the difference, sqrt(2 * 0.25 / 100) = 0.0707 each
    assert results.clearly_above(0.5, 0.5 - 0.5 * 0.1415, 100) is False
    se = math.hypot(results.binomial_se(0.5, 100), results.binomial_se(0.35, 100))
    assert math.isclose(se, math.sqrt(0.0025 + 0.35 * 0.65 / 100))
    assert results.clearly_above(0.5, 0.35, 100) == (0.15 > 2 * se)
    for bad in [(1.2, 10), (0.5, 0), (-0.1, 10)]:
        with pytest.raises(ValueError):
            results.binomial_se(*bad)


def test_interval95_is_1_96_standard_errors_and_glued_in_points(monkeypatch):
    assert results.interval95(0.5, 100) == pytest.approx(0.098)
    assert results.interval95(0.9, 400) == pytest.approx(1.96 * 0.015)
    assert results.interval95(1.0, 50) == 0.0
    glued = {}
    monkeypatch.setattr(results, "glue", lambda name, value: glued.update({name: value}))
    results.glue_with_interval("acc", 0.5, 100)
    assert glued == {"acc": 0.5, "acc_pm": pytest.approx(9.8)}
    with pytest.raises(ValueError):
        results.interval95(0.5, 0)


def test_results_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv(results.RESULTS_ENV, str(tmp_path))
    assert results.results_dir() == tmp_path
    monkeypatch.delenv(results.RESULTS_ENV)
    assert results.results_dir().parts[-2:] == ("lessondata", "results")


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _batch(n: int, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, 8, 8, generator=torch.Generator().manual_seed(n))


def test_image_grid_has_one_axis_per_cell():
    fig = plots.image_grid([_batch(4), _batch(4)], row_labels=["clean", "jpeg"],
                           titles=[list("abcd"), list("efgh")], col_labels=list("0123"))
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == 8
    top_left = fig.axes[0]
    assert top_left.get_ylabel() == "clean" and top_left.get_title() == "0\na"
    assert fig.axes[5].get_title() == "f"  # second row: titles only, no column label
    assert all(len(ax.get_images()) == 1 for ax in fig.axes)


def test_image_grid_ragged_rows_and_gray_images():
    fig = plots.image_grid([_batch(3, channels=1), _batch(1, channels=1)])
    assert len(fig.axes) == 6
    drawn = [len(ax.get_images()) for ax in fig.axes]
    assert drawn == [1, 1, 1, 1, 0, 0]
    assert not fig.axes[4].axison  # the empty cells are switched off
    image = fig.axes[0].get_images()[0].get_array()
    assert image.shape == (8, 8)  # one channel drawn as a gray 2-D image


def test_image_grid_clamps_values():
    fig = plots.image_grid([torch.full((1, 3, 4, 4), 2.0)], suptitle="clamped")
    assert float(np.asarray(fig.axes[0].get_images()[0].get_array()).max()) == 1.0
    assert fig._suptitle.get_text() == "clamped"


def test_line_and_bar_charts():
    ax = plots.line_chart([1, 2, 3], {"a": [0.1, 0.5, 0.9], "b": [0.2, 0.2, 0.2]}, "severity")
    assert len(ax.get_lines()) == 2
    assert list(ax.get_lines()[0].get_ydata()) == pytest.approx([10, 50, 90])
    assert ax.get_ylim() == (0, 100) and ax.get_xlabel() == "severity"
    bars = plots.bar_chart(["x", "y", "z"], {"a": [0.1, 0.2, 0.3], "b": [0.4, 0.5, 0.6]})
    heights = [p.get_height() for p in bars.patches]
    assert heights == pytest.approx([10, 20, 30, 40, 50, 60])
    raw = plots.bar_chart(["x"], {"a": [3.5]}, percent=False)
    assert raw.patches[0].get_height() == 3.5


def test_charts_draw_95_percent_intervals_when_given_the_image_count():
    ax = plots.line_chart([1, 2], {"a": [0.5, 0.9]}, "x", n=100)
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(90 + 100 * 1.96 * 0.03)   # around the 90% point
    assert band.min() == pytest.approx(50 - 9.8)                  # around the 50% point
    assert not plots.line_chart([1, 2], {"a": [0.5, 0.9]}, "x").collections  # no n, no band
    bars = plots.bar_chart(["x"], {"a": [0.5]}, n=100)
    (segments,) = [c.get_segments() for c in bars.collections]   # the error bar
    low, high = segments[0][:, 1]
    assert (low, high) == (pytest.approx(50 - 9.8), pytest.approx(50 + 9.8))


def test_convergence_chart_draws_the_runs_one_after_another():
    robust = torch.ones(4, 2, 3, dtype=torch.bool)  # 4 images, 2 runs of 2 steps
    robust[0, 0, 1:] = robust[0, 1] = False  # image 0 falls at step 1 of the first run
    robust[1, 1, 2] = False   # image 1 at the end of the second
    ax = plots.convergence_chart({"a": robust}, run_names=["CE", "DLR"])
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "a"]
    assert list(line.get_ydata()) == pytest.approx([100, 75, 75, 75, 75, 50])
    dividers = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert len(dividers) == 1 and list(dividers[0].get_xdata()) == [3, 3]
    assert [t.get_text() for t in ax.texts] == ["CE", "DLR"]


def test_score_histograms_draw_each_set_and_the_threshold():
    scores = {"clean": torch.full((50,), 0.01), "attack": torch.full((50,), 0.2)}
    ax = plots.score_histograms(scores, threshold=0.05, title="AE I, L2")
    assert len(ax.patches) == 2 and ax.get_xscale() == "log"
    threshold_line = [line for line in ax.get_lines() if line.get_label() == "threshold"]
    assert list(threshold_line[0].get_xdata()) == [0.05, 0.05]
    # all of each set's mass lies on its own side of the threshold
    clean_x = ax.patches[0].get_path().vertices[:, 0]
    attack_x = ax.patches[1].get_path().vertices[:, 0]
    assert clean_x[ax.patches[0].get_path().vertices[:, 1] > 0].max() < 0.05
    assert attack_x[ax.patches[1].get_path().vertices[:, 1] > 0].min() > 0.05


def test_figure_png_renders_and_closes():
    fig = plots.image_grid([_batch(2)])
    png = plots.figure_png(fig)
    assert png.startswith(PNG_MAGIC) and len(png) > 100
    assert not plt.fignum_exists(fig.number)


@pytest.mark.parametrize("labels", [None, ["q=90", "q=50", "q=10"]])
def test_slider_gallery(labels):
    figures = [plots.image_grid([_batch(2) * k / 3]) for k in range(1, 4)]
    box = plots.slider_gallery(figures, "quality", labels=labels)
    assert isinstance(box, widgets.VBox)
    sliders = [c for c in box.children if isinstance(c, widgets.IntSlider)]
    stacks = [c for c in box.children if isinstance(c, widgets.Stack)]
    assert len(sliders) == 1 and len(stacks) == 1
    slider, stack = sliders[0], stacks[0]
    assert (slider.min, slider.max, slider.value) == (0, len(figures) - 1, 0)
    assert slider.description == "quality"
    assert len(stack.children) == len(figures) and stack.selected_index == 0
    pictures = [bytes(child.value) for child in stack.children]
    assert all(isinstance(child, widgets.Image) for child in stack.children)
    assert all(p.startswith(PNG_MAGIC) and len(p) > 100 for p in pictures)
    assert len(set(pictures)) == len(figures)  # a different picture per position
    assert not any(plt.fignum_exists(f.number) for f in figures)  # rendered and closed
    captions = [c for c in box.children if isinstance(c, widgets.ToggleButtons)]
    if labels is None:
        assert captions == [] and slider.readout
    else:
        assert len(captions) == 1 and list(captions[0].options) == labels
        assert not slider.readout


def test_slider_gallery_with_one_figure():
    box = plots.slider_gallery([plots.image_grid([_batch(1)])], "only")
    slider = next(c for c in box.children if isinstance(c, widgets.IntSlider))
    assert slider.max == 0


def test_tracked_result_files_hold_nothing_volatile():
    """What is committed under lessondata/results is what record writes: no dates, no extra
    fields, keys in order, so re-running a chapter leaves ``git status`` clean."""
    files = sorted((REPO / "lessondata" / "results").glob("*/*.json"))
    assert files
    for path in files:
        text = path.read_text()
        entries = json.loads(text)
        assert text == json.dumps(dict(sorted(entries.items())), indent=1) + "\n", path.name
        for name, entry in entries.items():
            assert set(entry) <= {"value", "profile", "device", "note"}, (path.name, name)
            assert entry["profile"] == path.parent.name, (path.name, name)
