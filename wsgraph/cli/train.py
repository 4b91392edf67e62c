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
import sys
from pathlib import Path
from typing import Any

from wsgraph.cli.arguments import path_argument
from wsgraph.training.config import (
    MODEL_NAMES,
    TrainConfig,
)
from wsgraph.training.run import train
from wsgraph.training.run_checkpoints import LAST, load_run_checkpoint, stored_config

_DEFAULTS = {item.name: item.default for item in dataclasses.fields(TrainConfig)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (DWSNet, MLP or GNN baseline) on a weight-space dataset",
        description=(
            "Train one model on the train split of a dataset root (from 'wsgraph fit-inrs', 'fit-sines' or 'convert'), "
            "with AdamW, linear warmup and cosine decay (or --schedule warmup-constant or constant), early stopping on the "
            "validation split, and test the best "
            "checkpoint. Writes to --out: last.pt (resumable), best.pt, metrics.csv, learning_curves.png, "
            "result.json. Under 'torchrun --nproc-per-node N -m wsgraph train ...' it trains with "
            "DistributedDataParallel; --batch-size stays the global batch."
        ),
    )
    parser.add_argument("--data", metavar="DIR", type=path_argument, help="the dataset root")
    parser.add_argument("--model", choices=MODEL_NAMES, help="the model to train")
    parser.add_argument(
        "--out", metavar="RUN_DIR", type=path_argument, help="the run folder (created; holds checkpoints and reports)"
    )
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
    """The settings of a run shared by ``train`` and ``bench``, one option per :class:`TrainConfig` field
    declared with :func:`~wsgraph.training.config.setting` (all default to ``None``: unset)."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    exclusive: dict[str, argparse._MutuallyExclusiveGroup] = {}
    declared = [item for item in dataclasses.fields(TrainConfig) if "group" in item.metadata]
    order = list(dict.fromkeys(item.metadata["group"] for item in declared))
    # Group by group, so that the usage line lists the options in the order of the help's sections.
    for item in sorted(declared, key=lambda item: order.index(item.metadata["group"])):
        meta = item.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        group = groups[meta["group"]]
        if meta["exclusive"]:
            if meta["exclusive"] not in exclusive:
                exclusive[meta["exclusive"]] = group.add_mutually_exclusive_group()
            group = exclusive[meta["exclusive"]]
        flag = "--" + item.name.replace("_", "-")
        parsing = _parsing(item)
        if meta["aliases"]:
            parsing["action"] = _OldSpelling
        if item.name == "model_options":
            parsing["action"] = _Joined
        group.add_argument(flag, *meta["aliases"], dest=item.name, help=_help(item), **parsing)


class _Joined(argparse._StoreAction):
    """A repeated ``--model-options`` adds to the earlier ones (a key given twice is then refused), rather than
    replacing them without a word."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        earlier = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, values if earlier is None else (*earlier, *values))


class _OldSpelling(argparse._StoreAction):
    """Stores the value as usual; an old spelling of the option (a setting's alias) also says it is deprecated."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        current = self.option_strings[0]
        if option_string is not None and option_string != current:
            sys.stderr.write(
                f"{parser.prog}: {option_string} is deprecated and will be removed in the next release; use {current}\n"
            )
        super().__call__(parser, namespace, values, option_string)


def _help(item: dataclasses.Field) -> str:
    text, shown = item.metadata["help"], item.metadata["default_text"]
    if shown is None:
        shown = ("on" if item.default else "off") if isinstance(item.default, bool) else str(item.default)
    text = f"{text} (default: {shown})" if shown else text
    aliases = item.metadata["aliases"]
    if aliases:  # argparse lists them beside the current name, as if they were its equals
        verb = "are deprecated spellings" if len(aliases) > 1 else "is a deprecated spelling"
        text += f"; {' and '.join(aliases)} {verb} of --{item.name.replace('_', '-')}"
    return text


def _parsing(item: dataclasses.Field) -> dict[str, Any]:
    """How argparse reads the option, from the field's metadata or else its type."""
    meta, kind = item.metadata, str(item.type)
    if kind == "bool":
        return {"action": argparse.BooleanOptionalAction}
    if meta["choices"]:
        return {"choices": meta["choices"]}
    if meta["parse"]:
        return {"type": meta["parse"], "metavar": meta["metavar"]}
    if kind.startswith("int"):
        return {"type": int, "metavar": meta["metavar"] or "N"}
    if kind.startswith("float"):
        return {"type": float, "metavar": meta["metavar"] or "X"}
    return {"type": str, "metavar": meta["metavar"]}


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
    stored = stored_config(resume, load_run_checkpoint(resume, required=("config",))).to_dict()
    return {**stored, **given}, resume
