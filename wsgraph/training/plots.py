"""Figures of training runs and benchmarks, drawn on matplotlib's Agg canvas (no display,
no pyplot state)."""

from __future__ import annotations

import os
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from wsgraph.io import save_figure

LEARNING_CURVES_PNG = "learning_curves.png"


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


def _save(figure: Figure, path: str | os.PathLike) -> None:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
