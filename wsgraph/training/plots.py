"""Figures of training runs and benchmarks, drawn on matplotlib's Agg canvas (no display,
no pyplot state)."""

from __future__ import annotations

import os
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from wsgraph.io import save_figure

LEARNING_CURVES_PNG = "learning_curves.png"
# An editing model's work: networks' images as given, edited and as the target shows them.
EDITS_PNG = "edits.png"


def plot_learning_curves(path: str | os.PathLike, rows: list[dict[str, Any]], metric: str, title: str) -> None:
    """Train and validation loss, validation metric and learning rate per epoch, as a PNG."""
    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(13, 3.6))
    losses, metrics, rates = figure.subplots(1, 3)
    losses.plot(epochs, [row["train_loss"] for row in rows], marker="o", label="train")
    losses.plot(epochs, [row["val_loss"] for row in rows], marker="o", label="val")
    losses.set(xlabel="epoch", ylabel="loss", title="loss")
    losses.legend()
    metrics.plot(epochs, [row[f"val_{metric}"] for row in rows], marker="o", color="tab:green")
    metrics.set(xlabel="epoch", ylabel=metric, title=f"validation {metric}")
    rates.plot(epochs, [row["lr"] for row in rows], marker="o", color="tab:gray")
    rates.set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate")
    for axes in (losses, metrics, rates):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(title)
    _save(figure, path)


def plot_benchmark(
    path: str | os.PathLike, names: list[str], means: list[float], stds: list[float], label: str, title: str
) -> None:
    """A bar per model: the mean test metric over seeds, with the standard deviation as error bar."""
    figure = Figure(figsize=(max(4.0, 1.1 * len(names) + 2), 3.8))
    axes = figure.subplots()
    positions = range(len(names))
    bars = axes.bar(positions, means, yerr=stds, capsize=4, color="tab:blue", alpha=0.85)
    axes.bar_label(bars, labels=[f"{mean:.4g}" for mean in means], padding=2, fontsize=8)
    axes.set_xticks(list(positions), names, rotation=20)
    axes.set(ylabel=label, title=title)
    _save(figure, path)


def plot_edits(path: str | os.PathLike, shown: list[tuple[Tensor, Tensor, Tensor | None]]) -> None:
    """A column per network: its image as given, as edited and the dilated target (a row each;
    the last row only where some network has a target). Images are ``[H, W, C]`` intensities,
    drawn on one [0, 1] scale, as the INRs were fitted."""
    rows = ["given", "edited"] + (["dilated"] if any(target is not None for _, _, target in shown) else [])
    figure = Figure(figsize=(1.2 * len(shown), 1.3 * len(rows)))
    axes = figure.subplots(len(rows), len(shown), squeeze=False)
    for column, images in enumerate(shown):
        for row in range(len(rows)):
            axis = axes[row][column]
            axis.set_xticks([])
            axis.set_yticks([])
            picture = images[row]
            if picture is None:
                axis.set_axis_off()
                continue
            picture = picture.detach().float().cpu().clamp(0, 1)
            pixels = picture.squeeze(-1).numpy() if picture.size(-1) == 1 else picture.numpy()
            axis.imshow(pixels, cmap="gray", vmin=0, vmax=1)
    for row, label in enumerate(rows):
        axes[row][0].set_ylabel(label, fontsize=8)
    _save(figure, path)


def _save(figure: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
