"""``wsgraph convert SRC OUT``: a folder of checkpoints becomes a :class:`WeightSpaceDataset` root."""

from __future__ import annotations

import argparse
import math

from wsgraph.cli.arguments import activation_name, int_at_least, path_argument
from wsgraph.cli.info import TRUST_PICKLES_HELP
from wsgraph.datasets.checkpoint_folders import (
    DEFAULT_SHARD_SIZE,
    ConversionReport,
    check_split_ratios,
    compile_label_regex,
    convert_checkpoints,
)
from wsgraph.datasets.conv_geometry import GEOMETRY_FILE, GEOMETRY_KEYS, GeometryValue, parse_geometry_text
from wsgraph.errors import shown_path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn a folder of checkpoints into a weight-space dataset",
        description="Read every checkpoint under SRC (.pt, .pth, .ckpt state_dicts or saved modules, .safetensors; "
        "nested folders, sorted order) and write the MLPs and CNNs (convolutions, global average pooling, linear "
        "layers; a 4-D weight is a convolution) as a WeightSpaceDataset root at OUT, one root per kind and "
        "signature (M, d_0, d_M) under OUT with an index.json when there are several. Networks without a label "
        "get y = -1 (classes) or NaN (regression targets). Symlinked folders are followed, each folder read once. "
        "A file or folder that cannot be read stops the conversion (exit 1, nothing written) unless --skip-bad "
        "is given.",
    )
    parser.add_argument("src", metavar="SRC", type=path_argument, help="folder of checkpoint files")
    parser.add_argument("out", metavar="OUT", type=path_argument, help="dataset folder to create")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        "--labels", metavar="FILE.csv", type=path_argument, help="CSV of path,label rows, paths relative to SRC"
    )
    labels.add_argument(
        "--splits",
        metavar="FILE.json",
        type=path_argument,
        help='splits and labels to keep exactly: {"train": {"path": [...], "label": [...]}, "val": ..., "test": ...} '
        "(the DWSNets INR sets' splits file); each path is matched to the file under SRC that is its longest "
        "trailing part; files it does not name are left out",
    )
    labels.add_argument(
        "--label-regex",
        metavar="REGEX",
        type=_label_regex,
        help="regular expression with one group, searched in each path relative to SRC, e.g. 'class_(\\d+)/'",
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="convert the readable files, list the others (OUT/skipped.json)"
    )
    parser.add_argument(
        "--split-ratios",
        metavar="TRAIN,VAL,TEST",
        type=_split_ratios,
        help="fractions of networks in train, val and test (default: 0.8,0.1,0.1; not with --splits)",
    )
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of the random split (default: 0)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it holds an earlier wsgraph dataset")
    parser.add_argument(
        "--activation",
        metavar="NAME",
        type=activation_name,
        help="hidden activation to record for every file, e.g. relu or 'sine(30.0)' (default: each file's entry "
        "in SRC/activations.json, which 'wsgraph zoo' writes, else traced from a saved module, 'unknown' for a "
        "state_dict)",
    )
    parser.add_argument(
        "--shard-size",
        type=_positive_int,
        default=DEFAULT_SHARD_SIZE,
        help=f"most networks per shard (default: {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument("--trust-pickles", action="store_true", help=TRUST_PICKLES_HELP)
    parser.add_argument(
        "--output-offset",
        metavar="X",
        type=_finite_float,
        help="a constant the networks add to their output, recorded for rendering (the DWSNets INRs: 0.5); a "
        "saved module that adds another constant (none: 0) is refused",
    )
    geometry = parser.add_argument_group(
        "CNN geometry",
        "how the convolutions slide, which state_dicts do not record: N or HxW for every convolution, or one "
        f"comma-separated value per convolution (2,2,1). Read from SRC/{GEOMETRY_FILE} where it exists "
        '(e.g. {"stride": 2, "padding": 1}), the flags winning; stored in meta.json so that graph_to_cnn '
        "rebuilds the networks. A saved module's own geometry must agree.",
    )
    for key, example in (("stride", "2"), ("padding", "1"), ("dilation", "1")):
        geometry.add_argument(f"--conv-{key}", metavar=example, type=_geometry(key), help=f"the convolutions' {key}")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.splits is not None and args.split_ratios is not None:
        raise ValueError("--split-ratios and --splits both set the splits; give one")
    report = convert_checkpoints(
        args.src,
        args.out,
        labels=args.labels,
        label_regex=args.label_regex,
        skip_bad=args.skip_bad,
        split_ratios=args.split_ratios,
        seed=args.seed,
        force=args.force,
        activation=args.activation,
        shard_size=args.shard_size,
        progress=not args.quiet,
        splits=args.splits,
        output_offset=args.output_offset,
        trust_pickles=args.trust_pickles,
        conv_geometry={key: value for key in GEOMETRY_KEYS if (value := getattr(args, f"conv_{key}")) is not None},
    )
    print(format_report(report))
    return 0


def format_report(report: ConversionReport) -> str:
    """The summary ``wsgraph convert`` prints."""
    rate = report.num_files / report.seconds if report.seconds > 0 else float("inf")
    lines = [
        f"converted {report.num_networks} of {report.num_files} checkpoints in {report.seconds:.1f} s "
        f"({rate:.0f} files/s) -> {report.out}"
    ]
    for root in report.roots:
        counts = ", ".join(f"{name} {count}" for name, count in root.counts.items())
        architectures = ", ".join(f"{name} ({count})" for name, count in root.architectures.items())
        line = f"  {root.path}: {counts}; architectures {architectures}"
        if root.widened:
            widened = ", ".join(
                f"{count} network{'' if count == 1 else 's'} with {dtypes} layers"
                for dtypes, count in root.widened.items()
            )
            line += f"; stored as {root.dtype}, widened exactly ({widened})"
        lines.append(line)
    if len(report.roots) > 1:
        lines.append(f"  {len(report.roots)} signatures: see {report.out / 'index.json'}")
    if report.repeated:
        count = len(report.repeated)
        lines.append(f"read once {count} folder{'' if count == 1 else 's'} reached again through symlinks:")
        lines.extend(f"  {shown_path(path)} is {shown_path(first)}" for path, first in report.repeated)
    if report.left_out:
        lines.append(f"left out {len(report.left_out)} checkpoint files the splits file does not name")
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} (listed in {report.out / 'skipped.json'}):")
        lines.extend(f"  {shown_path(item.path)}: {item.reason}" for item in report.skipped)
    return "\n".join(lines)


def _geometry(key: str):
    def parse(text: str) -> GeometryValue:
        try:
            return parse_geometry_text(text, key)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"--conv-{key}: ")) from None

    return parse


def _label_regex(text: str) -> str:
    try:
        compile_label_regex(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _split_ratios(text: str) -> tuple[float, float, float]:
    try:
        return check_split_ratios([float(part) for part in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected three non-negative fractions summing to 1, e.g. 0.8,0.1,0.1; got {text!r}"
        ) from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


_positive_int = int_at_least(1, "positive")
_non_negative_int = int_at_least(0, "non-negative")
