"""A trained model's predictions for networks it has not seen: checkpoint files, folders of
them, or a split of a dataset (``wsgraph predict``).

Files are read as ``wsgraph convert`` reads them (:func:`~wsgraph.datasets.checkpoint_folders.read_network`:
no code runs unless ``trust_pickles``), and each network is checked against what the model
takes before it runs. A dataset's labels are matched to the model's outputs by name.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.datasets.checkpoint_folders import SkippedCheckpoint
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.describe import is_dataset_root
from wsgraph.datasets.store import read_meta
from wsgraph.errors import shown_path
from wsgraph.io import atomic_write
from wsgraph.training.data import output_names
from wsgraph.training.network_inputs import InputReport, NetworkReader, check_fits
from wsgraph.training.registry import ModelSpec
from wsgraph.training.run import trained_model_from_checkpoint
from wsgraph.training.run_checkpoints import BEST, IMAGE_RENDERING, OUTPUT_NAMES, load_run_checkpoint
from wsgraph.training.trained import NormalizedModel

DEFAULT_BATCH_SIZE = 256
_TASKS = {"classification": "classify", "regression": "regress"}


@dataclass
class Predictions:
    """What :func:`predict` returns.

    Attributes:
        task: ``"classify"`` or ``"regress"``.
        output_names: the classes, or the regression targets, in output order.
        networks: one name per network: the file's path, or ``ROOT[split][index]``.
        outputs: ``[n, C]`` class probabilities, or ``[n, T]`` predicted targets.
        true: per network, the class name or the ``[T]`` targets a dataset records for it
            (``None`` for files and for labels that cannot be compared).
        skipped: the files that could not be read (with ``skip_bad``), and why.
        notes: what the caller should know about the truth (a dataset's other classes or targets).
    """

    task: str
    output_names: list[str]
    networks: list[str] = field(default_factory=list)
    outputs: Tensor = field(default_factory=lambda: torch.empty(0, 0))
    true: list[str | Tensor | None] = field(default_factory=list)
    skipped: list[SkippedCheckpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[list[str]]:
        """The CSV rows, header first: per network its prediction (the class and its probability,
        then every class's probability; or every target), and the truth where known."""
        known = any(value is not None for value in self.true)
        if self.task == "classify":
            header = ["network", "predicted", "probability", *(f"p_{name}" for name in self.output_names)]
            header += ["true"] if known else []
        else:
            header = ["network", *(f"predicted_{name}" for name in self.output_names)]
            header += [f"true_{name}" for name in self.output_names] if known else []
        rows = [header]
        for name, output, true in zip(self.networks, self.outputs, self.true):
            if self.task == "classify":
                best = int(output.argmax())
                probabilities = [f"{p:.4f}" for p in output.tolist()]
                row = [name, self.output_names[best], probabilities[best], *probabilities]
                row += ["" if true is None else str(true)] if known else []
            else:
                row = [name, *(f"{value:.6g}" for value in output.tolist())]
                if known:
                    row += [""] * len(self.output_names) if true is None else [f"{v:.6g}" for v in true.tolist()]
            rows.append(row)
        return rows

    def accuracy(self) -> float | None:
        """Percent of the networks labelled with one of the model's classes whose class it predicts
        (``None``: none labelled so, or regression)."""
        if self.task != "classify":
            return None
        pairs = [
            (self.output_names[int(output.argmax())], true)
            for output, true in zip(self.outputs, self.true)
            if true is not None and true in self.output_names
        ]
        return 100.0 * sum(guess == true for guess, true in pairs) / len(pairs) if pairs else None


def trained_model_file(path: str | os.PathLike) -> Path:
    """``path``, or the ``best.pt`` of the run folder ``path``."""
    path = Path(path)
    if path.is_dir():
        if not (path / BEST).is_file():
            raise FileNotFoundError(f"{shown_path(path)}: a folder without {BEST}; give a run folder or its {BEST}")
        return path / BEST
    return path


@dataclass
class Predictor:
    """A run's trained model, ready to predict.

    Attributes:
        model: the model, taking raw networks (:func:`~wsgraph.training.load_trained_model`).
        output_names: its classes or regression targets, in output order.
        batch_size: the run's batch size, with which its evaluation batched the networks.
        image_rendering: for an editing model, how its training INRs show their images
            (``{"image_shape": [H, W, C], "output_offset": float}``): as the checkpoint records
            it, or for an older checkpoint as its training data's ``meta.json`` does (where that
            is still found); ``None`` when neither tells.
    """

    model: NormalizedModel
    output_names: list[str]
    batch_size: int
    image_rendering: dict[str, Any] | None = None


def load_predictor(path: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """The trained model of a run's checkpoint (or run folder, for its ``best.pt``)."""
    path = trained_model_file(path)
    return predictor_from_checkpoint(load_run_checkpoint(path), path, device)


def predictor_from_checkpoint(
    checkpoint: dict[str, Any], path: str | os.PathLike, device: str | torch.device = "cpu"
) -> Predictor:
    """:func:`load_predictor` for a checkpoint already read from ``path``."""
    model = trained_model_from_checkpoint(checkpoint, path, device)
    config = checkpoint.get("config")
    config = config if isinstance(config, dict) else {}
    batch_size = config.get("batch_size")
    batch_size = batch_size if isinstance(batch_size, int) and batch_size > 0 else DEFAULT_BATCH_SIZE
    names = _stored_output_names(checkpoint, config, model.spec)
    return Predictor(model, names, batch_size, _stored_image_rendering(checkpoint, config, model.spec))


def _stored_image_rendering(
    checkpoint: dict[str, Any], config: dict[str, Any], spec: ModelSpec
) -> dict[str, Any] | None:
    if spec.task != "dilate":
        return None
    stored = checkpoint.get(IMAGE_RENDERING)
    if isinstance(stored, dict):
        return stored
    meta = _training_meta(config)
    return {key: meta[key] for key in ("image_shape", "output_offset") if key in meta} or None


def _training_meta(config: dict[str, Any]) -> dict[str, Any]:
    """The ``meta.json`` of the data a run was trained on, where its recorded path still leads to it."""
    data = config.get("data")
    if not isinstance(data, str) or not is_dataset_root(data):
        return {}
    try:
        return read_meta(data)
    except (OSError, ValueError):
        return {}


def _stored_output_names(checkpoint: dict[str, Any], config: dict[str, Any], spec: ModelSpec) -> list[str]:
    """The names of a trained model's outputs: as the checkpoint stores them; for an older one, as
    its training data's ``meta.json`` records them (where that is still found), else numbers."""
    stored = checkpoint.get(OUTPUT_NAMES)
    if isinstance(stored, list) and len(stored) == spec.out_features and all(isinstance(n, str) for n in stored):
        return stored
    meta = _training_meta(config)
    targets = config.get("targets")
    targets = targets if isinstance(targets, list) and all(isinstance(t, (int, str)) for t in targets) else None
    if targets is not None and len(targets) != spec.out_features:
        targets = None
    return output_names(spec.task, meta, spec.out_features, targets)


def predict(
    predictor: Predictor,
    inputs: Sequence[str | os.PathLike],
    *,
    split: str = "test",
    batch_size: int | None = None,
    trust_pickles: bool = False,
    activation: str | None = None,
    skip_bad: bool = False,
) -> Predictions:
    """The predictions of a trained model (:func:`load_predictor`) for ``inputs``.

    Args:
        predictor: a classification or regression model.
        inputs: checkpoint files, folders of them (searched recursively), or dataset roots
            (their ``split`` networks, with their labels as the truth where the dataset's
            classes or targets bear the model's names).
        split: which split of a dataset root.
        batch_size: networks per forward pass; by default the run's. Models that normalise
            over the whole mini-batch (``ng-gnn`` with ``norm=minibatch``) predict for each
            network in the company of its batch, so only the run's batch size and a
            dataset's order reproduce its evaluation exactly.
        trust_pickles: see :func:`wsgraph.load_network_file`; runs any code the files contain.
        activation: the hidden activation of networks whose files do not record it
            (state_dicts); only models with probe features run the networks.
        skip_bad: predict for the files that can be read and report the rest.

    Raises:
        ValueError: naming the input that cannot be read (without ``skip_bad``), holds no
            networks, or whose networks the model does not take; or a model that edits networks.
    """
    model, spec = predictor.model, predictor.model.spec
    if spec.task not in ("classify", "regress"):
        raise ValueError(
            f"the model edits networks (--task {spec.task}); predict is for classification and regression models "
            "(edit networks with wsgraph edit)"
        )
    _refuse_overlapping_inputs([str(given) for given in inputs])
    result = Predictions(spec.task, predictor.output_names)
    reader = NetworkReader.for_model(
        spec,
        predictor.batch_size,
        split=split,
        batch_size=batch_size,
        trust_pickles=trust_pickles,
        activation=activation,
        skip_bad=skip_bad,
        truth=lambda dataset, shown, report: _truth_reader(dataset, shown, report, result),
    )
    report = InputReport(result.skipped, result.notes)
    outputs: list[Tensor] = []
    device = next(iter(model.buffers())).device
    with torch.no_grad():
        for batch in reader.batches(inputs, report):
            for name, graph in zip(batch.names, batch.graphs):
                check_fits(spec, graph, name)
            output = model(Batch.from_data_list(batch.graphs).to(device)).float().cpu()
            finite = output.isfinite().all(dim=-1)
            for row in (~finite).nonzero().flatten().tolist():
                # Weights near the float limit overflow inside the model: a NaN is not a prediction.
                reason = "the model's output for it is not finite (NaN or infinite; are its weights huge?)"
                if not skip_bad:
                    raise ValueError(f"{batch.names[row]}: {reason} (pass --skip-bad to predict for the others)")
                result.skipped.append(SkippedCheckpoint(batch.names[row], reason))
            output = output[finite]
            outputs.append(output.softmax(-1) if spec.task == "classify" else output)
            result.networks += [name for name, keep in zip(batch.names, finite.tolist()) if keep]
            result.true += [true for true, keep in zip(batch.truths, finite.tolist()) if keep]
    if not result.networks:
        first = result.skipped[0]
        raise ValueError(
            f"none of the {len(result.skipped)} networks could be predicted for (first: {first.path}: {first.reason})"
        )
    result.outputs = torch.cat(outputs)
    foreign = [true for true in result.true if isinstance(true, str) and true not in result.output_names]
    if foreign:
        result.notes.append(
            f"{len(foreign)} networks are labelled with classes the model does not predict (first: {foreign[0]}); "
            "they are left out of the accuracy"
        )
    return result


def _refuse_overlapping_inputs(inputs: list[str]) -> None:
    """Raise a ``ValueError`` naming an input given twice (also as another path to it) or lying inside an
    input folder: its networks would be predicted for twice, and counted twice in the accuracy."""
    seen: dict[Path, str] = {}
    for given in inputs:
        key = Path(given).resolve()
        if key in seen:
            also = f" (also as {seen[key]})" if seen[key] != given else ""
            raise ValueError(f"{given}: given twice as an input{also}")
        seen[key] = given
    for key, given in seen.items():
        folder = next(
            (other for path, other in seen.items() if path != key and path.is_dir() and key.is_relative_to(path)), None
        )
        if folder is not None:
            raise ValueError(f"{given}: inside the input folder {folder}, whose networks it would repeat")


def _truth_reader(
    dataset: WeightSpaceDataset, shown: str, report: InputReport, result: Predictions
) -> Callable[[Data], Any]:
    """What a dataset's network is labelled with, in the model's terms: its class name, or the
    targets the model predicts, found by name (a note in ``result`` where they are not all
    there); nothing for another kind of label."""
    task = _TASKS.get(dataset.task or "")
    if task != result.task:
        return lambda graph: None
    if task == "classify":
        names = dataset.meta.get("class_names")
        names = [str(name) for name in names] if isinstance(names, list) else None

        def class_name(graph: Data) -> str | None:
            label = int(graph.y.view(-1)[0])
            if label < 0:
                return None
            return names[label] if names is not None and label < len(names) else str(label)

        return class_name
    columns = _target_columns(dataset, shown, report, result)
    return (lambda graph: None) if columns is None else (lambda graph: graph.y.view(-1)[columns].float())


def _target_columns(
    dataset: WeightSpaceDataset, shown: str, report: InputReport, result: Predictions
) -> list[int] | None:
    """The columns of the dataset's targets that bear the model's target names (``None``: not all do)."""
    width = dataset[0].y.numel()
    names = output_names("regress", dataset.meta, width)
    missing = [name for name in result.output_names if name not in names]
    if missing:
        report.notes.append(
            f"{shown}: has no target named {missing[0]} (its targets: {', '.join(names)}); no truth is shown for it"
        )
        return None
    return [names.index(name) for name in result.output_names]


def write_predictions_csv(predictions: Predictions, path: str | os.PathLike | None) -> str:
    """The predictions as CSV text, also written atomically to ``path`` when given."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(predictions.rows())
    text = buffer.getvalue()
    if path is not None:
        atomic_write(path, lambda handle: handle.write(text.encode()))
    return text
