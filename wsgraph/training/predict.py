"""A trained model's predictions for networks it has not seen: checkpoint files, folders of
them, or a split of a dataset (``wsgraph predict``).

Files are read as :func:`wsgraph.load_network_file` reads them (no code runs unless
``trust_pickles``), each network checked against what the model takes before it runs.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.core.activations import UNKNOWN
from wsgraph.core.convert_cnn import holds_cnn
from wsgraph.core.convert_mlp import mlp_to_graph
from wsgraph.core.extract_mlp import NotAnMLPError, from_module
from wsgraph.core.graph import graph_specs
from wsgraph.core.network_files import CHECKPOINT_SUFFIXES, load_network_file
from wsgraph.datasets.checkpoint_folders import READ_ERRORS, SkippedCheckpoint, find_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.describe import is_dataset_root
from wsgraph.datasets.store import read_meta
from wsgraph.errors import one_line, shown_path
from wsgraph.io import atomic_write
from wsgraph.training.data import resolve_targets
from wsgraph.training.registry import ModelSpec
from wsgraph.training.run import load_trained_model
from wsgraph.training.run_checkpoints import BEST, OUTPUT_NAMES, load_run_checkpoint
from wsgraph.training.trained import NormalizedModel

DEFAULT_BATCH_SIZE = 256
# The flat MLPs read a fixed-length vector: one architecture exactly.
_FIXED_ARCHITECTURE_MODELS = ("mlp", "mlp-aug")


@dataclass
class Predictions:
    """What :func:`predict` returns.

    Attributes:
        task: ``"classify"`` or ``"regress"``.
        output_names: the classes, or the regression targets, in output order.
        networks: one name per network: the file's path, or ``ROOT[split][index]``.
        outputs: ``[n, C]`` class probabilities, or ``[n, T]`` predicted targets.
        true: the networks' labels or targets where a dataset records them (``None`` for files).
        skipped: the files that could not be read (with ``skip_bad``), and why.
    """

    task: str
    output_names: list[str]
    networks: list[str] = field(default_factory=list)
    outputs: Tensor = field(default_factory=lambda: torch.empty(0, 0))
    true: list[Tensor | None] = field(default_factory=list)
    skipped: list[SkippedCheckpoint] = field(default_factory=list)

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
                row = [
                    name,
                    self.output_names[best],
                    f"{float(output[best]):.4f}",
                    *(f"{p:.4f}" for p in output.tolist()),
                ]
                if known:
                    row.append("" if true is None or int(true) < 0 else self.output_names[int(true)])
            else:
                row = [name, *(f"{value:.6g}" for value in output.tolist())]
                if known:
                    row += (
                        [""] * len(self.output_names) if true is None else [f"{v:.6g}" for v in true.view(-1).tolist()]
                    )
            rows.append(row)
        return rows

    def accuracy(self) -> float | None:
        """Percent of the labelled networks whose class is predicted (``None``: no labels, or regression)."""
        if self.task != "classify":
            return None
        pairs = [(int(out.argmax()), int(true)) for out, true in zip(self.outputs, self.true) if true is not None]
        pairs = [(guess, label) for guess, label in pairs if label >= 0]
        return 100.0 * sum(guess == label for guess, label in pairs) / len(pairs) if pairs else None


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
        targets: the run's ``--targets`` (regression columns by number or name; ``None``: all).
    """

    model: NormalizedModel
    output_names: list[str]
    batch_size: int
    targets: tuple[int | str, ...] | None = None


def load_predictor(path: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """The trained model of a run's checkpoint (or run folder, for its ``best.pt``)."""
    path = trained_model_file(path)
    model = load_trained_model(path, device)
    checkpoint = load_run_checkpoint(path)
    config = checkpoint.get("config")
    batch_size = config.get("batch_size") if isinstance(config, dict) else None
    batch_size = batch_size if isinstance(batch_size, int) and batch_size > 0 else DEFAULT_BATCH_SIZE
    targets = config.get("targets") if isinstance(config, dict) else None
    targets = tuple(targets) if isinstance(targets, list) else None
    return Predictor(model, output_names(checkpoint, model.spec), batch_size, targets)


def output_names(checkpoint: dict[str, Any], spec: ModelSpec) -> list[str]:
    """The class or target names of a trained model's outputs: as the checkpoint stores them, else as its
    training data's ``meta.json`` records them (when that is still there), else numbers."""
    stored = checkpoint.get(OUTPUT_NAMES)
    if isinstance(stored, list) and len(stored) == spec.out_features and all(isinstance(n, str) for n in stored):
        return stored
    config = checkpoint.get("config")
    data = config.get("data") if isinstance(config, dict) else None
    meta: dict[str, Any] = {}
    if isinstance(data, str) and is_dataset_root(data):
        try:
            meta = read_meta(data)
        except (OSError, ValueError):
            meta = {}
    if spec.task == "classify":
        names = meta.get("class_names")
        return (
            [str(n) for n in names] if isinstance(names, list) and len(names) == spec.out_features else _numbers(spec)
        )
    targets = config.get("targets") if isinstance(config, dict) else None
    names = meta.get("target_names")
    if targets is None and isinstance(names, list) and len(names) == spec.out_features:
        return [str(n) for n in names]
    return _numbers(spec)


def _numbers(spec: ModelSpec) -> list[str]:
    return [str(c) if spec.task == "classify" else f"y{c}" for c in range(spec.out_features)]


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
            (their ``split`` networks).
        split: which split of a dataset root.
        batch_size: networks per forward pass; by default the run's. Models that normalise
            over the whole mini-batch (``ng-gnn`` with ``norm=minibatch``) predict for each
            network in the company of its batch, so only the run's batch size and a
            dataset's order reproduce its evaluation exactly.
        trust_pickles: see :func:`wsgraph.load_network_file`; runs any code the files contain.
        activation: the networks' hidden activation, for files that do not record it
            (state_dicts); only models with probe features run the networks.
        skip_bad: predict for the files that can be read and report the rest.

    Raises:
        ValueError: naming the input that cannot be read (without ``skip_bad``) or whose
            networks the model does not take, or a model that edits networks.
    """
    model, names = predictor.model, predictor.output_names
    batch_size = predictor.batch_size if batch_size is None else batch_size
    spec: ModelSpec = model.spec
    if spec.task not in ("classify", "regress"):
        raise ValueError(
            f"the model edits networks (--task {spec.task}); predict is for classification and regression models "
            "(edit networks with load_trained_model in Python)"
        )
    result = Predictions(spec.task, names)
    outputs: list[Tensor] = []
    device = next(iter(model.buffers())).device
    with torch.no_grad():
        for source_names, graphs, truths in _batches(
            inputs, split, batch_size, trust_pickles, activation, skip_bad, result, predictor.targets
        ):
            for name, graph in zip(source_names, graphs):
                _check_fits(spec, graph, name)
                if spec.probe_features and graph.activation == UNKNOWN:
                    raise ValueError(
                        f"{name}: the file does not record the hidden activation, which the model's probe "
                        "features run the network with; pass --activation (activation= in Python)"
                    )
            output = model(Batch.from_data_list(graphs).to(device)).float().cpu()
            outputs.append(output.softmax(-1) if spec.task == "classify" else output)
            result.networks += source_names
            result.true += truths
    result.outputs = torch.cat(outputs) if outputs else torch.empty(0, spec.out_features)
    return result


def _batches(
    inputs: Sequence[str | os.PathLike],
    split: str,
    batch_size: int,
    trust_pickles: bool,
    activation: str | None,
    skip_bad: bool,
    result: Predictions,
    targets: tuple[int | str, ...] | None,
) -> Iterator[tuple[list[str], list[Data], list[Tensor | None]]]:
    """``(names, graphs, truths)`` of at most ``batch_size`` networks of one input at a time."""
    for given in inputs:
        path = Path(given)
        if is_dataset_root(path):
            dataset = WeightSpaceDataset(path, split=split, log=False)
            truth = _truth_reader(dataset, result, targets)
            for start in range(0, len(dataset), batch_size):
                indices = range(start, min(start + batch_size, len(dataset)))
                graphs = [dataset[i] for i in indices]
                truths = [truth(graph) for graph in graphs]
                for graph in graphs:
                    del graph.y
                yield [f"{given}[{split}][{i}]" for i in indices], graphs, truths
            continue
        files = _files(path, skip_bad, result)
        for start in range(0, len(files), batch_size):
            names, graphs = [], []
            for file in files[start : start + batch_size]:
                shown = str(path) if file == path else str(path / file.relative_to(path))
                try:
                    graphs.append(_graph_of_file(file, trust_pickles, activation))
                except READ_ERRORS as error:
                    if not skip_bad:
                        raise
                    reason = one_line(error).removeprefix(f"{shown_path(file)}: ")
                    result.skipped.append(SkippedCheckpoint(shown, reason))
                    continue
                names.append(shown)
            if graphs:
                yield names, graphs, [None] * len(graphs)


def _truth_reader(
    dataset: WeightSpaceDataset, result: Predictions, targets: tuple[int | str, ...] | None
) -> Callable[[Data], Tensor | None]:
    """What a dataset's network is labelled with, in the model's terms: its class, or the targets
    the model predicts (``targets``, the run's ``--targets``); nothing for another kind of label."""
    task = {"classification": "classify", "regression": "regress"}.get(dataset.task or "")
    if task != result.task:
        return lambda graph: None
    if task == "classify":
        return lambda graph: graph.y.view(-1)[0]
    columns = resolve_targets(targets, dataset.meta, Path(dataset.root))

    def chosen(graph: Data) -> Tensor:
        values = graph.y.view(-1)
        values = values if columns is None else values[list(columns)]
        if values.numel() != len(result.output_names):
            raise ValueError(
                f"{dataset.root}: its networks have {values.numel()} targets, "
                f"the model predicts {len(result.output_names)}"
            )
        return values

    return chosen


def _files(path: Path, skip_bad: bool, result: Predictions) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{shown_path(path)}: no such file or folder")
    search = find_checkpoints(path)
    if search.unreadable and not skip_bad:
        first = search.unreadable[0]
        raise ValueError(f"{shown_path(path / first.path)}: {first.reason} (pass --skip-bad to predict for the others)")
    result.skipped += [SkippedCheckpoint(str(path / item.path), item.reason) for item in search.unreadable]
    if not search.files:
        raise ValueError(
            f"{shown_path(path)}: no checkpoint files ({', '.join(sorted(CHECKPOINT_SUFFIXES))}) and no meta.json"
        )
    return search.files


def _graph_of_file(path: Path, trust_pickles: bool, activation: str | None) -> Data:
    content = load_network_file(path, trust_pickles=trust_pickles)
    if holds_cnn(content):
        raise NotAnMLPError(
            f"{shown_path(path)}: a CNN; convert CNN checkpoints into a dataset first (wsgraph convert) "
            "and predict for the dataset"
        )
    try:
        # The graph does not record a constant the module adds to its output; it must not stop the reading.
        offset = from_module(content).output_offset if isinstance(content, torch.nn.Module) else None
        return mlp_to_graph(content, activation=activation, output_offset=0.0 if offset is None else offset.value)
    except NotAnMLPError as error:
        raise NotAnMLPError(f"{shown_path(path)}: {error}") from error


def _check_fits(spec: ModelSpec, graph: Data, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` if the model cannot take ``graph``'s network."""
    network = graph_specs(graph)[0]
    if (spec.kernel_grid is not None) != network.is_conv:
        trained_on, given = ("CNNs", "an MLP") if spec.kernel_grid is not None else ("MLPs", "a CNN")
        raise ValueError(f"{name}: {given}; the {spec.name} model was trained on {trained_on}")
    num_weight_layers, in_dim, out_dim = spec.signature
    if spec.name in _FIXED_ARCHITECTURE_MODELS and spec.widths is not None:
        fits, wanted = network.widths == tuple(spec.widths), "-".join(map(str, spec.widths))
    else:
        fits = (network.num_weight_layers, network.in_dim, network.out_dim) == spec.signature
        wanted = "-".join([str(in_dim), *["*"] * (num_weight_layers - 1), str(out_dim)])
    if not fits:
        widths = "-".join(map(str, network.widths))
        raise ValueError(f"{name}: a network {widths}; the {spec.name} model takes networks {wanted}")


def write_predictions_csv(predictions: Predictions, path: str | os.PathLike | None) -> str:
    """The predictions as CSV text, also written atomically to ``path`` when given."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(predictions.rows())
    text = buffer.getvalue()
    if path is not None:
        atomic_write(path, lambda handle: handle.write(text.encode()))
    return text
