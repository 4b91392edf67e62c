"""``wsgraph train``: train one model on a weight-space dataset, validate, test, report.

Examples::

    wsgraph train --data data/digits-inrs --model dwsnet --out runs/digits-dwsnet
    wsgraph train --data data/sine-inrs --model mlp --task regress --targets 1 --out runs/sine-mlp
    wsgraph train --out runs/digits-dwsnet --resume
    torchrun --nproc-per-node 2 -m wsgraph train --data data/mnist-inrs --model dwsnet --out runs/mnist
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from wsgraph.training.config import (
    AUGMENTATIONS,
    LOADERS,
    MODEL_NAMES,
    PUBLISHED_AUGMENTATIONS,
    SCHEDULES,
    TASKS,
    TrainConfig,
)
from wsgraph.training.run import train
from wsgraph.training.run_checkpoints import LAST, load_run_checkpoint

_DEFAULTS = {item.name: item.default for item in dataclasses.fields(TrainConfig)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (DWSNet, MLP or GNN baseline) on a weight-space dataset",
        description=(
            "Train one model on the train split of a dataset root (from 'wsgraph fit-inrs', 'fit-sines' or 'convert'), "
            "with AdamW, linear warmup and cosine decay (or --schedule constant), early stopping on the validation split, and test the best "
            "checkpoint. Writes to --out: last.pt (resumable), best.pt, metrics.csv, learning_curves.png, "
            "result.json. Under 'torchrun --nproc-per-node N -m wsgraph train ...' it trains with "
            "DistributedDataParallel; --batch-size stays the global batch."
        ),
    )
    parser.add_argument("--data", metavar="DIR", help="the dataset root")
    parser.add_argument("--model", choices=MODEL_NAMES, help="the model to train")
    parser.add_argument("--out", metavar="RUN_DIR", help="the run folder (created; holds checkpoints and reports)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="PATH",
        help=f"continue a run from PATH (default: --out/{LAST}) with its stored settings and the same data",
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings of a run shared by ``train`` and ``bench`` (all default to ``None``: unset)."""
    task = parser.add_argument_group("task")
    task.add_argument("--task", choices=TASKS, help="default: the dataset's own (classification or regression)")
    task.add_argument(
        "--targets",
        type=_targets,
        metavar="COLUMNS",
        help="regression: the columns of y to predict, e.g. 1 or 0,1, or their names (a zoo's test_accuracy) "
        "(default: all)",
    )
    task.add_argument("--max-train", type=int, metavar="N", help="train on at most N networks (a fixed random subset)")
    optimisation = parser.add_argument_group("optimisation")
    _option(optimisation, "--epochs", int, "training epochs")
    _option(optimisation, "--batch-size", int, "networks per step, over all processes")
    _option(optimisation, "--lr", float, "peak learning rate of AdamW")
    _option(optimisation, "--weight-decay", float, "AdamW weight decay")
    optimisation.add_argument(
        "--amsgrad",
        action=argparse.BooleanOptionalAction,
        help="AdamW's AMSGrad variant, as DWSNets trains (default: off)",
    )
    optimisation.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="learning rate: warmup-cosine (default: linear warmup, cosine decay to 0) or constant (DWSNets' trainer)",
    )
    warmup = optimisation.add_mutually_exclusive_group()
    warmup.add_argument("--warmup-steps", type=int, metavar="N", help="linear warmup steps (default: 5%% of all steps)")
    warmup.add_argument("--warmup-epochs", type=float, metavar="X", help="linear warmup, in epochs")
    _option(optimisation, "--patience", int, "stop after this many epochs without a better validation metric; 0: never")
    _option(optimisation, "--seed", int, "seed of initialisation, batch order, dropout and augmentation")
    optimisation.add_argument(
        "--augment",
        type=_names,
        metavar="NAMES",
        help=f"training augmentations, applied in the order given, comma separated: {', '.join(AUGMENTATIONS)}, "
        f"or published (= {','.join(PUBLISHED_AUGMENTATIONS)}, the DWSNets INR recipe); mlp-aug always permutes",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--hidden-channels",
        type=int,
        metavar="N",
        help="width (default: 32 DWSNet, MLP and ng-gnn, 64 other GNNs and ng-transformer's neurons)",
    )
    model.add_argument(
        "--depth",
        "--num-dws-layers",
        "--num-rounds",
        dest="depth",
        type=int,
        metavar="N",
        help="DWS layers, GNN message-passing rounds or transformer layers, or MLP hidden layers (default: 4, 4, 5)",
    )
    model.add_argument("--readout", choices=("mean", "sum", "max"), help="pooling of DWSNet and the GNNs")
    _option(model, "--dropout", float, "dropout probability")
    _option(
        model,
        "--probe-features",
        int,
        "DWSNet and GNNs: learned input points at which each network is run; every neuron's values there join "
        "its features",
    )
    hardware = parser.add_argument_group("hardware")
    _option(hardware, "--device", str, "auto (CUDA when available), cpu, cuda or cuda:N")
    hardware.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="mixed precision: bfloat16 autocast on CPU, float16 with a gradient scaler on CUDA (default: off)",
    )
    hardware.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile the DWSNet models (fullgraph; one process; compiling takes a minute or more) (default: off)",
    )
    hardware.add_argument(
        "--loader", choices=LOADERS, help="batching (default: auto, stacked tensors for one architecture, else PyG)"
    )
    _option(hardware, "--num-workers", int, "worker processes of the PyG loader")
    hardware.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bars (default: on)")


def run(args: argparse.Namespace) -> int:
    settings, resume = _settings(args)
    train(TrainConfig(**settings), resume)
    return 0


def explicit_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings given on the command line (those left unset are absent)."""
    return {name: getattr(args, name) for name in _DEFAULTS if getattr(args, name, None) is not None}


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    given = explicit_settings(args)
    if args.resume is None:
        missing = [f"--{name}" for name in ("data", "model", "out") if name not in given]
        if missing:
            raise ValueError(f"{', '.join(missing)} required (or --resume to continue a run)")
        return given, None
    if args.resume:
        resume = Path(args.resume)
    elif args.out:
        resume = Path(args.out) / LAST
    else:
        raise ValueError("--resume without a PATH needs --out (the run folder)")
    stored = load_run_checkpoint(resume, required=("config",))["config"]
    return {**stored, **given}, resume


def _option(group: argparse._ArgumentGroup, flag: str, kind: type, text: str) -> None:
    default = _DEFAULTS[flag[2:].replace("-", "_")]
    metavar = "N" if kind is int else "X" if kind is float else None
    group.add_argument(flag, type=kind, metavar=metavar, help=f"{text} (default: {default})")


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error


def _targets(text: str) -> tuple[int | str, ...]:
    return tuple(int(part) if part.isdigit() else part for part in _names(text))


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())
