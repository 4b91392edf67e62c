"""The statistics baseline of Unterthiner et al. (2020) for predicting a network's accuracy from its weights.

Each network becomes a fixed-length vector: for every layer, separately for its weights
and its biases, the mean, the variance and the 0, 25, 50, 75 and 100 percentiles (7
numbers per tensor; 56 for the 4-layer Small CNN Zoo network), and a gradient-boosted
regression tree ensemble (scikit-learn's ``GradientBoostingRegressor``) maps the vector
to the target. The features are invariant to every permutation of neurons and channels,
which is why this simple baseline is strong on zoos (Unterthiner et al., Table 2; the
"StatNN"/"stats" rows of later papers use the same features).

``wsgraph zoo-stats --zoo ZOO --targets test_accuracy --out RUN`` trains it on a zoo
folder's training members and reports, on its test members, Kendall's tau, Spearman's
rho, R^2 and the MSE (with the mean predictor's MSE), using the same member splits as the
dataset ``wsgraph convert ... --labels ZOO/labels.csv`` builds.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingRegressor

from wsgraph.checks import first_repeat
from wsgraph.datasets.store import SPLITS
from wsgraph.errors import load_error_reason, shown_path
from wsgraph.io import refuse_existing_results, refuse_output_inside, write_json
from wsgraph.training.regression import (
    PREDICTED_VS_TRUE_PNG,
    PREDICTIONS_CSV,
    column_metrics,
    plot_predicted_vs_true,
    write_predictions,
)
from wsgraph.zoo.build import CHECKPOINTS, TARGET_COLUMNS, read_records

QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
STATISTICS = ("mean", "var", *(f"q{int(q * 100)}" for q in QUANTILES))


def weight_statistics(state_dict: dict[str, torch.Tensor]) -> np.ndarray:
    """Mean, variance and quantiles of every tensor of ``state_dict`` (in its key order), concatenated."""
    features = []
    for tensor in state_dict.values():
        values = tensor.detach().double().flatten()
        features.append(values.mean())
        features.append(values.var(unbiased=False))
        features.append(torch.quantile(values, torch.tensor(QUANTILES, dtype=torch.float64)))
    return torch.cat([f.view(-1) for f in features]).numpy()


def feature_names(state_dict: dict[str, torch.Tensor]) -> list[str]:
    return [f"{key}:{statistic}" for key in state_dict for statistic in STATISTICS]


def zoo_features(zoo: str | os.PathLike) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``([n, features], records)`` for every saved checkpoint of a zoo folder."""
    zoo = Path(zoo)
    records = [record for record in read_records(zoo) if record["path"] is not None]
    if not records:
        raise ValueError(f"{zoo}: no saved zoo members (run 'wsgraph zoo' first)")
    rows, layouts = [], []
    for record in records:
        path = zoo / CHECKPOINTS / record["path"]
        state = read_member(path)
        layouts.append((path, tuple((key, tuple(tensor.shape)) for key, tensor in state.items())))
        rows.append(weight_statistics(state))
    # The odd member out is the one to name, wherever it lies: compare each with the most common layout.
    common, _ = Counter(layout for _, layout in layouts).most_common(1)[0]
    example = next(path for path, layout in layouts if layout == common)
    for path, layout in layouts:
        if layout != common:
            raise ValueError(
                f"{shown_path(path)}: its tensors (names and shapes) differ from those of {shown_path(example)}"
            )
    return np.stack(rows), records


def read_member(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict of a zoo member, checked: a zoo folder may come from someone else.

    Raises:
        ValueError: naming ``path``, when it is missing, unreadable (damaged, or a pickle of
            anything but tensors), or not a state_dict of non-empty real dense tensors.
    """
    name = shown_path(path)
    if not path.is_file():
        raise ValueError(f"{name}: no such zoo checkpoint (its shard's records.json names it)")
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it was not written for; the load itself says what fails.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise ValueError(f"{name}: not a readable checkpoint ({load_error_reason(error)})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{name}: holds a {type(state).__name__}, expected a state_dict")
    if not state:
        raise ValueError(f"{name}: holds no tensors")
    for key, tensor in state.items():
        if (
            not isinstance(tensor, torch.Tensor)
            or tensor.layout != torch.strided
            or tensor.is_meta
            or tensor.is_complex()
            or tensor.dtype == torch.bool
            or tensor.numel() == 0
        ):
            raise ValueError(f"{name}: {str(key)!r} is not a non-empty real dense tensor")
    return state


def fit_stats_gbt(
    zoo: str | os.PathLike,
    out: str | os.PathLike,
    targets: tuple[str, ...] = ("test_accuracy",),
    *,
    seed: int = 0,
    n_estimators: int = 300,
    learning_rate: float = 0.05,
    max_depth: int = 4,
) -> dict[str, Any]:
    """Train the statistics + gradient-boosted-trees baseline on a zoo and test it; write ``out``.

    Writes ``result.json`` (validation and test Kendall tau, Spearman rho, R^2 and MSE, the
    mean predictor's MSE, the settings), ``test_predictions.csv`` and ``predicted_vs_true.png``.
    """
    unknown = [target for target in targets if target not in TARGET_COLUMNS]
    if unknown or not targets:
        named = f"--targets {unknown[0]}" if unknown else "--targets names no target"
        raise ValueError(f"{named}: a zoo's targets are {', '.join(TARGET_COLUMNS)}")
    repeated = first_repeat(targets)
    if repeated is not None:
        raise ValueError(f"--targets names {repeated} twice")
    refuse_output_inside(out, zoo, f"--out {out}", f"the zoo {zoo}")
    refuse_existing_results(out, ("result.json", PREDICTIONS_CSV, PREDICTED_VS_TRUE_PNG))
    started = time.perf_counter()
    features, records = zoo_features(zoo)
    y = np.array([[record[target] for target in targets] for record in records], dtype=np.float64)
    split = np.array([record["split"] for record in records])
    # A member whose training diverged has NaN/inf weights (or scores): it is left out, and named.
    finite_weights, finite_targets = np.isfinite(features).all(axis=1), np.isfinite(y).all(axis=1)
    usable = finite_weights & finite_targets
    left_out = {
        "non_finite_weights": [record["path"] for record, keep in zip(records, finite_weights) if not keep],
        "non_finite_targets": [
            record["path"]
            for record, keep, weights in zip(records, finite_targets, finite_weights)
            if weights and not keep
        ],
    }
    rows = {name: np.nonzero((split == name) & usable)[0] for name in SPLITS}
    if rows["train"].size < 2 or rows["test"].size < 2:
        raise ValueError(f"{zoo}: {rows['train'].size} train and {rows['test'].size} test members; too few to fit")
    predictions = {name: np.zeros((rows[name].size, len(targets))) for name in SPLITS}
    for column in range(len(targets)):
        model = GradientBoostingRegressor(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            max_depth=max_depth,
            subsample=0.8,
            random_state=seed,
        )
        model.fit(features[rows["train"]], y[rows["train"], column])
        for name in SPLITS:
            if rows[name].size:
                predictions[name][:, column] = model.predict(features[rows[name]])
    for name in SPLITS:
        if not np.isfinite(predictions[name]).all():
            raise ValueError(
                f"stats-gbt gave non-finite {name} predictions with learning_rate={learning_rate:g}; lower it"
            )
    train_mean = y[rows["train"]].mean(axis=0)
    test_true = y[rows["test"]]
    result: dict[str, Any] = {
        "model": "stats-gbt",
        "task": "regress",
        "targets": list(targets),
        "metric": "mse",
        "test_metric": float(((predictions["test"] - test_true) ** 2).mean()),
        "reference": {
            "predictor": "always the mean training target",
            "test_metric": float(((train_mean - test_true) ** 2).mean()),
        },
        "test_ranking": column_metrics(predictions["test"], test_true, targets),
        "networks": {name: int(rows[name].size) for name in SPLITS},
        "left_out": left_out,
        "features": int(features.shape[1]),
        "settings": {
            "n_estimators": n_estimators,
            "learning_rate": learning_rate,
            "max_depth": max_depth,
            "subsample": 0.8,
            "seed": seed,
        },
        "zoo": str(Path(zoo).resolve()),
        "seconds": time.perf_counter() - started,
        "command": f"wsgraph zoo-stats --zoo {zoo} --targets {','.join(targets)} --out {out}",
    }
    if rows["val"].size >= 2:
        result["val_ranking"] = column_metrics(predictions["val"], y[rows["val"]], targets)
    out = Path(out)
    write_predictions(out / PREDICTIONS_CSV, predictions["test"], test_true, targets)
    panels = [(f"stats-gbt: {t}", predictions["test"][:, c], test_true[:, c]) for c, t in enumerate(targets)]
    plot_predicted_vs_true(out / PREDICTED_VS_TRUE_PNG, panels, "target", Path(zoo).name)
    write_json(out / "result.json", result, sort_keys=True)
    return result
