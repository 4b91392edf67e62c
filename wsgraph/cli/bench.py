"""``wsgraph bench``: train several models with several seeds on one dataset and tabulate the results.

Examples::

    wsgraph bench --data data/digits-inrs --models dwsnet,mlp,mlp-aug,gine --seeds 3 --out docs/results-digits.md
    wsgraph bench --data data/sine-inrs --task regress --targets 1 --models dwsnet,mlp --out runs/sine-bench
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wsgraph.cli.arguments import path_argument
from wsgraph.cli.train import add_training_arguments, explicit_settings
from wsgraph.io import check_writable_folder, refuse_output_inside
from wsgraph.runtime import MAX_SEED
from wsgraph.training.bench import BenchOutputs, bench, bench_command, check_model_names
from wsgraph.training.config import MODEL_NAMES, TrainConfig, parse_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="train several models with several seeds and write a results table and chart",
        description=(
            "Train each of --models with each of --seeds seeds (as 'wsgraph train', one folder per run; finished "
            "runs are skipped, interrupted ones resumed), then write a markdown table (mean ± std of the test "
            "metric, parameters, training time, networks/s, epochs) headed by the command that reproduces it, "
            "a bar chart, and all runs as JSON and CSV."
        ),
    )
    parser.add_argument("--data", required=True, metavar="DIR", type=path_argument, help="the dataset root")
    parser.add_argument(
        "--models",
        required=True,
        type=lambda text: list(parse_names(text)),
        metavar="NAMES",
        help=f"comma-separated models: {', '.join(MODEL_NAMES)}",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, metavar="N", help="seeds per model, from --seed on (default: 3)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE.md|DIR",
        type=path_argument,
        help="FILE.md: the table there, chart and runs beside it; or a folder for everything",
    )
    parser.add_argument(
        "--runs-dir",
        metavar="DIR",
        type=path_argument,
        help="run folders (default: runs/bench/<FILE> for FILE.md, else OUT/runs)",
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)


# Past any useful benchmark: --seeds 10^12 filled the memory with the plan of its runs.
_MOST_SEEDS = 10_000


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.seeds <= _MOST_SEEDS:
        raise ValueError(f"--seeds must be in 1..{_MOST_SEEDS:,}, got {args.seeds}")
    if not args.models:
        raise ValueError("--models needs at least one model name")
    check_model_names(args.models)
    outputs = BenchOutputs.at(args.out, args.runs_dir)
    if args.data is not None:
        runs_named = f"--runs-dir {args.runs_dir}" if args.runs_dir is not None else f"the runs of --out {args.out}"
        refuse_output_inside(outputs.runs_dir, args.data, runs_named, f"--data {args.data}")
        refuse_output_inside(outputs.table, args.data, f"--out {args.out}", f"--data {args.data}")
    # The report is written after every run has trained: a place it cannot go must not wait for them.
    check_writable_folder(outputs.table.parent, f"--out {args.out}")
    if not outputs.curves.exists() or outputs.curves.is_dir():  # a file there is refused, naming it, by bench
        check_writable_folder(outputs.curves, f"--out {args.out}")
    if args.runs_dir is not None:
        check_writable_folder(Path(args.runs_dir), f"--runs-dir {args.runs_dir}")
    settings = {**explicit_settings(args), "model": args.models[0], "out": str(outputs.runs_dir)}
    base = TrainConfig(**settings)
    first = base.seed
    if first + args.seeds - 1 > MAX_SEED:
        raise ValueError(f"--seed {first} with --seeds {args.seeds} goes past the largest seed, {MAX_SEED}")
    command = bench_command(base, args.models, args.seeds, args.out, args.runs_dir)
    bench(base, args.models, list(range(first, first + args.seeds)), outputs, command)
    print(f"wsgraph bench: wrote {outputs.table} and {outputs.chart}")
    return 0
