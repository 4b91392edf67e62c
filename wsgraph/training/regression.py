"""How well a regression model ranks and explains its targets: Kendall's tau, Spearman's rho, R^2.

Mean squared error, the training metric, does not say whether a model orders networks
correctly (the question of generalization prediction, where papers report Kendall's
tau). These need all predictions of a split at once, so they are computed after
testing, from the gathered predictions, and written with them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import r2_score
from torch import Tensor, nn

from wsgraph.io import atomic_write, save_figure

PREDICTIONS_CSV, PREDICTED_VS_TRUE_PNG = "test_predictions.csv", "predicted_vs_true.png"


def ranking_metrics(predicted: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """``kendall_tau`` (tau-b), ``spearman_rho`` and ``r2`` of one target column (NaN when undefined)."""
    predicted, true = np.asarray(predicted, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if predicted.size < 2:
        return {"kendall_tau": math.nan, "spearman_rho": math.nan, "r2": math.nan}
    constant = np.ptp(predicted) == 0 or np.ptp(true) == 0
    return {
        "kendall_tau": math.nan if constant else float(stats.kendalltau(predicted, true).statistic),
        "spearman_rho": math.nan if constant else float(stats.spearmanr(predicted, true).statistic),
        "r2": float(r2_score(true, predicted)) if np.ptp(true) > 0 else math.nan,
    }


def column_metrics(predicted: np.ndarray, true: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """:func:`ranking_metrics` per target column, and their mean over columns at the top level."""
    predicted, true = predicted.reshape(len(predicted), -1), true.reshape(len(true), -1)
    per_column = {name: ranking_metrics(predicted[:, c], true[:, c]) for c, name in enumerate(names)}
    result: dict[str, Any] = {
        key: float(np.mean([m[key] for m in per_column.values()])) for key in ("kendall_tau", "spearman_rho", "r2")
    }
    result["columns"] = per_column
    return result


@torch.no_grad()
def gather_predictions(
    model: nn.Module, loader: Any, prepare: Callable, targets: Callable[[Any], Tensor], precision: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``([n, k] predictions, [n, k] targets)`` of ``model`` over one process's part of a split."""
    model.eval()
    outputs, wanted = [], []
    for batch in loader:
        batch = prepare(batch, False)
        with precision.autocast():
            output = model(batch)
        outputs.append(output.float().cpu())
        wanted.append(targets(batch).float().cpu())
    if not outputs:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return torch.cat(outputs).numpy(), torch.cat(wanted).numpy()


def write_predictions(path: str | os.PathLike, predicted: np.ndarray, true: np.ndarray, names: Sequence[str]) -> None:
    """One row per test network: the true and predicted value of every target."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"{kind}_{name}" for name in names for kind in ("true", "predicted")])
    for row_true, row_predicted in zip(true.reshape(len(true), -1), predicted.reshape(len(predicted), -1)):
        writer.writerow([f"{value:.6g}" for pair in zip(row_true, row_predicted) for value in pair])
    atomic_write(path, lambda handle: handle.write(buffer.getvalue().encode()))


def plot_predicted_vs_true(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    target: str,
    title: str | None = None,
) -> None:
    """A scatter of predicted against true values per model (``panels``: name, predicted, true),
    with the diagonal and each panel's Kendall tau and R^2."""
    figure = Figure(figsize=(4.2 * len(panels), 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, predicted, true) in zip(axes, panels):
        predicted, true = np.ravel(predicted), np.ravel(true)
        scores = ranking_metrics(predicted, true)
        ax.scatter(true, predicted, s=6, alpha=0.5, linewidths=0)
        low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="tab:gray", linewidth=1)
        ax.set(xlabel=f"true {target}", ylabel=f"predicted {target}")
        ax.set_title(f"{name}\nKendall tau {scores['kendall_tau']:.3f}, R$^2$ {scores['r2']:.3f}", fontsize=10)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
