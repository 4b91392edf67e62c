"""``wsgraph edit MODEL INPUT... --out FOLDER``: networks edited by a trained editing model
(``--task dilate``), one saved network per input network."""

from __future__ import annotations

import argparse
import sys

from wsgraph.cli.arguments import add_trained_model_arguments, int_at_least, path_argument
from wsgraph.cli.info import TRUST_PICKLES_HELP
from wsgraph.errors import shown_path
from wsgraph.runtime import resolve_device
from wsgraph.training.edit import EDITS_CSV, EDITS_PNG, NETWORKS_FOLDER, edit_networks
from wsgraph.training.predict import load_predictor


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "edit",
        help="edit networks with a trained editing model (--task dilate): checkpoint files, folders or a dataset",
        description="Run the model a 'wsgraph train --task dilate' run saved (its best.pt, or the run folder) on "
        "networks: checkpoint files (read as 'wsgraph info' reads them), folders of them (searched recursively), "
        f"or dataset folders (their --split networks). Writes into --out: {NETWORKS_FOLDER}/ with one saved "
        "nn.Sequential per network (named after its file, or DATASET/SPLIT/INDEX.pt; read back with "
        f"wsgraph.load_network_file), {EDITS_CSV} (per network its file and, for a dataset with dilated images, "
        f"the image MSE of the edit and of the network as given) and {EDITS_PNG} (the first networks' images "
        "as given, edited and, for a dataset, dilated). The edits keep the inputs' convention: an output offset the INRs' recipe adds "
        "(+0.5 for wsgraph's image INRs) is not part of the saved modules. --out is written only at the end.",
    )
    add_trained_model_arguments(
        parser,
        model_help="a dilate run's best.pt (or last.pt), or the run folder",
        verb="edit",
        activation_note="",
        trust_pickles_help=TRUST_PICKLES_HELP,
    )
    parser.add_argument("--out", metavar="FOLDER", required=True, type=path_argument, help="the folder to write")
    parser.add_argument("--force", action="store_true", help="replace --out if an earlier wsgraph edit wrote it")
    parser.add_argument(
        "--preview",
        type=int_at_least(0, "zero or more"),
        default=8,
        metavar="N",
        help=f"how many networks {EDITS_PNG} shows (default: 8; 0: none)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    predictor = load_predictor(args.model, resolve_device(args.device))
    edits = edit_networks(
        predictor,
        args.inputs,
        args.out,
        split=args.split,
        batch_size=args.batch_size,
        trust_pickles=args.trust_pickles,
        activation=args.activation,
        skip_bad=args.skip_bad,
        force=args.force,
        preview=args.preview,
    )
    for item in edits.skipped:
        print(f"  skipped {item.path}: {item.reason}", file=sys.stderr)
    for note in edits.notes:
        print(f"  note: {note}", file=sys.stderr)
    count = len(edits.networks)
    summary = f"wsgraph edit: {count} network{'' if count == 1 else 's'} edited"
    summary += f", {len(edits.skipped)} skipped" if edits.skipped else ""
    errors = edits.mean_image_mse()
    if errors is not None:
        summary += f"; image MSE {errors[0]:.4g} against the dataset's dilated images (as given: {errors[1]:.4g})"
    print(f"{summary}; wrote {shown_path(edits.out)}", file=sys.stderr)
    return 0
