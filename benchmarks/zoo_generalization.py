"""Generalization prediction on a zoo: the stats baseline and weight-space models, one table and one figure.

Given a zoo folder (``wsgraph zoo``) and the dataset converted from it (``wsgraph convert
ZOO/checkpoints DATA --labels ZOO/labels.csv``), runs ``wsgraph zoo-stats`` and
``wsgraph train --task regress --targets test_accuracy`` for each ``--models`` entry
(``name`` or ``name:flag=value:...`` for extra train flags, e.g. ``dwsnet:hidden-channels=16``),
each in its own run folder under ``--runs``, skipping finished runs, then writes
``--out NAME.md`` (test Kendall tau, R^2, MSE, the mean predictor's MSE, training time and
the exact commands) and ``NAME.png`` (predicted against true test accuracy per model).

Run: ``python benchmarks/zoo_generalization.py --zoo ZOO --data DATA --models mlp,dwsnet --epochs 30
--runs runs/zoo-gen --out docs/results/zoo-mnist-cnn``
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

from wsgraph.training.regression import plot_predicted_vs_true


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--models", default="mlp,dwsnet")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--runs", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path, help="NAME: writes NAME.md and NAME.png")
    args = parser.parse_args()
    wsgraph = [sys.executable, "-m", "wsgraph"]
    commands: list[tuple[str, list[str], Path]] = []
    stats_run = args.runs / "stats-gbt"
    commands.append(
        (
            "stats-gbt",
            ["zoo-stats", "--zoo", str(args.zoo), "--targets", "test_accuracy", "--out", str(stats_run)],
            stats_run,
        )
    )
    for entry in args.models.split(","):
        name, *extra = entry.split(":")
        run = args.runs / entry.replace(":", "_").replace("=", "")
        flags = [f"--{item.split('=')[0]}={item.split('=')[1]}" for item in extra]
        command = [
            "train", "--data", str(args.data), "--model", name, "--task", "regress", "--targets", "test_accuracy",
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--out", str(run), "--no-progress",
            *flags,
        ]  # fmt: skip
        commands.append((entry, command, run))
    rows, panels = [], []
    for label, command, run in commands:
        if not (run / "result.json").is_file():
            print("running:", shlex.join(["wsgraph", *command]), flush=True)
            subprocess.run([*wsgraph, *command], check=True)
        result = json.loads((run / "result.json").read_text())
        ranking = result["test_ranking"]
        seconds = result.get("train_seconds", result.get("seconds"))
        rows.append(
            f"| {label} | {ranking['kendall_tau']:.3f} | {ranking['r2']:.3f} | {result['test_metric']:.4g} | "
            f"{result['reference']['test_metric']:.4g} | {seconds:.0f} | `{shlex.join(['wsgraph', *command])}` |"
        )
        with (run / "test_predictions.csv").open() as handle:
            table = list(csv.DictReader(handle))
        true = np.array([float(r["true_test_accuracy"]) for r in table])
        predicted = np.array([float(r["predicted_test_accuracy"]) for r in table])
        panels.append((label, predicted, true))
    header = [
        f"Generalization prediction on `{args.zoo}` (test split of `{args.data}`)",
        "",
        "| model | Kendall tau | R^2 | test MSE | mean predictor MSE | seconds | command |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(header + rows) + "\n"
    args.out.with_suffix(".md").write_text(text)
    plot_predicted_vs_true(args.out.with_suffix(".png"), panels, "test accuracy", args.zoo.name)
    print(text)


if __name__ == "__main__":
    main()
