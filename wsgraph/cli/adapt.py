"""``wsgraph adapt``: domain adaptation by weight editing on a converted MLP zoo.

Example::

    wsgraph adapt --data data/digits-zoo-ds --source digits --shift invert --out runs/adapt-invert
"""

from __future__ import annotations

import argparse

from wsgraph.cli.arguments import activation_name, int_at_least, path_argument, seed
from wsgraph.io import check_writable_folder
from wsgraph.training.config import parse_names
from wsgraph.zoo.adapt import AdaptConfig
from wsgraph.zoo.editing import EDITORS
from wsgraph.zoo.shifts import DOMAIN_SHIFTS

_DEFAULTS = AdaptConfig(data="", source="")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "adapt",
        help="train weight editors that adapt a zoo's MLP classifiers to a shifted image domain",
        description=(
            "Train editors (the equivariant DWSNet editor and the flat MLP editor) on the train members of a "
            "converted MLP zoo ('wsgraph zoo --arch mlp', then 'wsgraph convert', which records each member's "
            "activation) to change "
            "each classifier's weights so that it classifies shifted images; the loss is the edited classifiers' "
            "cross-entropy on shifted training images. Reports, on the test members and the shifted test images, "
            "the accuracy of the unedited classifiers, of each editor's edit, and of fine-tuning with SGD at the "
            "first editor's cost (OUT/result.json)."
        ),
    )
    parser.add_argument("--data", required=True, type=path_argument, help="the converted zoo (a dataset root)")
    parser.add_argument("--source", required=True, help="the zoo's image source: digits, mnist, fashion-mnist, ...")
    parser.add_argument("--root", type=path_argument, help="folder of the source's files (not needed for digits)")
    parser.add_argument("--out", required=True, type=path_argument, help="where to write result.json")
    parser.add_argument(
        "--shift", choices=DOMAIN_SHIFTS, default=_DEFAULTS.shift, help=f"the target domain (default {_DEFAULTS.shift})"
    )
    parser.add_argument(
        "--editors",
        type=parse_names,
        default=_DEFAULTS.editors,
        help=f"comma-separated editors from {','.join(EDITORS)} (default {','.join(_DEFAULTS.editors)})",
    )
    parser.add_argument(
        "--activation",
        metavar="NAME",
        type=activation_name,
        help="the members' hidden activation, if the dataset does not record it",
    )
    parser.add_argument(
        "--test-size", type=int_at_least(1, "positive"), help="test images (default: the whole test split)"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the editors and the image draws (default 0)")
    editor = parser.add_argument_group("editors")
    editor.add_argument("--hidden-channels", type=int, default=_DEFAULTS.hidden_channels, help="(default %(default)s)")
    editor.add_argument("--depth", type=int, default=_DEFAULTS.depth, help="hidden layers (default %(default)s)")
    editor.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="(default %(default)s)")
    editor.add_argument(
        "--batch-size", type=int, default=_DEFAULTS.batch_size, help="networks per step (default %(default)s)"
    )
    editor.add_argument(
        "--images-per-step",
        type=int,
        default=_DEFAULTS.images_per_step,
        help="shifted images per step (default %(default)s)",
    )
    editor.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="Adam learning rate (default %(default)s)")
    editor.add_argument(
        "--clip-norm", type=float, default=_DEFAULTS.clip_norm, help="gradient norm cap (default %(default)s)"
    )
    tune = parser.add_argument_group("fine-tuning baseline")
    tune.add_argument(
        "--finetune-steps",
        type=int,
        help="SGD steps per classifier (default: as many as match the first editor's counted FLOPs per network)",
    )
    tune.add_argument(
        "--finetune-batch", type=int, default=_DEFAULTS.finetune_batch, help="images per step (default %(default)s)"
    )
    tune.add_argument(
        "--finetune-lr", type=float, default=_DEFAULTS.finetune_lr, help="SGD learning rate (default %(default)s)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wsgraph.zoo.adapt import run_adaptation

    config = AdaptConfig(
        data=args.data,
        source=args.source,
        root=args.root,
        shift=args.shift,
        editors=args.editors,
        hidden_channels=args.hidden_channels,
        depth=args.depth,
        epochs=args.epochs,
        batch_size=args.batch_size,
        images_per_step=args.images_per_step,
        lr=args.lr,
        clip_norm=args.clip_norm,
        finetune_steps=args.finetune_steps,
        finetune_batch=args.finetune_batch,
        finetune_lr=args.finetune_lr,
        seed=args.seed,
        test_size=args.test_size,
        activation=args.activation,
    )
    # The result is written after every editor has trained.
    check_writable_folder(args.out, f"--out {args.out}")
    result = run_adaptation(config, args.out)
    print(f"{result['networks']['test']} test members, {args.shift} {args.source} test images:")
    print(f"{'method':<32} {'shifted acc':>11} {'source acc':>10} {'MFLOPs/net':>10}")
    for name, method in result["methods"].items():
        print(
            f"{name:<32} {method['shifted_accuracy']['mean']:>11.4f} {method['source_accuracy']['mean']:>10.4f} "
            f"{method['flops_per_network'] / 1e6:>10.2f}"
        )
    print(f"results in {args.out}")
    return 0
