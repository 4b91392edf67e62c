r"""Sine-wave INRs: 1-32-32-1 SIRENs fitted to :math:`a \sin(b x)` on :math:`[-\pi, \pi)`, labelled ``(a, b)``.

The DWSNets self-supervised / frequency set (Navon et al., ICML 2023;
``experiments/ssl/inr_trainer.py`` and ``experiments/ssl/data/sine_data.py`` of their
code) draws :math:`a, b \sim U(0, 10)`, samples ``x = arange(-pi, pi, pi / 1000)``
(2,000 points), and fits ``INR(in_dim=1, n_layers=3, up_scale=32)`` (widths 1-32-32-1,
:math:`\omega_0 = 30`, output offset +0.5) with Adam (lr 1e-3, weight decay 1e-4) on
the full set of points for up to 1,500 steps, stopping once the MSE is at most 1e-4.
:data:`SINE_RECIPE` is that recipe, with the released class's initialisation
(``init="dwsnets"``: the first layer like the others, :math:`U(\pm\sqrt{6}/30)` for one
input), under which the highest frequencies may not reach the threshold in 1,500 steps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsgraph.core.convert_mlp import mlp_to_graph
from wsgraph.datasets.build import summarize_fit, write_shards
from wsgraph.datasets.store import SPLITS, Shard, read_meta, read_shard, shard_paths
from wsgraph.inrs.fitting import fit_sirens
from wsgraph.inrs.render import render_inr
from wsgraph.inrs.siren import SirenRecipe, counter_uniform
from wsgraph.io import save_figure
from wsgraph.runtime import resolve_device

SINE_RECIPE = SirenRecipe(
    widths=(1, 32, 32, 1),
    omega_0=30.0,
    output_offset=0.5,
    steps=1500,
    lr=1e-3,
    weight_decay=1e-4,
    early_stop_loss=1e-4,
)
DEFAULT_POINTS = 2000
COEFFICIENT_RANGE = (0.0, 10.0)
# The coefficients are drawn from streams of their own, apart from the initialisation's.
COEFFICIENT_KEY_OFFSET = 1 << 41
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2
PREVIEW_FILE = "reconstructions.png"


def sine_points(num_points: int = DEFAULT_POINTS) -> Tensor:
    """``[num_points, 1]`` evenly spaced points of :math:`[-\\pi, \\pi)` (DWSNets: 2,000)."""
    if num_points < 1:
        raise ValueError(f"need at least one sample point, got {num_points}")
    steps = torch.arange(num_points, dtype=torch.float64)
    return (-math.pi + steps * (2 * math.pi / num_points)).to(torch.float32).unsqueeze(1)


def sine_coefficients(count: int, seed: int) -> Tensor:
    """``[count, 2]`` coefficients ``(a, b)``, each :math:`U(0, 10)`, a pure function of ``(seed, item)``."""
    low, high = COEFFICIENT_RANGE
    keys = torch.arange(count) + COEFFICIENT_KEY_OFFSET
    return low + (high - low) * counter_uniform(seed, keys, 2)


def sine_values(coefficients: Tensor, points: Tensor) -> Tensor:
    """``[n, P, 1]`` values :math:`a \\sin(b x)`."""
    amplitude, frequency = coefficients[:, 0].view(-1, 1, 1), coefficients[:, 1].view(-1, 1, 1)
    return amplitude * torch.sin(frequency * points.unsqueeze(0))


def sine_splits(count: int, seed: int) -> Tensor:
    """``[count]`` split codes: a fixed-seed shuffle, 20% test, 10% val, the rest train."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    split = torch.zeros(count, dtype=torch.uint8)
    num_test, num_val = round(TEST_FRACTION * count), round(VAL_FRACTION * count)
    split[order[:num_test]] = SPLITS.index("test")
    split[order[num_test : num_test + num_val]] = SPLITS.index("val")
    return split


def fit_sine_inrs(
    root: str | os.PathLike,
    count: int,
    recipe: SirenRecipe = SINE_RECIPE,
    *,
    num_points: int = DEFAULT_POINTS,
    seed: int = 0,
    shard_size: int = 2048,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit ``count`` sine-wave SIRENs and write them to ``root`` (resumable), labelled ``y = (a, b)``.

    Each shard carries the final MSE of each network (``extras["mse"]``).

    Returns:
        The summary: MSE statistics per split and the files written.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    if recipe.widths[0] != 1 or recipe.widths[-1] != 1:
        raise ValueError(f"a sine SIREN maps 1 input to 1 output; got widths {recipe.spec}")
    device = resolve_device(device)
    points = sine_points(num_points)
    coefficients = sine_coefficients(count, seed)
    split = sine_splits(count, seed)
    meta = _meta(recipe, seed, shard_size, count, num_points, split)

    def make_shard(start: int, stop: int, advance: Callable[[int], None]) -> Shard:
        fit = fit_sirens(
            sine_values(coefficients[start:stop], points),
            points,
            recipe,
            torch.arange(start, stop),
            seed,
            batch_size=batch_size,
            device=device,
            on_batch=advance,
        )
        extras = {"mse": fit.mse.float(), "steps": fit.steps}
        return Shard(
            fit.weights, fit.biases, coefficients[start:stop], split[start:stop], torch.arange(start, stop), extras
        )

    write_shards(root, meta, split, shard_size, make_shard, progress)
    return summarize_fit(root, "mse", "mse", save_sine_reconstructions(root), str(device))


def save_sine_reconstructions(root: str | os.PathLike, count: int = 6) -> Path:
    """``reconstructions.png``: the first functions of the first shard and their INRs, rendered from the graphs."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    meta = read_meta(root)
    shard = read_shard(shard_paths(root)[0])
    count = min(count, len(shard))
    points = sine_points(meta["num_points"])
    graphs = mlp_to_graph(
        [(w[:count], b[:count]) for w, b in zip(shard.weights, shard.biases)], activation=meta["activation"]
    )
    with torch.no_grad():
        rendered = render_inr(graphs, points, meta["output_offset"])
    targets = sine_values(shard.y[:count], points)
    figure, axes = plt.subplots(1, count, figsize=(2.2 * count, 2.0), squeeze=False)
    for column in range(count):
        axis = axes[0][column]
        axis.plot(points[:, 0], targets[column, :, 0], color="black", linewidth=1.0, label="a sin(bx)")
        axis.plot(points[:, 0], rendered[column, :, 0], color="tab:orange", linewidth=0.8, linestyle="--", label="INR")
        a, b = shard.y[column].tolist()
        axis.set_title(f"a={a:.2f} b={b:.2f}", fontsize=7)
        axis.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    figure.tight_layout()
    path = Path(root) / PREVIEW_FILE
    save_figure(figure, path, dpi=100)
    plt.close(figure)
    return path


def _meta(
    recipe: SirenRecipe, seed: int, shard_size: int, count: int, num_points: int, split: Tensor
) -> dict[str, Any]:
    source = {
        "name": "sine",
        "function": "a * sin(b * x)",
        "points": f"{num_points} evenly spaced in [-pi, pi) (arange(-pi, pi, 2 pi / {num_points}))",
        "coefficients": "a, b ~ U(0, 10), counter-based per item",
        "split_rule": f"fixed-seed shuffle (seed {seed}): {TEST_FRACTION:.0%} test, {VAL_FRACTION:.0%} val",
    }
    counts = {name: int((split == code).sum()) for code, name in enumerate(SPLITS)}
    plan = {
        "recipe": recipe.to_dict(),
        "source": source,
        "seed": seed,
        "shard_size": shard_size,
        "num_networks": count,
        "num_points": num_points,
        "splits": counts,
    }
    return {
        "kind": "sine",
        "task": "regression",
        "target_names": ["amplitude a", "frequency b"],
        "activation": recipe.activation,
        "widths": list(recipe.widths),
        "output_offset": recipe.output_offset,
        "num_points": num_points,
        "recipe": recipe.to_dict(),
        "source": source,
        "extras": {
            "mse": "final MSE of the network (offset included) on the sample points",
            "steps": "Adam steps taken (fewer when the early-stop MSE was reached)",
        },
        "plan": plan,
    }
