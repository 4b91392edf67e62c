"""On-disk format of a weight-space dataset: ``meta.json`` plus shards of stacked weights.

A dataset root holds::

    meta.json                 what the data is and how it was made (see `write_meta`)
    shards/shard-00000.pt     stacked networks of one architecture (see `Shard`)
    shards/shard-00001.pt     ...

Every file is written to a temporary name and renamed into place, so a reader never
sees half a file, and a writer that is interrupted leaves only whole shards behind:
rerunning it skips the shards that exist.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsgraph.io import atomic_write, write_json

FORMAT = "wsgraph-weights"
VERSION = 1
SPLITS = ("train", "val", "test")
SHARD_DIR = "shards"


@dataclass
class Shard:
    """``n`` networks of one architecture, stacked.

    Attributes:
        weights: per layer ``[n, d_l, d_{l-1}]`` (``nn.Linear`` convention).
        biases: per layer ``[n, d_l]``.
        y: ``[n]`` class labels (long) or ``[n, k]`` regression targets (float).
        split: ``[n]`` uint8, an index into :data:`SPLITS`.
        index: ``[n]`` long, the source item (image number within its official split,
            or checkpoint number).
        extras: more per-network tensors of leading size ``n`` (e.g. ``psnr``).
    """

    weights: list[Tensor]
    biases: list[Tensor]
    y: Tensor
    split: Tensor
    index: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        count = self.y.size(0)
        if len(self.weights) != len(self.biases) or not self.weights:
            raise ValueError(f"shard has {len(self.weights)} weight and {len(self.biases)} bias layers")
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases), start=1):
            if weight.dim() != 3 or bias.shape != weight.shape[:2] or weight.size(0) != count:
                raise ValueError(
                    f"shard layer {layer}: weight {tuple(weight.shape)} and bias {tuple(bias.shape)} "
                    f"do not fit {count} stacked networks"
                )
        for name, tensor in (("split", self.split), ("index", self.index), *self.extras.items()):
            if tensor.size(0) != count:
                raise ValueError(f"shard field '{name}' has {tensor.size(0)} entries for {count} networks")

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.weights[0].size(2), *(w.size(1) for w in self.weights))

    def __len__(self) -> int:
        return self.y.size(0)


def shard_path(root: str | os.PathLike, number: int) -> Path:
    return Path(root) / SHARD_DIR / f"shard-{number:05d}.pt"


def shard_paths(root: str | os.PathLike) -> list[Path]:
    """The finished shards of a dataset root, in order."""
    return sorted((Path(root) / SHARD_DIR).glob("shard-*.pt"))


def write_shard(root: str | os.PathLike, number: int, shard: Shard) -> Path:
    """Write shard ``number`` atomically and return its path."""
    path = shard_path(root, number)
    payload = {
        "weights": [w.detach().cpu().contiguous() for w in shard.weights],
        "biases": [b.detach().cpu().contiguous() for b in shard.biases],
        "y": shard.y.detach().cpu(),
        "split": shard.split.detach().cpu().to(torch.uint8),
        "index": shard.index.detach().cpu().long(),
        "extras": {k: v.detach().cpu() for k, v in shard.extras.items()},
    }
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return path


def read_shard(path: str | os.PathLike) -> Shard:
    """Read one shard, with a clear error naming the file if it is not one."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(f"{path}: not a readable wsgraph shard ({error.__class__.__name__}: {error})") from error
    missing = {"weights", "biases", "y", "split", "index"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise ValueError(f"{path}: not a wsgraph shard (missing {', '.join(sorted(missing))})")
    try:
        return Shard(
            payload["weights"],
            payload["biases"],
            payload["y"],
            payload["split"],
            payload["index"],
            payload.get("extras", {}),
        )
    except (ValueError, TypeError, AttributeError) as error:  # wrong shapes, or entries that are not tensors
        raise ValueError(f"{path}: not a valid wsgraph shard ({error})") from error


def write_meta(root: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``meta.json`` atomically; ``format`` and ``version`` are filled in.

    Conventional keys: ``kind`` ("inr", "sine", "checkpoints"), ``task``
    ("classification" or "regression"), ``num_classes``, ``class_names``,
    ``activation`` (e.g. "sine(30.0)"), ``widths``, ``recipe`` (every setting that
    made the data), ``source`` (where the inputs came from), ``intensity_range``.
    """
    return write_json(Path(root) / "meta.json", {"format": FORMAT, "version": VERSION, **meta}, sort_keys=True)


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no meta.json; is {root} a dataset made by 'wsgraph fit-inrs' or 'wsgraph convert'?"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a wsgraph dataset (format {meta.get('format')!r})")
    return meta
