"""``wsgraph predict MODEL INPUT...``: a trained model's predictions for checkpoint files,
folders of them, or a dataset's split, as CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wsgraph.cli.arguments import add_trained_model_arguments, path_argument
from wsgraph.cli.info import TRUST_PICKLES_HELP
from wsgraph.errors import shown_path
from wsgraph.io import check_writable_folder
from wsgraph.runtime import resolve_device
from wsgraph.training.metrics import METRICS_CSV, RESULT_JSON
from wsgraph.training.plots import EDITS_PNG, LEARNING_CURVES_PNG
from wsgraph.training.predict import load_predictor, predict, write_predictions_csv
from wsgraph.training.regression import PREDICTED_VS_TRUE_PNG, PREDICTIONS_CSV
from wsgraph.training.run_checkpoints import BEST, LAST


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="classify or regress networks with a trained model: checkpoint files, folders or a dataset",
        description="Run the model a 'wsgraph train' run saved (its best.pt, or the run folder) on networks: "
        "checkpoint files (.pt, .pth, .ckpt, .safetensors, read as 'wsgraph info' reads them), folders of them "
        "(searched recursively), or dataset folders (their --split networks, with the true labels beside the "
        "predictions). Writes one CSV row per network: the predicted class, its probability and every class's, "
        "or the predicted targets. Each network is checked against what the model takes before it runs; the first that does not fit stops the command, and --out is written only at the end.",
    )
    add_trained_model_arguments(
        parser,
        model_help="a run's best.pt (or last.pt), or the run folder",
        verb="predict for",
        activation_note="; only models with probe features run the networks",
        trust_pickles_help=TRUST_PICKLES_HELP,
    )
    parser.add_argument("--out", metavar="FILE.csv", type=path_argument, help="write the CSV here (default: print it)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = None if args.out is None else Path(args.out)
    if out is not None and out.is_dir():
        raise IsADirectoryError(f"--out {shown_path(out)} is a folder; give a file name")
    # A dangling symlink is something there too: writing would replace the link.
    if out is not None and (out.exists() or out.is_symlink()) and not args.force:
        raise FileExistsError(f"--out {shown_path(out)} exists; pass --force to replace it")
    if out is not None:
        _refuse_overwriting_what_is_read(out, args.model, args.inputs)
    if out is not None:
        check_writable_folder(out.parent, f"--out {shown_path(out)}")
    predictor = load_predictor(args.model, resolve_device(args.device))
    predictions = predict(
        predictor,
        args.inputs,
        split=args.split,
        batch_size=args.batch_size,
        trust_pickles=args.trust_pickles,
        activation=args.activation,
        skip_bad=args.skip_bad,
    )
    text = write_predictions_csv(predictions, out)
    if out is None:
        sys.stdout.write(text)
    for item in predictions.skipped:
        print(f"  skipped {item.path}: {item.reason}", file=sys.stderr)
    for note in predictions.notes:
        print(f"  note: {note}", file=sys.stderr)
    accuracy = predictions.accuracy()
    summary = f"wsgraph predict: {len(predictions.networks)} networks"
    summary += f", {len(predictions.skipped)} skipped" if predictions.skipped else ""
    summary += f", accuracy {accuracy:.2f}% against the dataset's labels" if accuracy is not None else ""
    summary += f"; wrote {shown_path(out)}" if out is not None else ""
    print(summary, file=sys.stderr)
    return 0


def _refuse_overwriting_what_is_read(out: Path, model: str, inputs: list[str]) -> None:
    """Raise a ``ValueError`` if writing ``out`` would replace the model, an input file, a file
    inside an input folder (a dataset's ``meta.json`` or shards), or a file a training run wrote
    beside the model (``last.pt``, ``result.json``, ...), with ``--force`` too. Paths are compared
    where the write lands: the file is renamed over the entry ``out`` names, so a symlink ``out`` is
    replaced itself, not the file it points to."""
    lands = _entry(out)
    named = f"--out {shown_path(out)}"
    model_path = Path(model)
    for given, what in [(model, "the model"), *((text, "an input") for text in inputs)]:
        given_path = Path(given)
        if lands in (_entry(given_path), given_path.resolve()):
            raise ValueError(f"{named}: is {what} ({shown_path(given)}); write the predictions elsewhere")
        if what == "an input" and given_path.is_dir() and lands.is_relative_to(given_path.resolve()) and _taken(lands):
            raise ValueError(
                f"{named}: would replace a file in {what} folder {shown_path(given)}; write the predictions elsewhere"
            )
    run_folder = model_path.resolve() if model_path.is_dir() else _entry(model_path).parent
    if lands.parent == run_folder and lands.name in _RUN_FILES and _taken(lands):
        raise ValueError(f"{named}: would replace the run's {lands.name}; write the predictions elsewhere")


# What ``wsgraph train`` writes into a run folder.
_RUN_FILES = frozenset(
    {LAST, BEST, METRICS_CSV, RESULT_JSON, LEARNING_CURVES_PNG, PREDICTIONS_CSV, PREDICTED_VS_TRUE_PNG, EDITS_PNG}
)


def _entry(path: Path) -> Path:
    """Where ``path``'s directory entry lies: its folder resolved, its last part as given."""
    absolute = path.absolute()
    return absolute.parent.resolve() / absolute.name


def _taken(path: Path) -> bool:
    return path.exists() or path.is_symlink()
