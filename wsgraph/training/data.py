"""The networks a run trains, validates and tests on: dataset splits, labels, targets."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsgraph.checks import first_repeat
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import SPLITS, read_meta
from wsgraph.datasets.transforms import LayerStatistics

# The --max-train subset is drawn with this seed, whatever the run's seed, so that runs with
# different seeds see the same networks.
SUBSET_SEED = 0
_TASK_OF_META = {"classification": "classify", "regression": "regress"}


@dataclass
class SplitData:
    """The networks of one split that a run uses.

    Attributes:
        name: ``"train"``, ``"val"`` or ``"test"``.
        dataset: the split as a :class:`WeightSpaceDataset`.
        rows: indices into ``dataset`` of the networks used (labelled ones; for train
            at most ``--max-train``).
    """

    name: str
    dataset: WeightSpaceDataset
    rows: Tensor

    def __len__(self) -> int:
        return self.rows.numel()


@dataclass
class TrainingData:
    """The three splits of a dataset root and what models and tasks need to know about them."""

    root: Path
    meta: dict[str, Any]
    splits: dict[str, SplitData]
    statistics: LayerStatistics
    architectures: list[WeightSpaceSpec]
    target_columns: tuple[int, ...] | None = None
    """For regression, the columns of ``y`` to predict (``--targets`` with names resolved)."""

    @property
    def train(self) -> SplitData:
        return self.splits["train"]

    @property
    def val(self) -> SplitData:
        return self.splits["val"]

    @property
    def test(self) -> SplitData:
        return self.splits["test"]

    @property
    def signature(self) -> tuple[int, int, int]:
        """``(M, d_0, d_M)`` of every network."""
        return self.architectures[0].signature

    @property
    def uniform_spec(self) -> WeightSpaceSpec | None:
        """The one architecture of all networks, or ``None`` if hidden widths differ."""
        return self.architectures[0] if len(self.architectures) == 1 else None

    @property
    def kernel_grid(self) -> tuple[int, int] | None:
        """A CNN dataset's kernel grid ``(H, W)``, the width ``H*W`` of its edge features; ``None`` for MLPs."""
        if self.meta.get("weight_space") != "cnn":
            return None
        height, width = self.meta["kernel_grid"]
        return (int(height), int(width))

    @property
    def kernel_sizes(self) -> tuple[tuple[int, int], ...] | None:
        """A CNN dataset's largest kernel ``(kh, kw)`` of each weight layer, over all splits; ``None`` for MLPs."""
        if self.kernel_grid is None:
            return None
        sizes = torch.cat([split.dataset.kernel_size for split in self.splits.values()])
        return tuple((int(h), int(w)) for h, w in sizes.amax(0).tolist())

    def train_architecture_counts(self) -> dict[WeightSpaceSpec, int]:
        """How many training networks have each architecture (e.g. to weight PNA's degree histogram)."""
        split = self.train
        widths = split.dataset.layer_widths[split.rows]
        unique, counts = torch.unique(widths, dim=0, return_counts=True)
        return {WeightSpaceSpec(tuple(row)): int(count) for row, count in zip(unique.tolist(), counts.tolist())}

    def summary(self) -> dict[str, Any]:
        """What a result file records about the data."""
        recorded = {
            key: self.meta[key]
            for key in ("kind", "task", "source", "activation", "intensity_range")
            if key in self.meta
        }
        return {
            "root": str(self.root),
            **recorded,
            "architectures": [str(spec) for spec in self.architectures],
            "networks": {name: len(split) for name, split in self.splits.items()},
        }


def resolve_task(root: str | os.PathLike, task: str | None) -> str:
    """``task``, or the task a dataset's ``meta.json`` declares.

    Reads ``meta.json`` only: opening the dataset here would make every ``torchrun``
    process build the processed cache at once, before rank 0 has built it for them.
    """
    if task is not None:
        return task
    declared = read_meta(_require_directory(root)).get("task")
    if declared not in _TASK_OF_META:
        raise ValueError(f"{root}: the dataset declares no task (meta.json 'task' is {declared!r}); pass --task")
    return _TASK_OF_META[declared]


def open_training_data(
    root: str | os.PathLike,
    task: str,
    targets: tuple[int, ...] | None = None,
    max_train: int | None = None,
    log: bool = True,
) -> TrainingData:
    """Open the train, val and test splits of a dataset root for ``task``.

    Networks without a label (class ``-1`` or NaN targets, as ``wsgraph convert`` writes
    for unlabeled checkpoints) are left out of classification and regression.

    Args:
        root: a dataset root written by ``wsgraph fit-inrs`` or ``wsgraph convert``.
        task: ``"classify"``, ``"regress"`` or ``"dilate"``.
        targets: for regression, the columns of ``y`` to predict (default: all).
        max_train: use at most this many training networks (a fixed random subset).
        log: let the dataset say when it processes its raw files.

    Raises:
        FileNotFoundError: if ``root`` is not a dataset root.
        ValueError: if the dataset cannot serve ``task`` (labels of the wrong kind,
            target columns out of range, no validation networks).
    """
    path = _require_directory(root)
    datasets = {name: WeightSpaceDataset(path, split=name, log=log) for name in SPLITS}
    reference = datasets["train"]
    targets = resolve_targets(targets, reference.meta, path)
    _check_labels(reference, task, targets)
    splits = {
        name: SplitData(name, dataset, _labelled_rows(dataset, task, targets)) for name, dataset in datasets.items()
    }
    if max_train is not None and max_train < len(splits["train"]):
        generator = torch.Generator().manual_seed(SUBSET_SEED)
        chosen = torch.randperm(len(splits["train"]), generator=generator)[:max_train].sort().values
        splits["train"].rows = splits["train"].rows[chosen]
    for name in ("train", "val"):
        if len(splits[name]) == 0:
            raise ValueError(f"{path}: no {'labelled ' if task != 'dilate' else ''}networks in the {name} split")
    return TrainingData(path, reference.meta, splits, reference.statistics, reference.architectures, targets)


def resolve_targets(targets: tuple[int | str, ...] | None, meta: dict[str, Any], root: Path) -> tuple[int, ...] | None:
    """Column numbers for ``--targets``: numbers stay, names are looked up in ``meta["target_names"]``."""
    if targets is None:
        return None
    names = meta.get("target_names") or []
    columns = []
    for target in targets:
        if isinstance(target, int):
            columns.append(target)
        elif target in names:
            columns.append(names.index(target))
        else:
            known = f"its targets are {', '.join(names)}" if names else "it names no targets (give column numbers)"
            raise ValueError(f"--targets {target}: {root} has no target of that name; {known}")
    repeated = first_repeat(columns)
    if repeated is not None:
        raise ValueError(f"--targets names column {repeated} twice (by number and by name?)")
    return tuple(columns)


def output_names(
    task: str, meta: Mapping[str, Any], out_features: int, targets: Sequence[int | str] | None = None
) -> list[str]:
    """The names of a model's outputs: its classes (``meta["class_names"]``, else numbers), or its
    regression targets, ``targets`` (columns by number or name; all ``out_features`` columns when
    ``None``) named by ``meta["target_names"]`` (``y<column>`` where it names none)."""
    if task == "classify":
        names = meta.get("class_names")
        if isinstance(names, list) and len(names) == out_features:
            return [str(name) for name in names]
        return [str(c) for c in range(out_features)]
    known = meta.get("target_names")
    known = known if isinstance(known, list) else []
    columns = range(out_features) if targets is None else targets
    return [c if isinstance(c, str) else str(known[c]) if 0 <= c < len(known) else f"y{c}" for c in columns]


def _require_directory(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"--data {root}: a file, not a dataset folder")
    if not path.is_dir():
        raise FileNotFoundError(f"--data {root}: no such directory")
    return path


def _check_labels(dataset: WeightSpaceDataset, task: str, targets: tuple[int, ...] | None) -> None:
    y = dataset.y
    if task == "classify" and (y.is_floating_point() or dataset.task == "regression"):
        raise ValueError(f"{dataset.root}: the labels are regression targets, not classes; use --task regress")
    if task == "regress":
        if not y.is_floating_point():
            raise ValueError(
                f"{dataset.root}: the labels are class indices, not regression targets; use --task classify"
            )
        columns = 1 if y.dim() == 1 else y.size(-1)
        if targets is not None and max(targets) >= columns:
            raise ValueError(f"--targets {','.join(map(str, targets))}: the dataset has {columns} target column(s)")
    if targets is not None and task != "regress":
        raise ValueError("--targets selects regression targets; it needs --task regress")


def _labelled_rows(dataset: WeightSpaceDataset, task: str, targets: tuple[int, ...] | None) -> Tensor:
    count = len(dataset)
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    y = dataset.y
    if task == "classify":
        keep = y.view(count, -1)[:, 0] >= 0
    elif task == "regress":
        columns = y.view(count, -1)
        if targets is not None:
            columns = columns[:, list(targets)]
        keep = torch.isfinite(columns).all(dim=1)
    else:
        keep = torch.ones(count, dtype=torch.bool)
    return keep.nonzero().view(-1)
