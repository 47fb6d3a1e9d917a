"""Figures in one consistent style: labelled image grids, accuracy lines and bars (with 95%
intervals), attack convergence curves, detector-score histograms, sliders."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from .results import interval95

STYLE = {
    "figure.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
}
plt.rcParams.update(STYLE)


def _as_hwc(image: torch.Tensor):
    """A C x H x W tensor in [0, 1] as something imshow draws (gray for one channel)."""
    image = image.detach().float().cpu().clamp(0, 1)
    return image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()


def image_grid(rows: Sequence[torch.Tensor], row_labels: Sequence[str] | None = None,
               titles: Sequence[Sequence[str]] | None = None,
               col_labels: Sequence[str] | None = None, scale: float = 1.3,
               suptitle: str | None = None) -> plt.Figure:
    """Draw ``rows`` (each an N x C x H x W batch in [0, 1]) as a labelled grid of images.

    ``titles[r][c]`` goes above each image (e.g. the model's label and confidence).
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(scale * n_cols, scale * n_rows + 0.3),
                             squeeze=False)
    for r, batch in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c >= len(batch):
                ax.axis("off")
                continue
            ax.imshow(_as_hwc(batch[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            title = [col_labels[c]] if r == 0 and col_labels is not None else []
            title += [titles[r][c]] if titles is not None else []
            ax.set_title("\n".join(title), fontsize=7)
        if row_labels is not None:
            axes[r][0].set_ylabel(row_labels[r], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def _label_axes(ax: plt.Axes, ylabel: str, title: str | None, percent: bool) -> plt.Axes:
    """The finishing touches every chart shares: y label, 0-100 range for percent, legend."""
    ax.set_ylabel(ylabel)
    if percent:
        ax.set_ylim(0, 100)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def _band(values: Sequence[float], n: int | None) -> list[float]:
    """95% binomial half-widths, in percent, of accuracies measured on ``n`` images."""
    return [100 * interval95(min(max(v, 0.0), 1.0), n) if n else 0.0 for v in values]


def line_chart(x: Sequence, series: dict[str, Sequence[float]], xlabel: str,
               ylabel: str = "accuracy (%)", title: str | None = None, ax: plt.Axes | None = None,
               percent: bool = True, n: int | None = None) -> plt.Axes:
    """One line per entry of ``series`` (values in [0, 1] are shown as percent).

    With ``n`` (the images each value was measured on), a shaded band shows each point's 95%
    binomial interval, so a reader sees which gaps are larger than the sampling noise.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, values in series.items():
        shown = [100 * v for v in values] if percent else list(values)
        (line,) = ax.plot(list(x), shown, marker="o", label=label)
        if n and percent:
            half = _band(values, n)
            ax.fill_between(list(x), [v - h for v, h in zip(shown, half, strict=True)],
                            [v + h for v, h in zip(shown, half, strict=True)],
                            color=line.get_color(),
                            alpha=0.15, linewidth=0)
    ax.set_xlabel(xlabel)
    return _label_axes(ax, ylabel, title, percent)


def convergence_chart(robust: dict[str, torch.Tensor], title: str | None = None,
                      ax: plt.Axes | None = None, run_names: Sequence[str] | None = None
                      ) -> plt.Axes:
    """Robust accuracy against the attack's iterations, one line per entry of ``robust``.

    Each value is an ``images x runs x (steps + 1)`` bool tensor, as
    :func:`helpers.attacks.apgd_trace` returns (True: not yet fooled); the runs are drawn one
    after another, with a dotted line where each new run (a restart, or the next loss)
    begins, named by ``run_names``. A converged attack is flat at the end of its first run
    and gains nothing from the runs after it.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    runs, length = next(iter(robust.values())).shape[1:]
    for label, flags in robust.items():
        ax.plot(100 * flags.float().mean(0).flatten().cpu(), label=label)
    for run in range(1, runs):
        ax.axvline(run * length, color="grey", linestyle=":", linewidth=1)
    for run, name in enumerate(run_names or []):
        ax.text((run + 0.5) * length, 97, name, ha="center", va="top", fontsize=7)
    ax.set_xlabel("iterations, run after run")
    return _label_axes(ax, "robust accuracy (%)", title, percent=True)


def bar_chart(groups: Sequence[str], series: dict[str, Sequence[float]],
              ylabel: str = "accuracy (%)", title: str | None = None,
              ax: plt.Axes | None = None, percent: bool = True,
              n: int | None = None) -> plt.Axes:
    """Grouped bars: one group per entry of ``groups``, one bar per entry of ``series``.

    With ``n`` (the images each value was measured on), error bars show 95% binomial intervals.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(groups)), 3.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        errors = _band(values, n) if n and percent else None
        values = [100 * v for v in values] if percent else list(values)
        positions = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(positions, values, width=width, label=label, yerr=errors, capsize=2)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    return _label_axes(ax, ylabel, title, percent)


def score_histograms(scores: dict[str, torch.Tensor], threshold: float,
                     ax: plt.Axes | None = None, title: str | None = None,
                     xlabel: str = "detector score") -> plt.Axes:
    """Histograms of a detector's scores, one per image set, on a log axis, with its threshold.

    What lies right of the dashed line is rejected: clean images there are false positives,
    adversarial ones are caught.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    positive = torch.cat([s.flatten().float().cpu() for s in scores.values()])
    positive = positive[positive > 0]
    low = max(positive.min().item(), threshold * 1e-3) if len(positive) else threshold / 10
    high = max(positive.max().item() if len(positive) else threshold, threshold) * 1.5
    bins = torch.logspace(math.log10(low), math.log10(high), 40).numpy()
    for label, values in scores.items():
        ax.hist(values.flatten().float().cpu().clamp_min(low).numpy(), bins=bins,
                histtype="step", density=True, linewidth=1.5, label=label)
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax


def figure_png(fig: plt.Figure) -> bytes:
    """Render ``fig`` to PNG bytes and close it (for widgets and embedding)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def slider_gallery(figures: Sequence[plt.Figure], description: str,
                   labels: Sequence[str] | None = None):
    """A slider that flips between pre-rendered figures.

    The slider is linked to the picture in the browser (``jslink``), so it also works on the
    static website, where no Python kernel is running: every state is already rendered.
    """
    import ipywidgets as widgets

    pictures = [widgets.Image(value=figure_png(f), format="png") for f in figures]
    stack = widgets.Stack(pictures, selected_index=0)
    slider = widgets.IntSlider(value=0, min=0, max=len(pictures) - 1, description=description,
                               readout=labels is None, continuous_update=True,
                               style={"description_width": "initial"})
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    children = [slider]
    if labels is not None:
        caption = widgets.ToggleButtons(options=list(labels), disabled=True,
                                        style={"button_width": "auto"})
        widgets.jslink((slider, "value"), (caption, "index"))
        children.append(caption)
    return widgets.VBox([*children, stack])
