"""Reading the networks a trained model is applied to (``wsgraph predict`` and ``wsgraph edit``):
checkpoint files, folders of them, or a split of a dataset, in batches.

Files are read as ``wsgraph convert`` reads them (:func:`~wsgraph.datasets.checkpoint_folders.read_network`:
no code runs unless ``trust_pickles``), and :func:`check_fits` tells, naming the network,
whether the model takes it before it runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from torch_geometric.data import Data

from wsgraph.core.activations import UNKNOWN, canonical_activation
from wsgraph.core.convert_cnn import cnn_to_graph
from wsgraph.core.convert_mlp import mlp_to_graph
from wsgraph.core.extract_cnn import ConvChain
from wsgraph.core.graph import graph_specs
from wsgraph.core.network_files import CHECKPOINT_SUFFIXES
from wsgraph.datasets.activation_file import RecordedActivations, check_activation_flag
from wsgraph.datasets.checkpoint_folders import (
    READ_ERRORS,
    SkippedCheckpoint,
    check_traced_activation,
    find_checkpoints,
    read_network,
)
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.describe import is_dataset_root
from wsgraph.errors import one_line, shown_path
from wsgraph.training.registry import FLAT_MODELS, ModelSpec

# Per-network attributes of a dataset that are labels, not part of the network.
_LABELS = ("y", "dilated")


@dataclass
class InputReport:
    """What reading the inputs found besides the networks: the files it could not read
    (with ``skip_bad``), and what the caller should know about the labels."""

    skipped: list[SkippedCheckpoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class NetworkBatch:
    """Up to a batch size of networks from one input.

    Attributes:
        names: how each network is named to the user: the file's path, or ``ROOT[split][index]``.
        keys: a relative path per network, unique among the networks of all inputs, for
            writing something per network (``folder/sub/net.pt``, ``dataset/test/17``).
        graphs: the networks, without a dataset's labels.
        truths: per network, what the truth reader made of its dataset labels (``None`` for files).
        source: the dataset they come from (``None``: checkpoint files).
    """

    names: list[str]
    keys: list[PurePosixPath]
    graphs: list[Data]
    truths: list[Any]
    source: Path | None = None


# Given a dataset, how it is named and the report, a function from one of its networks
# (labels still attached) to its truth.
TruthReader = Callable[[WeightSpaceDataset, str, InputReport], Callable[[Data], Any]]


def no_truth(dataset: WeightSpaceDataset, shown: str, report: InputReport) -> Callable[[Data], Any]:
    return lambda graph: None


@dataclass
class NetworkReader:
    """How the inputs are read.

    Attributes:
        split: which split of a dataset.
        batch_size: networks per batch.
        trust_pickles: see :func:`wsgraph.load_network_file`.
        activation: the hidden activation of networks whose files do not record it.
        skip_bad: list unreadable files in the report rather than stop at the first.
        kernel_grid: a CNN model's kernel grid, into which files' kernels are padded
            (``None``: the model takes MLPs).
        truth: what a dataset's labels mean to the caller.
        exclude: a folder the searches of input folders leave out (the command's output).
    """

    split: str
    batch_size: int
    trust_pickles: bool = False
    activation: str | None = None
    skip_bad: bool = False
    kernel_grid: tuple[int, int] | None = None
    truth: TruthReader = no_truth
    exclude: Path | None = None
    # Each file's entry in the nearest activations.json (a model zoo's), for files that record none.
    recorded: RecordedActivations = field(default_factory=RecordedActivations)
    # Every file read so far (where it really is -> how it was named): one reached twice, through a symlink
    # or two overlapping inputs, would count twice.
    read_files: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def for_model(
        cls,
        spec: ModelSpec,
        run_batch_size: int,
        *,
        split: str,
        batch_size: int | None,
        trust_pickles: bool,
        activation: str | None,
        skip_bad: bool,
        truth: TruthReader = no_truth,
        exclude: Path | None = None,
    ) -> NetworkReader:
        """The reader of inputs for the model ``spec`` describes: its kernel grid, the run's batch
        size unless ``batch_size`` is given, ``activation`` by its canonical name."""
        activation = None if activation is None else canonical_activation(activation)
        size = batch_size or run_batch_size
        return cls(split, size, trust_pickles, activation, skip_bad, spec.kernel_grid, truth, exclude)

    def batches(self, inputs: Sequence[str | os.PathLike], report: InputReport) -> Iterator[NetworkBatch]:
        """The networks of ``inputs``, at most ``batch_size`` of one input at a time."""
        for given in inputs:
            path = Path(given)
            if is_dataset_root(path):
                yield from self._dataset_batches(path, str(given), report)
            else:
                yield from self._file_batches(path, report)

    def _dataset_batches(self, root: Path, shown: str, report: InputReport) -> Iterator[NetworkBatch]:
        dataset = WeightSpaceDataset(root, split=self.split, log=False)
        if len(dataset) == 0:
            raise ValueError(f"{shown}: no networks in its {self.split} split (choose another --split)")
        truth = self.truth(dataset, shown, report)
        for start in range(0, len(dataset), self.batch_size):
            indices = range(start, min(start + self.batch_size, len(dataset)))
            graphs = [dataset[i] for i in indices]
            truths = [truth(graph) for graph in graphs]
            for graph in graphs:
                for label in _LABELS:
                    if label in graph:
                        del graph[label]
            names = [f"{shown}[{self.split}][{i}]" for i in indices]
            keys = [PurePosixPath(root.resolve().name, self.split, str(i)) for i in indices]
            yield NetworkBatch(names, keys, graphs, truths, root)

    def _file_batches(self, path: Path, report: InputReport) -> Iterator[NetworkBatch]:
        files = find_network_files(path, self.skip_bad, report, self.exclude)
        for file in files:
            shown = str(path) if file == path else str(path / file.relative_to(path))
            earlier = self.read_files.setdefault(file.resolve(), shown)
            if earlier != shown:
                raise ValueError(f"{shown}: the same file as {earlier}, which is read already; give each network once")
        # Read (and checked) before any network runs; --activation must agree with what they record.
        entries = {file: self.recorded.lookup(file) for file in files}
        if self.activation is not None:
            check_activation_flag(self.activation, entries)
        for start in range(0, len(files), self.batch_size):
            names, keys, graphs = [], [], []
            for file in files[start : start + self.batch_size]:
                relative = PurePosixPath(file.name if file == path else file.relative_to(path).as_posix())
                shown = str(path) if file == path else str(path / file.relative_to(path))
                try:
                    graphs.append(self._graph_of_file(file, shown, entries[file]))
                except READ_ERRORS as error:
                    if not self.skip_bad:
                        raise
                    reason = one_line(error).removeprefix(f"{shown_path(file)}: ")
                    report.skipped.append(SkippedCheckpoint(shown, reason))
                    continue
                names.append(shown)
                keys.append(relative if file == path else PurePosixPath(path.resolve().name) / relative)
            if graphs:
                yield NetworkBatch(names, keys, graphs, [None] * len(graphs))

    def _graph_of_file(self, path: Path, shown: str, entry: tuple[str, Path] | None) -> Data:
        chain = read_network(path, trust_pickles=self.trust_pickles)
        if entry is not None:
            try:
                check_traced_activation(chain, entry[0], f"{entry[0]} as {entry[1]} says")
            except ValueError as error:
                raise ValueError(f"{shown}: {error}") from None
        # What a module records stands; then a zoo's activations.json; --activation is for files that record none.
        recorded = entry[0] if entry is not None else self.activation
        activation = chain.activation if chain.activation != UNKNOWN else recorded
        # A graph does not record what a module adds to its output: take the networks as they are.
        offset = 0.0 if chain.output_offset is None else chain.output_offset.value
        if not isinstance(chain, ConvChain):
            return mlp_to_graph(chain, activation=activation, output_offset=offset)
        if self.kernel_grid is None:
            raise ValueError(f"{shown}: a CNN; the model was trained on MLPs")
        try:
            return cnn_to_graph(chain, activation=activation, kernel_grid=self.kernel_grid, output_offset=offset)
        except ValueError as error:
            raise ValueError(f"{shown}: {error}, the model's") from None


def find_network_files(path: Path, skip_bad: bool, report: InputReport, exclude: Path | None = None) -> list[Path]:
    """The checkpoint files an input names: the file itself, or a folder's, searched recursively
    (hidden names and the folder ``exclude`` left out).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a folder of datasets, a folder without checkpoint files, or (without
            ``skip_bad``) one holding a file that cannot be read.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{shown_path(path)}: no such file or folder")
    datasets = sorted(entry.name for entry in os.scandir(path) if is_dataset_root(entry.path))
    if datasets:
        listed = ", ".join(datasets[:3]) + (f" and {len(datasets) - 3} more" if len(datasets) > 3 else "")
        raise ValueError(f"{shown_path(path)}: a folder of datasets ({listed}); give them one by one")
    search = find_checkpoints(path, exclude)
    if search.unreadable and not skip_bad:
        first = search.unreadable[0]
        raise ValueError(f"{shown_path(path / first.path)}: {first.reason} (pass --skip-bad to go on with the others)")
    report.skipped += [SkippedCheckpoint(str(path / item.path), item.reason) for item in search.unreadable]
    if not search.files:
        raise ValueError(
            f"{shown_path(path)}: no checkpoint files ({', '.join(sorted(CHECKPOINT_SUFFIXES))}) and no meta.json"
        )
    return search.files


def check_fits(spec: ModelSpec, graph: Data, name: str) -> None:
    """Raise a ``ValueError`` naming ``name`` if the model cannot take ``graph``'s network."""
    network = graph_specs(graph)[0]
    if (spec.kernel_grid is not None) != network.is_conv:
        trained_on, given = ("CNNs", "an MLP") if spec.kernel_grid is not None else ("MLPs", "a CNN")
        raise ValueError(f"{name}: {given}; the {spec.name} model was trained on {trained_on}")
    num_weight_layers, in_dim, out_dim = spec.signature
    # The flat MLPs read a fixed-length vector: one architecture exactly.
    if spec.name in FLAT_MODELS and spec.widths is not None:
        fits, wanted = network.widths == tuple(spec.widths), "-".join(map(str, spec.widths))
    else:
        fits = (network.num_weight_layers, network.in_dim, network.out_dim) == spec.signature
        wanted = "-".join([str(in_dim), *["*"] * (num_weight_layers - 1), str(out_dim)])
    if not fits:
        widths = "-".join(map(str, network.widths))
        raise ValueError(f"{name}: a network {widths}; the {spec.name} model takes networks {wanted}")
    for layer, (kernel, window) in enumerate(zip(network.kernel_sizes or (), spec.kernel_sizes or ()), start=1):
        if kernel[0] > window[0] or kernel[1] > window[1]:
            raise ValueError(
                f"{name}: layer {layer}'s kernel is {kernel[0]}x{kernel[1]}; the {spec.name} model reads "
                f"{window[0]}x{window[1]} there"
            )
    if spec.probe_features and graph.activation == UNKNOWN:
        raise ValueError(
            f"{name}: the file does not record the hidden activation, which the model's probe features "
            "run the network with; pass --activation (activation= in Python)"
        )
