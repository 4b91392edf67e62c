"""A PyG dataset over the networks that ``wsgraph fit-inrs`` or ``wsgraph convert`` wrote."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import InMemoryDataset
from torch_geometric.data.separate import separate
from torch_geometric.transforms import Compose
from tqdm.auto import tqdm

from wsgraph.core.activations import UNKNOWN
from wsgraph.core.convert_cnn import pad_kernel
from wsgraph.core.graph import CONV_KEYS, WeightSpaceGraph, assemble
from wsgraph.core.network_files import load_tensors_only
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.store import (
    ACTIVATION_CODE,
    ACTIVATION_NAMES,
    CONV_GEOMETRY,
    MAX_CLASSES,
    NUM_SHARDS,
    SHARD_DIR,
    SPLIT_SIZES,
    SPLITS,
    Shard,
    missing_shards,
    read_meta,
    read_shard,
    shard_number,
    shard_paths,
)
from wsgraph.datasets.transforms import LayerStatistics, NormalizeWeights
from wsgraph.io import atomic_write

# Bump when the processed files change meaning, or the checks made while processing
# tighten: old caches are then rebuilt (and their shards checked).
PROCESSING_VERSION = 2
# Derived from `layer_widths`, so kept once per architecture instead of once per network.
STRUCTURE_KEYS = ("edge_index", "node_layer", "node_index", "edge_layer")
# What `assemble` builds that is stored per network.
ASSEMBLED_KEYS = ("x", "edge_attr", "layer_widths", "has_bias", "y")
# Per-network fields the dataset adds to every graph.
SOURCE_KEY, SPLIT_KEY = "source_id", "split"
# Shard extras with a meaning of their own rather than a per-graph attribute.
HAS_BIAS_EXTRA = "has_bias"
# Networks per `assemble` call while processing, to bound the temporary structure tensors.
EDGES_PER_CHUNK = 4_000_000
# Records torch_geometric keeps next to a processed cache: which arguments built it.
PROCESSING_RECORDS = ("pre_transform", "pre_filter")
_PROCESSED_NAME = re.compile(r"^(train|val|test|summary)-[0-9a-f]{16}\.pt$")

Storage = tuple[dict[str, Tensor], dict[str, Tensor]]


class WeightSpaceDataset(InMemoryDataset):
    r"""The networks of a weight-space dataset root, as :class:`~wsgraph.core.graph.WeightSpaceGraph`\ s.

    Opens what ``wsgraph fit-inrs`` (INRs fitted to images or sine waves) or
    ``wsgraph convert`` (a folder of checkpoints) wrote: ``root/meta.json`` and
    ``root/shards/shard-*.pt`` (see :mod:`wsgraph.datasets.store`), which PyG treats as the
    raw files. Processing builds the collated storage with :func:`wsgraph.core.graph.assemble`,
    one vectorised call per shard, and caches it in ``root/processed`` under names that
    fingerprint the raw files, so changed or added shards are processed again.

    Every graph carries ``y`` (class ``[1]`` or regression targets ``[1, k]``; ``-1`` or
    NaN where a converted network had no label), ``source_id`` (the image number within
    its official split, or the checkpoint number), ``split`` (0 train, 1 val, 2 test) and
    any per-network extras of the shards (e.g. ``psnr``). With ``split=None`` the
    networks come in the order train, val, test.

    Per-layer normalisation statistics are computed on the train split only
    (:attr:`statistics`), whichever split is opened, and offered as the transform
    :attr:`normalization`; ``normalize=True`` appends it to ``transform``, so that
    augmentations act on the original weights and the result is standardised, the
    order of the published INR recipe.

    Args:
        root (str): the dataset root.
        split (str, optional): :obj:`"train"`, :obj:`"val"`, :obj:`"test"`, or
            :obj:`None` for all networks. (default: :obj:`None`)
        transform (callable, optional): applied to every graph on access, e.g. the
            augmentations of :mod:`wsgraph.datasets.transforms`. (default: :obj:`None`)
        pre_transform (callable, optional): applied before caching, to each shard as one
            :class:`~torch_geometric.data.Batch`; it may change values, not the graph
            structure. (default: :obj:`None`)
        force_reload (bool, optional): process the raw files again. (default: :obj:`False`)
        normalize (bool, optional): standardise weights and biases per layer with the
            train statistics, after ``transform``. (default: :obj:`False`)
        log (bool, optional): print when processing. (default: :obj:`True`)

    **STATS** (datasets made with the default recipes):

    .. list-table::
        :widths: 20 10 10 10 10 10
        :header-rows: 1

        * - Name
          - #graphs
          - #nodes
          - #edges
          - #features
          - #classes
        * - MNIST INRs (2-32-32-1)
          - 70,000
          - 67
          - 1,120
          - 1
          - 10
        * - Fashion-MNIST INRs (2-32-32-1)
          - 70,000
          - 67
          - 1,120
          - 1
          - 10
        * - CIFAR-10 INRs (2-32-32-3)
          - 60,000
          - 69
          - 1,184
          - 1
          - 10
        * - scikit-learn digits INRs (2-32-32-1)
          - 1,797
          - 67
          - 1,120
          - 1
          - 10
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = None,
        transform: Callable | None = None,
        pre_transform: Callable | None = None,
        force_reload: bool = False,
        normalize: bool = False,
        log: bool = True,
    ) -> None:
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} or None")
        root = os.fspath(Path(root).expanduser())
        self.split = split
        self.meta: dict[str, Any] = read_meta(root)
        _check_shards_present(root, self.meta)
        self._fingerprint = _fingerprint(root)
        super().__init__(root, transform, pre_transform, log=log, force_reload=force_reload)
        self._structures: dict[tuple[tuple[int, ...], torch.device], dict[str, Tensor]] = {}
        self._load_processed()
        if normalize:
            self.transform = self.normalization if transform is None else Compose([transform, self.normalization])

    @property
    def raw_dir(self) -> str:
        return self.root

    @property
    def raw_file_names(self) -> list[str]:
        return ["meta.json", *(f"{path.parent.name}/{path.name}" for path in shard_paths(self.root))]

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{name}-{self._fingerprint}.pt" for name in (*SPLITS, "summary")]

    def _process(self) -> None:
        # Replaces torch_geometric's Dataset._process, which unpickles the two records below
        # with weights_only=False: a dataset folder from someone else could run code when opened.
        processed = Path(self.processed_dir)
        records = {name: _describe(getattr(self, name)) for name in PROCESSING_RECORDS}
        for name, description in records.items():
            path = processed / f"{name}.pt"
            if not self.force_reload and path.exists() and _read_processed(str(path)) != description:
                warnings.warn(
                    f"{self.processed_dir} was built with another `{name}`; pass force_reload=True to rebuild it",
                    stacklevel=3,
                )
        if not self.force_reload and all(Path(path).exists() for path in self.processed_paths):
            return
        # Said once the cache is built, not before: a dataset that fails to build then
        # leaves its one error line alone. A terminal sees a progress bar meanwhile.
        announce = self._announces()
        started = time.perf_counter()
        processed.mkdir(parents=True, exist_ok=True)
        self.process()
        for name, description in records.items():
            atomic_write(processed / f"{name}.pt", lambda handle, text=description: torch.save(text, handle))
        if announce:
            seconds = time.perf_counter() - started
            print(f"Built the dataset cache {self.processed_dir} ({seconds:.3g} s)", file=sys.stderr)

    def _announces(self) -> bool:
        """Whether building the cache is reported on stderr (never inside a test run)."""
        return self.log and "PYTEST_CURRENT_TEST" not in os.environ

    def process(self) -> None:
        paths = shard_paths(self.root)
        if not paths:
            raise ValueError(f"{self.root}: no shards in {Path(self.root) / 'shards'}")
        pieces: dict[str, list[Storage]] = {name: [] for name in SPLITS}
        accumulator: _StatisticsAccumulator | None = None
        architectures: set[tuple[int, ...]] = set()
        first: tuple[Path, Shard] | None = None
        sizes = dict.fromkeys(SPLITS, 0)
        names = self.meta.get(ACTIVATION_NAMES)
        code_counts = torch.zeros(len(names or ()), dtype=torch.long)
        # leave=False: the bar is erased when the build ends, and when it fails.
        progress = tqdm(
            paths,
            desc="Building the dataset cache",
            unit="shard",
            leave=False,
            disable=not (self._announces() and sys.stderr.isatty()),
        )
        with progress:
            for path in progress:
                shard = read_shard(path)
                if first is None:
                    first = (path, shard)
                    accumulator = _StatisticsAccumulator(len(shard.weights))
                _check_compatible(first, (path, shard))
                _check_values(path, shard, self.meta)
                for code, name in enumerate(SPLITS):
                    sizes[name] += int((shard.split == code).sum())
                if names:
                    code_counts += torch.bincount(shard.extras[ACTIVATION_CODE].long(), minlength=len(names))
                architectures.add(shard.widths)
                accumulator.add(shard, shard.split == SPLITS.index("train"))
                for code, name in enumerate(SPLITS):
                    selected = (shard.split == code).nonzero().view(-1)
                    pieces[name].extend(self._storages(shard, selected))
        counted = self.meta.get("activations")
        activation_counts = dict(zip(names or (), code_counts.tolist()))
        if names and counted is not None and counted != activation_counts:
            # Names reordered or counts edited: every network would run with another network's activation.
            raise ValueError(
                f"{Path(self.root) / 'meta.json'}: 'activations' counts {counted}, but the shards' activation codes "
                f"with 'activation_names' {names} give {activation_counts}; meta.json or a shard was edited"
            )
        recorded = self.meta.get(SPLIT_SIZES)
        if recorded is not None and recorded != sizes:
            name = next(name for name in SPLITS if recorded[name] != sizes[name])
            raise ValueError(
                f"{self.root}: the shards hold {sizes[name]} {name} networks, meta.json records {recorded[name]}; "
                "a shard was replaced or damaged"
            )
        template = next((piece for name in SPLITS for piece in pieces[name]), None)
        if template is None:
            raise ValueError(f"{self.root}: the shards hold no networks")
        recorded_widths = self.meta.get("widths")
        if recorded_widths is not None and architectures != {tuple(recorded_widths)}:
            # meta.json's widths name the data in every table and figure: they must be the shards'.
            held = ", ".join("-".join(map(str, widths)) for widths in sorted(architectures))
            raise ValueError(
                f"{Path(self.root) / 'meta.json'}: records widths {'-'.join(map(str, recorded_widths))}, "
                f"but the shards hold {held}; meta.json or a shard was replaced or edited"
            )
        for name, path in zip(SPLITS, self.processed_paths):
            storage = _concatenate(pieces[name]) if pieces[name] else _empty_like(template)
            _save(storage, path)
        summary = {"architectures": torch.tensor(sorted(architectures))}
        statistics = accumulator.statistics()
        if statistics is not None:
            summary.update(statistics.to_dict())
        atomic_write(self.processed_paths[-1], lambda handle: torch.save(summary, handle))
        self._remove_stale_processed_files()

    def _storages(self, shard: Shard, selected: Tensor) -> list[Storage]:
        """The collated storage of the ``selected`` networks of a shard, in pieces of bounded size."""
        num_edges = sum(w.size(1) * w.size(2) for w in shard.weights)
        chunk = max(1, EDGES_PER_CHUNK // num_edges)
        has_bias = shard.extras.get(HAS_BIAS_EXTRA)
        is_cnn = self.meta.get("weight_space") == "cnn"
        keys = (*ASSEMBLED_KEYS, *CONV_KEYS) if is_cnn else ASSEMBLED_KEYS
        pieces = []
        for start in range(0, selected.numel(), chunk):
            rows = selected[start : start + chunk]
            if is_cnn:
                grid, geometry = tuple(self.meta["kernel_grid"]), self.meta.get(CONV_GEOMETRY)
                weights, conv = _cnn_dense_weights(shard, rows, grid, geometry)
            else:
                weights, conv = [w[rows].transpose(1, 2).unsqueeze(-1) for w in shard.weights], None
            batch = assemble(
                weights,
                [b[rows].unsqueeze(-1) for b in shard.biases],
                has_bias=None if has_bias is None else has_bias[rows],
                y=shard.y[rows],
                conv=conv,
            )
            values = batch if self.pre_transform is None else self._pre_transformed(batch)
            storage = {key: values[key] for key in keys}
            slices = {key: batch._slice_dict[key] for key in keys}
            per_graph = torch.arange(rows.numel() + 1)
            per_network = {SOURCE_KEY: shard.index[rows], SPLIT_KEY: shard.split[rows].long()}
            per_network.update({k: v[rows] for k, v in shard.extras.items() if k != HAS_BIAS_EXTRA})
            if ACTIVATION_CODE in per_network:
                per_network[ACTIVATION_CODE] = per_network[ACTIVATION_CODE].long()
            for key, value in per_network.items():
                storage[key], slices[key] = value, per_graph
            pieces.append((storage, slices))
        return pieces

    def _pre_transformed(self, batch: Any) -> Any:
        out = self.pre_transform(batch)
        for key in ("x", "edge_attr", *STRUCTURE_KEYS):
            if out[key].shape != batch[key].shape or (key in STRUCTURE_KEYS and not torch.equal(out[key], batch[key])):
                raise ValueError(f"pre_transform {self.pre_transform!r} changed the graph structure ('{key}')")
        return out

    def _remove_stale_processed_files(self) -> None:
        current = set(self.processed_file_names)
        for path in Path(self.processed_dir).iterdir():
            if _PROCESSED_NAME.match(path.name) and path.name not in current:
                path.unlink(missing_ok=True)

    def _load_processed(self) -> None:
        names = SPLITS if self.split is None else (self.split,)
        storages = [_read_processed(self.processed_paths[SPLITS.index(name)]) for name in names]
        storage, slices = storages[0] if len(storages) == 1 else _concatenate(storages)
        self.data = WeightSpaceGraph.from_dict(storage)
        self.slices = slices
        self._compact_slices = slices
        self._bounds = {key: value.numpy() for key, value in slices.items()}
        self._activation = self.meta.get("activation", UNKNOWN)
        self._activation_names: list[str] | None = self.meta.get(ACTIVATION_NAMES)
        summary = _read_processed(self.processed_paths[-1])
        self._architectures = [WeightSpaceSpec(tuple(row)) for row in summary["architectures"].tolist()]
        statistics = {key: value for key, value in summary.items() if key != "architectures"}
        self._statistics = LayerStatistics(**statistics) if statistics else None
        self._normalization: NormalizeWeights | None = None

    def get(self, idx: int) -> WeightSpaceGraph:
        if self.slices is self._compact_slices:
            # Every stored key is concatenated along dim 0, so plain slicing separates a graph.
            store = self._data
            values = {key: store[key][bounds[idx] : bounds[idx + 1]] for key, bounds in self._bounds.items()}
            values.update(self._structure(tuple(values["layer_widths"][0].tolist()), values["x"].device))
            values["activation"] = self._activation_of(values.pop(ACTIVATION_CODE, None))
            return WeightSpaceGraph.from_dict(values)
        # Storage re-collated from whole graphs, e.g. by `InMemoryDataset.copy`.
        graph = separate(cls=WeightSpaceGraph, batch=self._data, idx=idx, slice_dict=self.slices, decrement=False)
        if ACTIVATION_CODE in graph:
            graph.activation = self._activation_of(graph[ACTIVATION_CODE])
            del graph[ACTIVATION_CODE]
        return graph

    def _activation_of(self, code: Tensor | None) -> str:
        """A network's hidden activation: its own in a root of several (its code), else the root's."""
        return self._activation if code is None else self._activation_names[int(code)]

    @property
    def activations(self) -> list[str]:
        """Each network's hidden activation, in dataset order (``"unknown"`` where none is recorded)."""
        rows = list(self.indices())
        if self._activation_names is not None and ACTIVATION_CODE in self._data:
            codes = self._data[ACTIVATION_CODE][torch.as_tensor(rows, dtype=torch.long)]
            return [self._activation_names[code] for code in codes.tolist()]
        stored = getattr(self._data, "activation", None)
        if isinstance(stored, list):  # storage re-collated from whole graphs (`copy()`): one name per graph
            return [stored[row] for row in rows]
        return [self._activation] * len(rows)

    def _structure(self, widths: tuple[int, ...], device: torch.device) -> dict[str, Tensor]:
        key = (widths, device)
        if key not in self._structures:
            self._structures[key] = WeightSpaceSpec(widths).index_tensors(device)
        return self._structures[key]

    @property
    def statistics(self) -> LayerStatistics:
        """Mean and standard deviation of the weights and biases of each layer, over the train split."""
        if self._statistics is None:
            raise ValueError(f"{self.root}: no networks in the train split, so no normalisation statistics")
        return self._statistics

    @property
    def normalization(self) -> NormalizeWeights:
        """The transform that standardises each layer with :attr:`statistics` (it has an exact ``inverse``)."""
        if self._normalization is None:
            self._normalization = NormalizeWeights(self.statistics)
        return self._normalization

    @property
    def task(self) -> str | None:
        """``"classification"``, ``"regression"``, or ``None`` for unlabeled networks."""
        return self.meta.get("task")

    @property
    def num_classes(self) -> int:
        """Classes for classification, targets per network for regression, else 0."""
        y = self._data.y
        if self.task == "classification":
            if "num_classes" in self.meta:
                return int(self.meta["num_classes"])
            return int(y.max()) + 1 if y.numel() else 0
        if self.task == "regression":
            return 1 if y.dim() == 1 else y.size(-1)
        return 0

    @property
    def architectures(self) -> list[WeightSpaceSpec]:
        """Every architecture in the dataset root (all splits), in increasing order of widths."""
        return list(self._architectures)

    @property
    def signature(self) -> tuple[int, int, int]:
        """``(M, d_0, d_M)``, shared by every network of the dataset."""
        return self._architectures[0].signature

    @property
    def widths(self) -> tuple[int, ...]:
        """The layer widths of the dataset's networks.

        Raises:
            ValueError: if the networks differ in hidden widths (see :attr:`architectures`).
        """
        if len(self._architectures) > 1:
            names = ", ".join(str(spec) for spec in self._architectures)
            raise ValueError(f"{self.root}: networks of several architectures ({names}); see .architectures")
        return self._architectures[0].widths

    def __repr__(self) -> str:
        split = "" if self.split is None else f", split={self.split!r}"
        return f"{self.__class__.__name__}({len(self)}{split})"


class _StatisticsAccumulator:
    """Running per-layer sums, in float64, of the weights and biases of selected networks."""

    def __init__(self, num_weight_layers: int) -> None:
        self.sums = torch.zeros(4, num_weight_layers, dtype=torch.float64)
        self.counts = torch.zeros(2, num_weight_layers, dtype=torch.float64)

    def add(self, shard: Shard, selected: Tensor) -> None:
        if not bool(selected.any()):
            return
        for layer, (weight, bias) in enumerate(zip(shard.weights, shard.biases)):
            for kind, values in enumerate((weight[selected], bias[selected])):
                self.sums[2 * kind, layer] += values.sum(dtype=torch.float64)
                self.sums[2 * kind + 1, layer] += values.square().sum(dtype=torch.float64)
                self.counts[kind, layer] += values.numel()

    def statistics(self) -> LayerStatistics | None:
        if not bool((self.counts > 0).all()):
            return None
        means = self.sums[0::2] / self.counts
        variances = (self.sums[1::2] / self.counts - means.square()).clamp(min=0)
        stds = variances.sqrt()
        stds = torch.where(stds > 0, stds, torch.ones_like(stds)).float()
        means = means.float()
        return LayerStatistics(weight_mean=means[0], weight_std=stds[0], bias_mean=means[1], bias_std=stds[1])


def _cnn_dense_weights(
    shard: Shard, rows: Tensor, grid: tuple[int, int], geometry: dict[str, list[list[int]]] | None
) -> tuple[list[Tensor], dict[str, Tensor]]:
    """A CNN shard's weights as ``[n, d_{l-1}, d_l, H*W]`` kernel grids, and the graphs' conv metadata rows.

    The convolutions' strides, paddings and dilations are the root's ``geometry``
    (``meta.json``'s ``conv_geometry``, the first pairs for networks with fewer
    convolutions), or unknown (-1) without it: a state_dict does not record them.
    """
    count = rows.numel()
    weights, kernels = [], []
    for weight in shard.weights:
        kernel = weight[rows] if weight.dim() == 5 else weight[rows][..., None, None]
        kernels.append(tuple(kernel.shape[-2:]))
        padded = pad_kernel(kernel, grid)
        weights.append(padded.transpose(1, 2).reshape(count, padded.size(2), padded.size(1), -1))
    num_conv = sum(weight.dim() == 5 for weight in shard.weights)
    linear = len(shard.weights) - num_conv

    def per_layer(key: str, linear_value: int) -> Tensor:
        convolutions = [[-1, -1]] * num_conv if geometry is None else geometry[key][:num_conv]
        if len(convolutions) < num_conv:
            raise ValueError(
                f"meta.json's conv_geometry lists {len(convolutions)} convolutions, a shard has {num_conv}"
            )
        row = torch.tensor(convolutions + [[linear_value] * 2] * linear)
        return row.expand(count, -1, -1).contiguous()

    conv = {
        "conv_layers": torch.full((count,), num_conv),
        "kernel_size": torch.tensor(kernels).expand(count, -1, -1).contiguous(),
        "kernel_grid": torch.tensor([grid]).expand(count, -1).contiguous(),
        "conv_stride": per_layer("stride", 1),
        "conv_padding": per_layer("padding", 0),
        "conv_dilation": per_layer("dilation", 1),
    }
    return weights, conv


def _check_shards_present(root: str, meta: dict[str, Any]) -> None:
    """Refuse a root that lacks shards its ``meta.json`` records, or holds others.

    Datasets written before meta.json recorded its shards are checked for gaps only:
    every writer numbers shards from 0 without gaps, so a gap is a lost shard (a lost
    last shard cannot be seen there).
    """
    present = {path.name for path in shard_paths(root)}
    recorded = meta.get(NUM_SHARDS)
    if recorded is not None:
        expected, source = recorded, f"meta.json records {recorded} shards"
    else:
        numbers = [int(name[6:-3]) for name in present if name[6:-3].isdigit()]
        if not numbers:
            return
        expected, source = max(numbers) + 1, f"the shards are numbered 0..{max(numbers)}"
    missing, count = missing_shards(present, expected, most=1)
    if missing:
        more = f" and {count - 1:,} more" if count > 1 else ""
        raise ValueError(f"{root}: {SHARD_DIR}/{missing[0]}{more} missing ({source}); the dataset is incomplete")
    extra = sorted(name for name in present if (number := shard_number(name)) is None or number >= expected)
    if recorded is not None and extra:
        raise ValueError(f"{root}: {SHARD_DIR}/{extra[0]} is not one of the {expected} shards meta.json records")


def _check_values(path: Path, shard: Shard, meta: dict[str, Any]) -> None:
    """Refuse a shard whose values no model can learn from: split codes out of range,
    NaN or infinite weights, class labels beyond the classes, infinite targets."""
    if len(shard) == 0:
        return
    code = int(shard.split.max())
    if code >= len(SPLITS):
        raise ValueError(f"{path}: split code {code} is not 0 (train), 1 (val) or 2 (test)")
    names = meta.get(ACTIVATION_NAMES)
    codes = shard.extras.get(ACTIVATION_CODE)
    if (codes is None) != (names is None):
        held = "numbers its networks' activations" if names is None else "does not number its networks' activations"
        raise ValueError(f"{path}: the shard {held}, but meta.json {'lists' if names else 'lists no'} activation_names")
    integers = codes is not None and not (codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool)
    if codes is not None and (
        not integers or codes.dim() != 1 or not 0 <= int(codes.min()) <= int(codes.max()) < len(names)
    ):
        raise ValueError(
            f"{path}: activation codes must be integers 0..{len(names) - 1} (meta.json lists {len(names)} activation_names)"
        )
    bad = int(shard.non_finite_networks().sum())
    if bad:
        raise ValueError(f"{path}: {bad} of {len(shard)} networks have NaN or infinite weights or biases")
    y = shard.y
    if y.is_floating_point():
        infinite = int(torch.isinf(y).sum())
        if infinite:
            raise ValueError(f"{path}: {infinite} regression targets are infinite (NaN marks an unlabeled network)")
        return
    lowest, highest = int(y.min()), int(y.max())
    if lowest < -1:
        raise ValueError(f"{path}: class label {lowest} is negative (-1 marks an unlabeled network)")
    declared = meta.get("num_classes")
    if declared is not None and highest >= declared:
        raise ValueError(f"{path}: class label {highest} is not below meta.json's num_classes {declared}")
    if declared is None and highest >= MAX_CLASSES:
        raise ValueError(f"{path}: class label {highest} would make {highest + 1:,} classes, more than {MAX_CLASSES:,}")


def _check_compatible(first: tuple[Path, Shard], other: tuple[Path, Shard]) -> None:
    (first_path, reference), (path, shard) = first, other
    signature = WeightSpaceSpec(shard.widths).signature
    expected = WeightSpaceSpec(reference.widths).signature
    if signature != expected:
        raise ValueError(
            f"{path}: networks of signature (M, d_0, d_M) = {signature}, but {first_path.name} has {expected}; "
            "one dataset root holds one signature"
        )
    extras, expected_extras = set(shard.extras) - {HAS_BIAS_EXTRA}, set(reference.extras) - {HAS_BIAS_EXTRA}
    if extras != expected_extras:
        raise ValueError(f"{path}: extras {sorted(extras)} differ from {first_path.name}'s {sorted(expected_extras)}")
    if shard.y.shape[1:] != reference.y.shape[1:] or shard.y.is_floating_point() != reference.y.is_floating_point():
        raise ValueError(
            f"{path}: labels {shard.y.dtype} {tuple(shard.y.shape[1:])} per network, "
            f"but {first_path.name} has {reference.y.dtype} {tuple(reference.y.shape[1:])}"
        )


def _concatenate(pieces: list[Storage]) -> Storage:
    """Join collated storages (values and slices) of consecutive runs of graphs."""
    keys = list(pieces[0][0])
    values = {key: torch.cat([storage[key] for storage, _ in pieces]) for key in keys}
    slices = {}
    for key in keys:
        parts, offset = [pieces[0][1][key]], pieces[0][1][key][-1]
        for _, piece_slices in pieces[1:]:
            parts.append(piece_slices[key][1:] + offset)
            offset = offset + piece_slices[key][-1]
        slices[key] = torch.cat(parts)
    return values, slices


def _empty_like(storage: Storage) -> Storage:
    values, slices = storage
    return {key: value[:0] for key, value in values.items()}, {key: slices[key][:1] * 0 for key in slices}


def _read_processed(path: str) -> Any:
    # Not torch_geometric's fs.torch_load: it retries with weights_only=False, running
    # any code in the file, when safe loading refuses it.
    try:
        return load_tensors_only(path)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for a damaged file
        raise ValueError(
            f"{path}: unreadable processed cache ({type(error).__name__}); delete {Path(path).parent} "
            "or pass force_reload=True to rebuild it from the shards"
        ) from error


def _describe(argument: Callable | None) -> str:
    """What the processed cache records of a ``pre_transform``/``pre_filter``: the text
    torch_geometric records, so caches it wrote keep matching (its repr, addresses cut)."""
    return "None" if argument is None else re.sub(r"(<.*?)\s.*(>)", r"\1\2", str(argument))


def _save(storage: Storage, path: str) -> None:
    atomic_write(path, lambda handle: torch.save(storage, handle))


def _fingerprint(root: str) -> str:
    """A digest of the raw files (meta.json's bytes, every shard's name, size and mtime)."""
    digest = hashlib.sha256(f"wsgraph-dataset-{PROCESSING_VERSION}".encode())
    digest.update((Path(root) / "meta.json").read_bytes())
    for path in shard_paths(root):
        status = path.stat()
        digest.update(f"{path.name}:{status.st_size}:{status.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]
