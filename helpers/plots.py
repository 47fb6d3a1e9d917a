"""Figures in one consistent style: labelled image grids, accuracy lines and bars, sliders."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

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


def line_chart(x: Sequence, series: dict[str, Sequence[float]], xlabel: str,
               ylabel: str = "accuracy (%)", title: str | None = None, ax: plt.Axes | None = None,
               percent: bool = True) -> plt.Axes:
    """One line per entry of ``series`` (values in [0, 1] are shown as percent)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, values in series.items():
        values = [100 * v for v in values] if percent else list(values)
        ax.plot(list(x), values, marker="o", label=label)
    ax.set_xlabel(xlabel)
    return _label_axes(ax, ylabel, title, percent)


def bar_chart(groups: Sequence[str], series: dict[str, Sequence[float]],
              ylabel: str = "accuracy (%)", title: str | None = None,
              ax: plt.Axes | None = None, percent: bool = True) -> plt.Axes:
    """Grouped bars: one group per entry of ``groups``, one bar per entry of ``series``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.5, 0.9 * len(groups)), 3.5))
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series.items()):
        values = [100 * v for v in values] if percent else list(values)
        positions = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(positions, values, width=width, label=label)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    return _label_axes(ax, ylabel, title, percent)


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
