"""``wsgraph fit-inrs``: fit one SIREN per image of a source and write a weight-space dataset.

Examples::

    wsgraph fit-inrs --source digits --out data/digits-inrs
    wsgraph fit-inrs --source mnist --root data/mnist --out data/mnist-inrs
    wsgraph fit-inrs --source mnist --root data/mnist --out data/mnist-small --limit 100
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from wsgraph.cli.arguments import path_argument, seed
from wsgraph.datasets.store import SPLITS
from wsgraph.inrs.siren import INIT_SCHEMES, SirenRecipe, psnr_to_mse
from wsgraph.io import check_writable_folder
from wsgraph.runtime import resolve_device

DEFAULT_EARLY_STOP_PSNR = 40.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fit-inrs",
        help="fit one SIREN per image (MNIST, Fashion-MNIST, CIFAR-10, digits, ImageFolder) into a dataset",
        description=(
            "Fit one SIREN per image with the DWSNets recipe, as their released code made the published INR sets "
            "(2-32-32-C, omega_0 30, the released INR class's initialisation, Adam lr 5e-4, at most 1000 steps, "
            "each INR stopped once it reaches 40 dB PSNR, coordinates in [-1, 1]^2, intensities in [0, 1], output "
            "offset +0.5), many at once, and write shards plus meta.json to --out. A rerun with the same settings "
            "resumes."
        ),
    )
    parser.add_argument(
        "--source",
        required=True,
        help="digits, mnist, fashion-mnist, cifar10, imagefolder, or torchvision:<Name> (e.g. torchvision:CIFAR10)",
    )
    parser.add_argument("--root", type=path_argument, help="folder of the source's files (not needed for digits)")
    parser.add_argument("--out", required=True, type=path_argument, help="dataset folder to create or resume")
    parser.add_argument(
        "--split", action="append", choices=("train", "val", "test"), help="fit only this split (repeatable)"
    )
    parser.add_argument("--limit", type=int, help="fit only the first N images of each split")
    parser.add_argument("--val-size", type=int, help="validation images carved from train (default: per source)")
    parser.add_argument("--dilated", action="store_true", help="also store 3x3-dilated images for INR editing")
    parser.add_argument(
        "--shared-init",
        action="store_true",
        help="start every SIREN from one shared initialisation (the published recipe draws one per image)",
    )
    parser.add_argument(
        "--permute-hidden",
        action="store_true",
        help="shuffle each fitted network's hidden neurons at random (same functions; seeded)",
    )
    parser.add_argument("--download", action="store_true", help="let a torchvision source download its files")
    add_fitting_arguments(parser, SirenRecipe())
    recipe = parser.add_argument_group("early stopping")
    recipe.add_argument(
        "--early-stop-psnr",
        type=float,
        metavar="DB",
        help=f"stop each INR once its PSNR reaches DB; it keeps those parameters (default {DEFAULT_EARLY_STOP_PSNR:g})",
    )
    recipe.add_argument(
        "--no-early-stop", action="store_true", help="always take --steps steps (the recipe stops at 40 dB)"
    )
    parser.set_defaults(func=run)


def add_fitting_arguments(parser: argparse.ArgumentParser, defaults: SirenRecipe) -> argparse._ArgumentGroup:
    """The flags shared by ``fit-inrs`` and ``fit-sines``: recipe, sharding, seed and device; returns the
    recipe's group, for a command's own recipe flags."""
    group = parser.add_argument_group("recipe")
    group.add_argument("--steps", type=int, default=defaults.steps, help=f"Adam steps (default {defaults.steps})")
    group.add_argument("--lr", type=float, default=defaults.lr, help=f"Adam learning rate (default {defaults.lr:g})")
    group.add_argument(
        "--hidden", type=int, default=defaults.widths[1], help=f"hidden width (default {defaults.widths[1]})"
    )
    group.add_argument(
        "--layers",
        type=int,
        default=defaults.spec.num_weight_layers,
        help=f"weight layers, the last one linear (default {defaults.spec.num_weight_layers})",
    )
    group.add_argument(
        "--init",
        choices=INIT_SCHEMES,
        default=defaults.init,
        help=(
            "dwsnets: the released INR class (every sine layer U(+-sqrt(6/fan_in)/omega_0), zero biases); "
            f"siren: the SIREN paper's first layer, U(+-1/fan_in) (default {defaults.init})"
        ),
    )
    group.add_argument("--omega", type=float, default=defaults.omega_0, help=f"omega_0 (default {defaults.omega_0:g})")
    group.add_argument(
        "--offset",
        type=float,
        default=defaults.output_offset,
        help=f"output offset (default {defaults.output_offset:g})",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--shard-size", type=int, default=2048, help="networks per shard (default 2048)")
    output.add_argument(
        "--batch-size",
        type=int,
        help="networks fitted at once per thread (default: as many as hold 2**15 sample points, e.g. pixels, on CPU; "
        "2**22 on CUDA)",
    )
    output.add_argument("--seed", type=seed, default=0, help="seed of the initialisation and splits (default 0)")
    output.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    return group


# (least, most) of each count; most is past any useful setting, where the fit would fill the memory
# (--layers 1000000 asked for 8 GB) or fail deep in torch with a message that names no flag.
_COUNT_RANGES = {
    "steps": (0, 10**9),
    "hidden": (1, 65_536),
    "layers": (2, 1_000),
    "shard_size": (1, 10**7),
    "batch_size": (1, 2**31 - 1),
    "limit": (0, None),
    "val_size": (0, None),
    "count": (1, 10**7),
    "points": (1, 10**6),
}
# (least, most, whether least itself is allowed) of each number; 1e6 is far past any useful
# omega_0 or output offset (the recipes' are 30 and 0 or 0.5), and float32 holds the rest.
_NUMBER_RANGES = {
    "lr": (0.0, 3.4028234663852886e38, False),
    "omega": (0.0, 1e6, False),
    "offset": (-1e6, 1e6, True),
    "weight_decay": (0.0, 3.4028234663852886e38, True),
    "early_stop_loss": (0.0, 3.4028234663852886e38, True),
    "early_stop_psnr": (-math.inf, math.inf, True),
}


def check_arguments(args: argparse.Namespace) -> None:
    """Fail early, with the flag's name, on counts and numbers out of range."""
    for name, (least, most) in _COUNT_RANGES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        flag = f"--{name.replace('_', '-')}"
        if most is None and value < least:
            raise ValueError(f"{flag} must be at least {least}, got {value}")
        if most is not None and not least <= value <= most:
            raise ValueError(f"{flag} must be in {least}..{most:,}, got {value}")
    for name, (least, most, least_allowed) in _NUMBER_RANGES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        above_least = value >= least if least_allowed else value > least
        if not (math.isfinite(value) and above_least and value <= most):
            bound = "[" if least_allowed else "("
            shown = f"a finite number in {bound}{least:g}, {most:g}]" if math.isfinite(least) else "a finite number"
            raise ValueError(f"--{name.replace('_', '-')} must be {shown}, got {value}")


def recipe_from_arguments(args: argparse.Namespace, in_dim: int, out_dim: int, base: SirenRecipe) -> SirenRecipe:
    """The recipe the flags describe (optimiser constants not exposed as flags come from ``base``)."""
    return SirenRecipe(
        widths=(in_dim, *([args.hidden] * (args.layers - 1)), out_dim),
        omega_0=args.omega,
        output_offset=args.offset,
        steps=args.steps,
        lr=args.lr,
        betas=base.betas,
        eps=base.eps,
        weight_decay=getattr(args, "weight_decay", base.weight_decay),
        early_stop_loss=getattr(args, "early_stop_loss", base.early_stop_loss),
        init=getattr(args, "init", base.init),
    )


def run(args: argparse.Namespace) -> int:
    from wsgraph.datasets.build import SUMMARY_FILE
    from wsgraph.datasets.images import load_images
    from wsgraph.inrs.image_inrs import fit_image_inrs, format_psnr_summary

    check_arguments(args)
    check_writable_folder(args.out, f"--out {args.out}")
    device = resolve_device(args.device)
    images = load_images(args.source, args.root, val_size=args.val_size, seed=args.seed, download=args.download)
    if args.split:
        images = images.select(torch.isin(images.split, torch.tensor([SPLITS.index(s) for s in args.split])))
    if args.limit is not None:
        images = images.head_per_split(args.limit)
    if len(images) == 0:
        # Name the flags that chose nothing; the source itself may also be empty.
        chosen = [f"--split {','.join(args.split)}"] if args.split else []
        chosen += [f"--limit {args.limit}"] if args.limit == 0 else []
        raise ValueError("no images to fit" + (f" ({', '.join(chosen)})" if chosen else ""))
    if args.no_early_stop and args.early_stop_psnr is not None:
        raise ValueError("--early-stop-psnr and --no-early-stop contradict each other; give one")
    if not args.no_early_stop:
        psnr = DEFAULT_EARLY_STOP_PSNR if args.early_stop_psnr is None else args.early_stop_psnr
        args.early_stop_loss = psnr_to_mse(psnr)
    recipe = recipe_from_arguments(args, 2, images.channels, SirenRecipe())
    summary = fit_image_inrs(
        images,
        args.out,
        recipe,
        seed=args.seed,
        shard_size=args.shard_size,
        batch_size=args.batch_size,
        device=device,
        dilated=args.dilated,
        limit_per_split=args.limit,
        progress=not args.no_progress,
        shared_init=args.shared_init,
        permute_hidden=args.permute_hidden,
    )
    print(
        f"{len(images)} INRs of {args.source} in {args.out} ({recipe.spec}, {recipe.activation}, offset {recipe.output_offset:+g})"
    )
    print(format_psnr_summary(summary))
    print(f"summary: {Path(args.out) / SUMMARY_FILE}, preview: {Path(args.out) / summary['files']['preview']}")
    return 0
