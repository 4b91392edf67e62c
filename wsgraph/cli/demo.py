"""``wsgraph demo``: the main job, end to end, on the 8x8 digits that ship with scikit-learn.

1. Networks become graphs: build, convert, batch, permute and draw a few MLPs
   (:func:`wsgraph.cli.graph_demo.run_graph_demo`).
2. Fit one SIREN per digit image (all 1,797 by default) with the published INR recipe,
   except that every SIREN starts from one shared initialisation and has its hidden
   neurons shuffled afterwards (``wsgraph fit-inrs --source digits --shared-init
   --permute-hidden``). With 1,259 training networks, independently initialised INRs
   of 8x8 images leave too little signal in the weights for any model (all stay near
   chance); a shared start keeps the signal, and the shuffle puts back exactly the
   symmetry that equivariant models are built to ignore and flat models must learn.
3. Train DWSNet, the flat-MLP baselines and a GNN on the INRs' weights to classify the
   digit they show, as ``wsgraph bench`` would, and print the comparison table.

Every stage is resumable: a rerun skips fitted shards and finished training runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from wsgraph.cli.arguments import int_at_least, path_argument, seed
from wsgraph.cli.graph_demo import refuse_foreign_graph_outputs, run_graph_demo
from wsgraph.training.config import MODEL_NAMES

if TYPE_CHECKING:
    from wsgraph.training.bench import BenchOutputs
    from wsgraph.training.config import TrainConfig

DEFAULT_OUT = Path("runs/demo")
DEFAULT_MODELS = ("dwsnet", "mlp", "mlp-aug", "gine")
# Training needs two networks (a batch of one has no batch statistics).
_LEAST_LIMIT = 2
# What stage 1 writes into, the fitted INRs, the table and chart, the training runs.
_STAGE_FOLDERS = ("graphs", "digits-inrs", "results", "runs")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job on the embedded digits: networks as graphs, fit INRs, train DWSNet and baselines",
        description=(
            "Build and convert a few networks, fit one SIREN per scikit-learn 8x8 digit, then train DWSNet, "
            "the flat-MLP baselines and a GNN to classify the INRs from their weights, and print the table. "
            "Resumable: a rerun skips what is finished."
        ),
    )
    parser.add_argument(
        "--out",
        type=lambda text: Path(path_argument(text)),
        default=DEFAULT_OUT,
        help=f"output folder (default: {DEFAULT_OUT})",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"models to compare, comma separated: any of {', '.join(MODEL_NAMES)} (default: {','.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--epochs", type=int_at_least(1, "positive"), default=25, help="training epochs per model (default: 25)"
    )
    parser.add_argument(
        "--steps",
        type=int_at_least(1, "positive"),
        default=1000,
        help="INR fitting steps (default: 1000, the recipe's)",
    )
    parser.add_argument(
        "--limit",
        type=int_at_least(_LEAST_LIMIT, f">= {_LEAST_LIMIT}"),
        help=f"fit only the first N digits of each split, N >= {_LEAST_LIMIT} (default: all)",
    )
    parser.add_argument("--graphs-only", action="store_true", help="run only the first stage (networks as graphs)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsgraph.cli.fit_inrs import check_arguments
    from wsgraph.io import check_writable_folder
    from wsgraph.training.bench import check_model_names

    check_arguments(argparse.Namespace(steps=args.steps))

    # Checked before the INR fitting, which takes minutes, rather than when training starts.
    check_model_names(args.models)
    check_writable_folder(args.out, f"--out {args.out}")
    for name in _STAGE_FOLDERS[:1] if args.graphs_only else _STAGE_FOLDERS:
        folder = args.out / name
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"--out {args.out}: {folder} exists and is not a folder; the demo writes one there")
    refuse_foreign_graph_outputs(args.out / "graphs")
    if not args.graphs_only:
        _refuse_blocked_comparison(args)
    started = time.perf_counter()
    _stage(1, "networks as graphs")
    run_graph_demo(args.out / "graphs", seed=args.seed)
    if args.graphs_only:
        return 0
    data = args.out / "digits-inrs"
    _stage(2, f"fit one SIREN per digit image -> {data}")
    _fit_digit_inrs(data, args)
    _stage(3, f"train {', '.join(args.models)} to classify the digits from the INR weights")
    table = _compare_models(data, args)
    print(table.read_text())
    print(f"wsgraph demo: finished in {time.perf_counter() - started:.0f} s; results in {table.parent}")
    return 0


def _stage(number: int, title: str) -> None:
    print(f"\n== {number}/3 {title}", flush=True)


def _fit_digit_inrs(root: Path, args: argparse.Namespace) -> None:
    from dataclasses import replace

    from wsgraph.datasets.images import load_images
    from wsgraph.inrs.image_inrs import fit_image_inrs, format_psnr_summary
    from wsgraph.inrs.siren import SirenRecipe, psnr_to_mse
    from wsgraph.runtime import resolve_device

    images = load_images("digits", seed=args.seed)
    if args.limit is not None:
        images = images.head_per_split(args.limit)
    # The recipe of `wsgraph fit-inrs`: the released init, each INR stopped at 40 dB.
    recipe = replace(SirenRecipe(), steps=args.steps, early_stop_loss=psnr_to_mse(40.0))
    summary = fit_image_inrs(
        images,
        root,
        recipe,
        seed=args.seed,
        device=resolve_device("auto"),
        limit_per_split=args.limit,
        progress=not args.no_progress,
        shared_init=True,
        permute_hidden=True,
    )
    print(format_psnr_summary(summary))


def _comparison_outputs(args: argparse.Namespace) -> BenchOutputs:
    from dataclasses import replace

    from wsgraph.training.bench import BenchOutputs

    # The demo has no --runs-dir: its runs lie in --out.
    return replace(BenchOutputs.at(args.out / "results", args.out / "runs"), runs_advice="choose another --out")


def _comparison_base(args: argparse.Namespace) -> TrainConfig:
    """The settings of the third stage's runs (the first model's)."""
    from wsgraph.training.config import TrainConfig

    return TrainConfig(
        data=str(args.out / "digits-inrs"),
        model=args.models[0],
        out=str(_comparison_outputs(args).runs_dir),
        epochs=args.epochs,
        batch_size=64,
        lr=2e-3,
        patience=0,
        seed=args.seed,
        progress=not args.no_progress,
    )


def _refuse_blocked_comparison(args: argparse.Namespace) -> None:
    """What the third stage's bench would refuse after the fit, refused before it: a blocked output, and a
    finished run of other settings (a rerun with another --epochs)."""
    from dataclasses import replace

    from wsgraph.training.bench import (
        refuse_blocked_outputs,
        refuse_finished_runs_of_other_settings,
        refuse_foreign_outputs,
    )

    outputs, base = _comparison_outputs(args), _comparison_base(args)
    planned = [outputs.runs_dir / f"{model}-seed{args.seed}" for model in args.models]
    refuse_blocked_outputs(outputs, planned)
    refuse_foreign_outputs(outputs)
    configs = [replace(base, model=model, out=str(folder)) for model, folder in zip(args.models, planned)]
    refuse_finished_runs_of_other_settings(configs, outputs.runs_advice)


def _compare_models(data: Path, args: argparse.Namespace) -> Path:
    from dataclasses import replace

    from wsgraph.training.bench import bench, bench_command

    outputs = _comparison_outputs(args)
    base = replace(_comparison_base(args), data=str(data))
    command = bench_command(base, args.models, 1, str(args.out / "results"), str(outputs.runs_dir))
    bench(base, args.models, [args.seed], outputs, command)
    return outputs.table
