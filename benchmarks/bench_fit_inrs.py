"""INR fitting speed: MNIST SIRENs (2-32-32-1, DWSNets recipe) per minute, autograd loop versus the fused trainer.

Short runs (``--steps``, default 50; the fastest of ``--repeats``) at a few batch sizes
give the cost of a step, which is extrapolated linearly to the recipe's 1,000 steps (the table says so); ``--full N``
then fits N INRs for the full ``--full-steps`` (default 1,000) with the fused trainer at
the best batch size and reports the real figure. Prints a markdown table and writes
JSON (default ``benchmarks/results/fit_inrs_<hostname>.json``).

The "autograd" baseline is :func:`wsgraph.inrs.fitting.fit_sirens_autograd`: the same
batched SIRENs as stacked tensors with autograd and ``torch.optim.Adam`` (no Python loop
per image either), one batch at a time with every thread on each operation.

Like the ``wsgraph`` commands it first tunes glibc's allocator
(``wsgraph.runtime.tune_cpu_allocator``); ``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_fit_inrs.py [--root data/mnist] [--batch-sizes 16,32,64]
[--steps 50] [--full 600] [--device auto] [--default-malloc]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from wsgraph.datasets.images import load_images
from wsgraph.inrs.fitting import default_workers, fit_sirens, fit_sirens_autograd
from wsgraph.inrs.siren import PixelGrid, SirenRecipe, psnr_to_mse
from wsgraph.io import write_json
from wsgraph.runtime import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, load_average, markdown_table, time_calls, tune_allocator

DEFAULT_ROOT = Path(os.environ.get("WSGRAPH_MNIST_ROOT", Path(__file__).resolve().parents[1] / "data" / "mnist"))
RECIPE_STEPS = 1000


def mnist_targets(root: Path, count: int) -> torch.Tensor:
    """The first ``count`` MNIST training images as ``[count, 784, 1]`` intensities (digits if MNIST is absent)."""
    images = load_images("mnist", root, split="train") if root.is_dir() else None
    if images is None:
        raise FileNotFoundError(f"{root}: no MNIST folder; pass --root DIR holding the four idx files")
    reps = -(-count // len(images))
    pixels = images.intensities().repeat(reps, 1, 1, 1)[:count]
    return pixels.reshape(count, 28 * 28, 1)


def measure(
    method: str,
    targets: torch.Tensor,
    recipe: SirenRecipe,
    batch_size: int,
    workers: int,
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """Fit ``targets`` ``repeats`` times (after a small warm-up fit); the rate uses the fastest run."""
    keys = torch.arange(targets.size(0))
    grid = PixelGrid(28, 28)
    steps_taken: list[float] = []

    def fit(subset: torch.Tensor, subset_keys: torch.Tensor, run_recipe: SirenRecipe) -> None:
        if method == "autograd":
            for start in range(0, subset.size(0), batch_size):
                stop = start + batch_size
                fit_sirens_autograd(subset[start:stop], grid, run_recipe, subset_keys[start:stop], 0, device=device)
        else:
            result = fit_sirens(
                subset, grid, run_recipe, subset_keys, 0, batch_size=batch_size, workers=workers, device=device
            )
            steps_taken.append(float(result.steps.double().mean()))

    fit(targets[:batch_size], keys[:batch_size], SirenRecipe(steps=2))
    seconds = time_calls(lambda: fit(targets, keys, recipe), repeats, warmup=0)
    per_minute = targets.size(0) / min(seconds) * 60.0
    return {
        "method": method,
        "batch_size": batch_size,
        "workers": workers,
        "networks": targets.size(0),
        "steps": recipe.steps,
        "seconds": seconds,
        "inrs_per_minute_at_steps": per_minute,
        "inrs_per_minute_at_1000_steps": per_minute * recipe.steps / RECIPE_STEPS,
        "extrapolated": recipe.steps != RECIPE_STEPS,
        "init": recipe.init,
        "early_stop_loss": recipe.early_stop_loss,
        "mean_steps_taken": steps_taken[-1] if steps_taken else float(recipe.steps),
    }


def fitting_environment(device: torch.device, allocator_tuned: bool) -> dict[str, Any]:
    """:func:`common.environment` plus the fitting device, under the names this benchmark's JSON has always used."""
    info = environment()
    return {
        **info,
        "cpu": info["hardware"],
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_before": info["load_average"],
        "allocator_tuned": allocator_tuned,
    }


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    load = env["load_average_before"]
    heading = (
        f"MNIST SIRENs 2-32-32-1 on {env['device']} ({env['cuda'] or env['cpu']}, {env['torch_threads']} threads, "
        f"load average before {load[0] if load else float('nan'):.2f}), torch {env['torch']}"
    )
    rows = [
        [
            row["method"],
            row["batch_size"],
            row["workers"],
            row["networks"],
            row["steps"],
            f"{min(row['seconds']):.2f} of {len(row['seconds'])}",
            f"{row['inrs_per_minute_at_1000_steps']:,.0f}"
            + (" (extrapolated)" if row["extrapolated"] else " (measured)"),
            "40 dB" if row.get("early_stop_loss") else "off",
            f"{row.get('mean_steps_taken', row['steps']):.0f}",
        ]
        for row in report["results"]
    ]
    headers = [
        "method",
        "batch",
        "workers",
        "networks",
        "steps",
        "best of runs, s",
        "INRs/min at 1000 steps",
        "early stop",
        "mean steps taken",
    ]
    return heading + "\n\n" + markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="MNIST idx folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    parser.add_argument(
        "--batch-sizes", default=None, help="comma-separated (default: 8,16,32,64 on CPU; 1024,4096,8192 on CUDA)"
    )
    parser.add_argument("--steps", type=int, default=50, help="steps of the short runs (default 50)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each short configuration (default 3)")
    parser.add_argument("--methods", default="autograd,fused", help="autograd and/or fused (default both)")
    parser.add_argument(
        "--full", type=int, default=0, help="then fit this many INRs at --full-steps with the fused trainer"
    )
    parser.add_argument("--full-steps", type=int, default=RECIPE_STEPS, help="steps of the full run (default 1000)")
    add_common_flags(parser, "fit_inrs")
    args = parser.parse_args(argv)

    allocator_tuned = tune_allocator(args.default_malloc)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    sizes = [int(s) for s in (args.batch_sizes or ("1024,4096,8192" if cuda else "8,16,32,64")).split(",")]
    workers = default_workers(device)
    report: dict[str, Any] = {
        "benchmark": "fit_inrs",
        "tuned_allocator": allocator_tuned,
        "environment": fitting_environment(device, allocator_tuned),
        "results": [],
    }
    short = SirenRecipe(steps=args.steps)
    for method in args.methods.split(","):
        for size in sizes:
            method_workers = workers if method == "fused" else 1
            targets = mnist_targets(args.root, size * method_workers * (1 if cuda else 2))
            row = measure(method, targets, short, size, method_workers, device, args.repeats)
            report["results"].append(row)
            print(
                f"{method} batch {size}: {row['inrs_per_minute_at_1000_steps']:,.0f} INRs/min at 1000 steps (extrapolated)",
                flush=True,
            )
    if args.full:
        fused = [row for row in report["results"] if row["method"] == "fused"]
        best = max(fused, key=lambda row: row["inrs_per_minute_at_1000_steps"])["batch_size"] if fused else sizes[0]
        # The recipe `wsgraph fit-inrs` uses: the released init, each INR stopped at 40 dB.
        full = SirenRecipe(steps=args.full_steps, early_stop_loss=psnr_to_mse(40.0))
        row = measure("fused", mnist_targets(args.root, args.full), full, best, workers, device, repeats=1)
        report["results"].append(row)
    report["environment"]["load_average_after"] = load_average()
    table = markdown(report)
    print(table)
    out = args.out
    write_json(out, {**report, "markdown": table})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
