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

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from wsgraph.core.activations import UNKNOWN, canonical_activation, make_activation
from wsgraph.core.network_files import check_tensors, load_tensors_only
from wsgraph.errors import load_error_reason, shortened, shown_path
from wsgraph.io import atomic_write, write_json

FORMAT = "wsgraph-weights"
VERSION = 1
SPLITS = ("train", "val", "test")
SHARD_DIR = "shards"
# meta.json's record of what a finished dataset holds, so that a lost shard is noticed.
NUM_SHARDS, SPLIT_SIZES = "num_shards", "split_sizes"
# A CNN root's convolution geometry (see wsgraph.datasets.conv_geometry).
CONV_GEOMETRY = "conv_geometry"
# A root whose networks have different hidden activations (a model zoo that draws them per member):
# meta.json lists the names, and each shard numbers its networks' in its extras, 0 for the first name.
ACTIVATION_NAMES, ACTIVATION_CODE = "activation_names", "activation_code"
# The fit-quality tables that fit-inrs/fit-sines compute from the shards into meta.json. They
# stay out of `dataset_fingerprint`: the shards are fingerprinted already, and the tables'
# float sums change in the last bits with the thread count, so rewriting them on a rerun
# would make the same data look different.
FIT_SUMMARY_ENTRIES = frozenset({"psnr_db", "mse"})
# The most classes a dataset may have, declared or inferred from its labels: the class count
# sizes every classifier's output layer, and one damaged label (say 999999999999) would
# otherwise ask for terabytes.
MAX_CLASSES = 100_000
# Bytes read from each end of every shard for `dataset_fingerprint`: enough to see the
# weights, little enough to fingerprint a large dataset in a moment.
FINGERPRINT_BYTES = 1 << 20


@dataclass
class Shard:
    """``n`` networks of one architecture, stacked.

    Attributes:
        weights: per layer ``[n, d_l, d_{l-1}]`` (``nn.Linear`` convention); a CNN's
            convolutions ``[n, d_l, d_{l-1}, kh, kw]`` (``nn.Conv2d`` convention), first.
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
            if weight.dim() not in (3, 5) or bias.shape != weight.shape[:2] or weight.size(0) != count:
                raise ValueError(
                    f"shard layer {layer}: weight {tuple(weight.shape)} and bias {tuple(bias.shape)} "
                    f"do not fit {count} stacked networks"
                )
        for name, tensor in (("split", self.split), ("index", self.index), *self.extras.items()):
            if tensor.dim() == 0 or tensor.size(0) != count:
                if tensor.dim() == 0:
                    raise ValueError(f"shard field '{name}' is a single value, not one entry per network")
                raise ValueError(f"shard field '{name}' has {tensor.size(0)} entries for {count} networks")

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.weights[0].size(2), *(w.size(1) for w in self.weights))

    def non_finite_networks(self) -> Tensor:
        """``[n]`` bool: the networks with a NaN or infinite weight or bias."""
        bad = torch.zeros(len(self), dtype=torch.bool)
        for values in (*self.weights, *self.biases):
            bad |= ~torch.isfinite(values.reshape(len(self), -1)).all(dim=1)
        return bad

    def __len__(self) -> int:
        return self.y.size(0)


def shard_path(root: str | os.PathLike, number: int) -> Path:
    return Path(root) / SHARD_DIR / f"shard-{number:05d}.pt"


def missing_shards(present: set[str], recorded: int, most: int = 100) -> tuple[list[str], int]:
    """Of shards ``0..recorded-1``, the names of the first ``most`` that are not among the file
    names ``present``, and how many are missing in all. Counted from what is present, so that a
    ``meta.json`` recording an absurd number of shards costs no more than a sound one."""
    numbers = {number for number in map(shard_number, present) if number is not None and number < recorded}
    count = recorded - len(numbers)
    first: list[str] = []
    number = 0
    while len(first) < min(most, count):
        if number not in numbers:
            first.append(shard_path("", number).name)
        number += 1
    return first, count


def shard_number(name: str) -> int | None:
    """The number of the shard file ``name`` as :func:`shard_path` names it, or ``None``."""
    digits = name[len("shard-") : -len(".pt")] if name.startswith("shard-") and name.endswith(".pt") else ""
    if not digits.isascii() or not digits.isdigit():
        return None
    number = int(digits)
    return number if shard_path("", number).name == name else None


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
    """Read one shard, with a clear one-line error naming the file if it is not one.

    Like checkpoints (:func:`wsgraph.core.network_files.check_tensors`), a shard may hold only
    plain dense tensors no larger than the file.
    """
    path = Path(path)
    name = shown_path(path)
    try:
        payload = load_tensors_only(path)
    except FileNotFoundError:
        raise
    except Exception as error:
        raise ValueError(
            f"{name}: not a readable wsgraph shard ({error.__class__.__name__}: {load_error_reason(error)})"
        ) from error
    missing = {"weights", "biases", "y", "split", "index"} - set(payload if isinstance(payload, dict) else ())
    if missing:
        raise ValueError(f"{name}: not a wsgraph shard (missing {', '.join(sorted(missing))})")
    check_tensors(payload, path)
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
        raise ValueError(f"{name}: not a valid wsgraph shard ({error})") from error


def write_meta(root: str | os.PathLike, meta: dict[str, Any]) -> Path:
    """Write ``meta.json`` atomically; ``format`` and ``version`` are filled in.

    Conventional keys: ``kind`` ("inr", "sine", "checkpoints"), ``task``
    ("classification" or "regression"), ``num_classes``, ``class_names``,
    ``activation`` (e.g. "sine(30.0)"), ``widths``, ``recipe`` (every setting that
    made the data), ``source`` (where the inputs came from), ``intensity_range``,
    ``num_shards`` and ``split_sizes`` (what the finished dataset holds: shards
    ``0..num_shards-1`` and ``{split: networks}``; see :func:`contents`).
    """
    return write_json(Path(root) / "meta.json", {"format": FORMAT, "version": VERSION, **meta}, sort_keys=True)


def contents(split: Tensor, num_shards: int) -> dict[str, Any]:
    """The ``num_shards`` and ``split_sizes`` entries of ``meta.json`` for a dataset of
    ``num_shards`` shards whose networks have the split codes ``split``."""
    codes = split.long()
    return {NUM_SHARDS: num_shards, SPLIT_SIZES: {name: int((codes == code).sum()) for code, name in enumerate(SPLITS)}}


def read_meta(root: str | os.PathLike) -> dict[str, Any]:
    """Read and check ``root/meta.json``.

    Raises:
        FileNotFoundError: if there is none.
        ValueError: naming the file, if it is not JSON, not a wsgraph dataset's, or
            one of its conventional entries has the wrong type.
    """
    path = Path(root) / "meta.json"
    if not path.is_file():
        roots = []
        if (Path(root) / "index.json").is_file():
            roots = sorted(meta.parent.name for meta in Path(root).glob("*/meta.json") if meta.is_file())
        if roots:
            # 'wsgraph convert' of networks of several signatures: one root per signature.
            raise FileNotFoundError(
                f"{root}: holds one dataset per signature (index.json lists them: {shortened(', '.join(roots), 120)}); "
                f"give one of them, e.g. {Path(root) / roots[0]}"
            )
        raise FileNotFoundError(
            f"{path}: no meta.json; is {root} a dataset made by 'wsgraph fit-inrs' or 'wsgraph convert'?"
        )
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    except RecursionError as error:
        raise ValueError(f"{path}: not a wsgraph dataset (JSON nested too deeply to read)") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: not a wsgraph dataset (a JSON {type(meta).__name__}, not an object)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a wsgraph dataset (format {meta.get('format')!r})")
    version = meta.get("version", VERSION)
    if type(version) is not int or not 1 <= version <= VERSION:
        raise ValueError(f"{path}: dataset version {_shorten(version)}, this wsgraph reads versions 1 to {VERSION}")
    for key, (accepts, requirement) in _META_ENTRIES.items():
        if key in meta and not accepts(meta[key]):
            raise ValueError(f"{path}: '{key}' must be {requirement}, got {_shorten(meta[key])}")
    _check_class_names(path, meta.get("class_names"))
    names, classes = meta.get("class_names"), meta.get("num_classes")
    if names is not None and classes is not None and len(names) != classes:
        raise ValueError(
            f"{path}: 'class_names' lists {len(names)} name{'s' * (len(names) != 1)}, but 'num_classes' is {classes}"
        )
    return meta


def dataset_fingerprint(root: str | os.PathLike) -> str:
    """A short digest that tells datasets apart: ``meta.json``'s content (less the
    bookkeeping of :func:`contents` and the fit-quality tables) and every shard's name, size, first and last
    :data:`FINGERPRINT_BYTES` bytes (two datasets of the same recipe have equal sizes; their
    weights differ from the first tensor on). It does not depend on where the dataset lies
    or on file times, so a moved or copied dataset keeps it."""
    derived = {NUM_SHARDS, SPLIT_SIZES, *FIT_SUMMARY_ENTRIES}
    meta = {key: value for key, value in read_meta(root).items() if key not in derived}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for path in shard_paths(root):
        size = path.stat().st_size
        digest.update(f"{path.name}:{size};".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(FINGERPRINT_BYTES))
            handle.seek(max(0, size - FINGERPRINT_BYTES))
            digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_sizes(value: Any) -> bool:
    return isinstance(value, list) and all(is_count(item) and item > 0 for item in value)


def _is_conv_geometry(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"stride", "padding", "dilation"}:
        return False
    lengths = {len(pairs) if isinstance(pairs, list) else -1 for pairs in value.values()}
    if len(lengths) != 1 or min(lengths) < 1:
        return False
    lowest = {"stride": 1, "padding": 0, "dilation": 1}
    return all(
        isinstance(pair, list) and len(pair) == 2 and all(is_count(v) and v >= lowest[key] for v in pair)
        for key, pairs in value.items()
        for pair in pairs
    )


# Entries that the code reads, with what each must be (others are records and may hold anything).
_META_ENTRIES: dict[str, tuple[Any, str]] = {
    "task": (lambda v: v is None or v in ("classification", "regression"), "'classification', 'regression' or null"),
    "num_classes": (lambda v: is_count(v) and v <= MAX_CLASSES, f"an integer in [0, {MAX_CLASSES}]"),
    "class_names": (lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v), "a list of strings"),
    "activation": (lambda v: _is_activation(v), "a known activation name (e.g. 'relu', 'sine(30.0)', 'unknown')"),
    "activations": (
        lambda v: isinstance(v, dict) and all(_is_activation(k) and is_count(n) for k, n in v.items()),
        "an object of known activation names to counts",
    ),
    ACTIVATION_NAMES: (
        lambda v: isinstance(v, list) and len(v) >= 2 and all(map(_is_activation, v)) and _distinct_activations(v),
        "a list of two or more distinct known activation names",
    ),
    "kind": (lambda v: isinstance(v, str), "a string"),
    "widths": (lambda v: _is_sizes(v) and len(v) >= 2, "a list of at least two positive integers"),
    "image_shape": (lambda v: _is_sizes(v) and len(v) in (2, 3), "[H, W] or [H, W, C] of positive integers"),
    "output_offset": (is_number, "a finite number"),
    "weight_space": (lambda v: v in ("mlp", "cnn"), "'mlp' or 'cnn'"),
    "kernel_grid": (lambda v: _is_sizes(v) and len(v) == 2, "[H, W] of positive integers"),
    CONV_GEOMETRY: (
        lambda v: _is_conv_geometry(v),
        '{"stride": [[h, w], ...], "padding": ..., "dilation": ...}, one pair per convolution',
    ),
    "num_points": (lambda v: is_count(v) and v > 0, "a positive integer"),
    "intensity_range": (lambda v: isinstance(v, list) and len(v) == 2 and all(map(is_number, v)), "[low, high]"),
    "recipe": (lambda v: isinstance(v, dict), "an object"),
    "plan": (lambda v: isinstance(v, dict), "an object"),
    NUM_SHARDS: (lambda v: is_count(v) and v > 0, "a positive integer"),
    SPLIT_SIZES: (
        lambda v: isinstance(v, dict) and set(v) == set(SPLITS) and all(map(is_count, v.values())),
        "{'train': N, 'val': N, 'test': N} with counts >= 0",
    ),
}


def _distinct_activations(names: list[str]) -> bool:
    """Whether no two of ``names`` (known activation names) name one function (``sine(30)``, ``sine(30.0)``)."""
    recorded = [name if name == UNKNOWN else canonical_activation(name) for name in names]
    return len(set(recorded)) == len(recorded)


def _is_activation(value: Any) -> bool:
    if value == UNKNOWN:
        return True
    try:
        make_activation(value)
    except (ValueError, TypeError):
        return False
    return True


def _check_class_names(path: Path, names: list[str] | None) -> None:
    """Refuse class names that are all numbers, one of them not finite: numeric labels
    with a stray 'nan' or 'inf' taken for names, which turns regression into classification."""
    if not names:
        return
    try:
        values = [float(name) for name in names]
    except ValueError:
        return
    odd = next((name for name, value in zip(names, values) if not math.isfinite(value)), None)
    if odd is not None:
        raise ValueError(
            f"{path}: the class names are numbers, {odd!r} among them: numeric labels with a non-finite value "
            "were taken for class names; give every network a finite label"
        )


def _shorten(value: Any, limit: int = 60) -> str:
    return shortened(json.dumps(value), limit)
