"""``wsgraph fit-sines``: fit SIRENs to a*sin(b*x) (a, b ~ U(0, 10)) and write a regression dataset.

Example::

    wsgraph fit-sines --out data/sine-inrs --count 10000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsgraph.cli.arguments import path_argument
from wsgraph.cli.fit_inrs import add_fitting_arguments, check_arguments, recipe_from_arguments
from wsgraph.inrs.sine_inrs import DEFAULT_POINTS, SINE_RECIPE, TEST_FRACTION, VAL_FRACTION
from wsgraph.io import check_writable_folder
from wsgraph.runtime import resolve_device

# The fewest networks whose splits are all non-empty: round(10% of 6) = 1 val network.
_LEAST_COUNT = 6


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit-sines",
        help="fit 1-32-32-1 SIRENs to a*sin(b*x) with a, b ~ U(0, 10), labelled (a, b)",
        description=(
            "Fit one SIREN per function a*sin(b*x) on [-pi, pi) with the DWSNets recipe (1-32-32-1, omega_0 30, "
            "offset +0.5, Adam lr 1e-3 with weight decay 1e-4, up to 1500 steps, early stop at MSE 1e-4) "
            "and write shards plus meta.json to --out (task: regression on y = (a, b)). A rerun resumes."
        ),
    )
    parser.add_argument("--out", required=True, type=path_argument, help="dataset folder to create or resume")
    parser.add_argument(
        "--count", type=int, required=True, help=f"number of functions (networks), at least {_LEAST_COUNT}"
    )
    parser.add_argument(
        "--points", type=int, default=DEFAULT_POINTS, help=f"sample points in [-pi, pi) (default {DEFAULT_POINTS})"
    )
    recipe = add_fitting_arguments(parser, SINE_RECIPE)
    recipe.add_argument(
        "--weight-decay",
        type=float,
        default=SINE_RECIPE.weight_decay,
        help=f"Adam weight decay (default {SINE_RECIPE.weight_decay:g})",
    )
    recipe.add_argument(
        "--early-stop-loss",
        type=float,
        default=SINE_RECIPE.early_stop_loss,
        help=f"stop a network at this MSE, 0 for never (default {SINE_RECIPE.early_stop_loss:g})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsgraph.datasets.build import SUMMARY_FILE, format_statistics
    from wsgraph.inrs.sine_inrs import fit_sine_inrs

    if args.count < _LEAST_COUNT:
        raise ValueError(
            f"--count must be at least {_LEAST_COUNT}, so that the val and test splits "
            f"({VAL_FRACTION:.0%} and {TEST_FRACTION:.0%}, rounded) hold networks; got {args.count}"
        )
    check_arguments(args)
    check_writable_folder(args.out, f"--out {args.out}")
    args.early_stop_loss = args.early_stop_loss or None
    device = resolve_device(args.device)
    recipe = recipe_from_arguments(args, 1, 1, SINE_RECIPE)
    summary = fit_sine_inrs(
        args.out,
        args.count,
        recipe,
        num_points=args.points,
        seed=args.seed,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        device=device,
        progress=not args.no_progress,
    )
    print(
        f"{args.count} sine INRs in {args.out} ({recipe.spec}, {recipe.activation}, offset {recipe.output_offset:+g})"
    )
    print(format_statistics(summary["mse"], "MSE", digits=4))
    print(f"summary: {Path(args.out) / SUMMARY_FILE}, preview: {Path(args.out) / summary['files']['preview']}")
    return 0
