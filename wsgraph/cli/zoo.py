"""``wsgraph zoo``: train a model zoo of small classifiers with hyper-parameters drawn per member.

Examples::

    wsgraph zoo --source mnist --root data/mnist --out data/mnist-zoo --count 2000
    wsgraph zoo --source digits --out data/digits-zoo --count 200 --arch mlp --save-epochs 1,2
    wsgraph convert data/mnist-zoo/checkpoints data/mnist-zoo-ds --labels data/mnist-zoo/labels.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import os

from wsgraph.cli.arguments import int_at_least, path_argument, seed
from wsgraph.io import check_writable_folder
from wsgraph.zoo.build import INDEX_CSV, ZooPlan
from wsgraph.zoo.hyperparams import ACTIVATIONS, INIT_FAMILIES, SearchSpace
from wsgraph.zoo.members import ARCHITECTURES, DEFAULT_WIDTH

_SPACE = SearchSpace()
_PLAN = {item.name: item.default for item in dataclasses.fields(ZooPlan)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "zoo",
        help="train a zoo of small CNNs or MLPs with random hyper-parameters (for generalization prediction)",
        description=(
            "Train --count small classifiers on an image source, each with hyper-parameters drawn from a seeded "
            "generator, many at once as batched tensor programs, and write each as a plain state_dict with its "
            "hyper-parameters and train/test accuracy and loss (OUT/index.csv; OUT/labels.csv for 'wsgraph convert "
            "OUT/checkpoints DATA --labels OUT/labels.csv'). Shards are written atomically; rerunning the same "
            "command resumes."
        ),
    )
    parser.add_argument("--source", required=True, help="digits, mnist, fashion-mnist or cifar10")
    parser.add_argument("--root", type=path_argument, help="folder of the source's files (not needed for digits)")
    parser.add_argument("--out", required=True, type=path_argument, help="zoo folder to create or resume")
    parser.add_argument("--count", type=int, required=True, help="members to train")
    parser.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default="cnn",
        help="cnn: 3 conv layers + linear (default); mlp: 2 hidden layers",
    )
    parser.add_argument(
        "--width",
        type=int,
        help=f"channels (cnn, default {DEFAULT_WIDTH['cnn']}) or hidden neurons (mlp, default {DEFAULT_WIDTH['mlp']})",
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the hyper-parameters and everything random")
    space = parser.add_argument_group("hyper-parameter ranges (LOW,HIGH; drawn per member)")
    _range(space, "--lr", float, _SPACE.lr, "Adam learning rate, log-uniform")
    _range(space, "--weight-decay", float, _SPACE.weight_decay, "L2 regularisation, log-uniform")
    _range(space, "--init-scale", float, _SPACE.init_scale, "multiplier of the initial weights, log-uniform")
    _range(space, "--dropout", float, _SPACE.dropout, "dropout probability, uniform")
    _range(space, "--train-fraction", float, _SPACE.train_fraction, "fraction of the training images, uniform")
    _range(space, "--epochs", int, _SPACE.epochs, "epochs over the member's own images, uniform integers")
    space.add_argument(
        "--activations",
        type=_names,
        default=_SPACE.activations,
        metavar="NAMES",
        help=f"choices of {','.join(ACTIVATIONS)} (default {','.join(_SPACE.activations)})",
    )
    space.add_argument(
        "--init-families",
        type=_names,
        default=_SPACE.init_families,
        metavar="NAMES",
        help=f"choices of {','.join(INIT_FAMILIES)} (default all)",
    )
    run = parser.add_argument_group("training and output")
    run.add_argument(
        "--batch-size",
        type=int,
        default=_PLAN["batch_size"],
        help=f"images per member per step (default {_PLAN['batch_size']})",
    )
    run.add_argument(
        "--save-epochs",
        type=_integers,
        default=(),
        metavar="EPOCHS",
        help="also keep each member after these epochs, e.g. 0,1,2 (0: the initialisation); the final one is always kept",
    )
    run.add_argument(
        "--train-eval-size",
        type=int,
        default=_PLAN["train_eval_size"],
        help=f"own training images the train scores use (default {_PLAN['train_eval_size']})",
    )
    run.add_argument(
        "--test-size", type=int_at_least(1, "positive"), help="test images (default: the whole test split)"
    )
    run.add_argument(
        "--shard-size", type=int, default=_PLAN["shard_size"], help=f"members per shard (default {_PLAN['shard_size']})"
    )
    run.add_argument(
        "--group-size",
        type=int,
        default=_PLAN["group_size"],
        help=f"members trained in one batch (default {_PLAN['group_size']})",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_zoo)


def run_zoo(args: argparse.Namespace) -> int:
    from wsgraph.zoo.build import ZooPlan, build_zoo
    from wsgraph.zoo.data import load_zoo_data
    from wsgraph.zoo.members import MemberArchitecture

    space = SearchSpace(
        lr=args.lr,
        weight_decay=args.weight_decay,
        init_scale=args.init_scale,
        dropout=args.dropout,
        train_fraction=args.train_fraction,
        epochs=args.epochs,
        activations=tuple(args.activations),
        init_families=tuple(args.init_families),
    )
    check_writable_folder(args.out, f"--out {args.out}")
    data, image_shape, classes = load_zoo_data(args.source, args.root, args.test_size)
    architecture = MemberArchitecture(
        args.arch, image_shape, classes, DEFAULT_WIDTH[args.arch] if args.width is None else args.width
    )
    plan = ZooPlan(
        source=args.source,
        architecture=architecture,
        count=args.count,
        seed=args.seed,
        space=space,
        batch_size=args.batch_size,
        save_epochs=tuple(sorted(set(args.save_epochs))),
        train_eval_size=args.train_eval_size,
        test_size=args.test_size,
        shard_size=args.shard_size,
        group_size=args.group_size,
    )
    summary = build_zoo(plan, data, args.out, progress=not args.no_progress)
    accuracy = summary["final_test_accuracy"]
    print(
        f"{summary['members']} {args.arch} members of {args.source} in {args.out} "
        f"({architecture.num_parameters} parameters each, {summary['checkpoints']} checkpoints)"
    )
    if summary["not_saved_non_finite"]:
        print(
            f"not saved: {summary['not_saved_non_finite']} checkpoint(s) with NaN or infinite weights "
            f"(listed in {os.path.join(args.out, INDEX_CSV)} without a path)"
        )
    if accuracy:
        print(
            f"final test accuracy: mean {accuracy['mean']:.4f}, std {accuracy['std']:.4f}, "
            f"min {accuracy['min']:.4f}, median {accuracy['median']:.4f}, max {accuracy['max']:.4f}"
        )
    print(f"as a dataset: {summary['convert']}")
    return 0


def _range(group: argparse._ArgumentGroup, flag: str, kind: type, default: tuple, text: str) -> None:
    def parse(value: str) -> tuple:
        parts = [part.strip() for part in value.split(",")]
        try:
            numbers = tuple(kind(part) for part in parts)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"expected LOW,HIGH or one value, got {value!r}") from error
        if len(numbers) == 1:
            return numbers * 2
        if len(numbers) != 2:
            raise argparse.ArgumentTypeError(f"expected LOW,HIGH or one value, got {value!r}")
        return numbers

    group.add_argument(
        flag, type=parse, default=default, metavar="LOW,HIGH", help=f"{text} (default {default[0]:g},{default[1]:g})"
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _integers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from error
