"""Turn a folder of per-network checkpoints into :class:`WeightSpaceDataset` roots.

``convert_checkpoints(SRC, OUT)`` reads every checkpoint under ``SRC`` (``.pt``,
``.pth``, ``.ckpt``: state_dicts or saved modules; ``.safetensors`` when the package is
installed; nested folders; files and folders whose names start with ``.`` are skipped),
in sorted order of their paths relative to ``SRC``, one at a time, and writes the
networks as shards of stacked tensors (see :mod:`wsgraph.datasets.store`). Symlinked
folders are followed and each folder is read once, however many links lead to it; a
folder that cannot be listed, or a symlink to nothing, is an error like an unreadable file.

Networks are grouped by signature ``(M, d_0, d_M)`` (MLPs and CNNs apart). A checkpoint
with a 4-D ``weight`` (or a module with ``nn.Conv2d`` layers) is a CNN: convolutions, a
global average pooling, linear layers (see :mod:`wsgraph.core.convert_cnn`); its kernels are stored
as they are and padded into the root's kernel grid (``meta["kernel_grid"]``, the largest
kernel of its networks) when the dataset builds the graphs. With one signature ``OUT`` is the
dataset root; with several, ``OUT/<signature name>/`` is one root per signature and
``OUT/index.json`` lists them. Hidden widths may differ within a signature: each shard
holds one exact architecture, and the dataset batches them together. A root is stored in
one dtype, the widest of its networks' layers (a file with float16 and float32 layers, or
float16 and float32 files, give float32), so no value is rounded; ``meta.json`` records it
as ``dtype``.

Labels come from a CSV of ``path,label`` rows (``path`` relative to ``SRC``; an optional
header row starting with ``path``, whose names are kept as ``meta["target_names"]``; more
label columns make regression targets; a header column named ``split`` holds each file's
split, ``train``/``val``/``test``, instead of a random one) or from
a regular expression with one group, searched in each relative path. All-integer labels
are class numbers, all-numeric ones regression targets, anything else class names
(numbered in sorted order and recorded as ``class_names``). A network without a label
gets ``y = -1`` (classification, and datasets without labels) or NaN targets
(regression). A splits file (``splits=``, the JSON layout of the DWSNets code; see
:mod:`wsgraph.datasets.split_files`) gives both the labels and the splits instead.

The output is built in a temporary folder next to ``OUT`` and renamed into place at the
end, so a failed or interrupted conversion leaves nothing behind.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import re
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from wsgraph.core.activations import UNKNOWN, canonical_activation, make_activation
from wsgraph.core.convert_cnn import holds_cnn
from wsgraph.core.extract_cnn import ConvChain, ConvGeometry, from_cnn_module, from_cnn_state_dict, validate_cnn
from wsgraph.core.extract_mlp import (
    LinearChain,
    NotAnMLPError,
    check_output_offset,
    from_module,
    from_state_dict,
    validate,
)
from wsgraph.core.network_files import CHECKPOINT_SUFFIXES, load_network_file
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.activation_file import ACTIVATIONS_FILE, RecordedActivations, check_activation_flag
from wsgraph.datasets.conv_geometry import (
    GEOMETRY_KEYS,
    GeometryValue,
    common_geometry,
    network_geometry,
    parse_geometry_value,
    read_geometry_file,
)
from wsgraph.datasets.split_files import read_splits_file
from wsgraph.datasets.store import (
    ACTIVATION_CODE,
    ACTIVATION_NAMES,
    CONV_GEOMETRY,
    MAX_CLASSES,
    NUM_SHARDS,
    SPLIT_SIZES,
    SPLITS,
    Shard,
    read_shard,
    shard_path,
    write_meta,
    write_shard,
)
from wsgraph.errors import one_line, shown_path
from wsgraph.io import (
    followed_link,
    make_staging_folder,
    put_back_replaced_folders,
    refuse_unreplaceable_folder,
    remove_stale_staging,
    rename_failure,
    replace_folder,
    write_json,
)
from wsgraph.locks import write_lock

DEFAULT_SPLIT_RATIOS = (0.8, 0.1, 0.1)
DEFAULT_SHARD_SIZE = 4096
# Shards of large networks hold fewer of them, so that one shard stays this small.
SHARD_BYTES = 64 * 2**20
UNLABELED_CLASS = -1
# What a damaged or unusual file can raise while it is read and traced.
READ_ERRORS = (ValueError, RuntimeError, TypeError, OSError)


@dataclass(frozen=True)
class SkippedCheckpoint:
    """A file that was not converted, and why."""

    path: str
    reason: str


@dataclass
class ConvertedRoot:
    """One dataset root written by :func:`convert_checkpoints`."""

    name: str
    path: Path
    signature: tuple[int, int, int]
    counts: dict[str, int]
    architectures: dict[str, int]
    dtype: str = "float32"
    widened: dict[str, int] = field(default_factory=dict)
    """Networks stored in a wider dtype than some of their layers had: ``{"float16": 2}``
    means two networks had float16 layers (``"bfloat16+float16"`` when a network had both)."""

    @property
    def num_networks(self) -> int:
        return sum(self.counts.values())


@dataclass
class ConversionReport:
    """What :func:`convert_checkpoints` did."""

    out: Path
    roots: list[ConvertedRoot]
    skipped: list[SkippedCheckpoint]
    num_files: int
    seconds: float
    left_out: list[str] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)
    """Folders reached again through a symlink, not read again: ``(path, path read through)``."""

    @property
    def num_networks(self) -> int:
        return sum(root.num_networks for root in self.roots)


@dataclass
class LabelTable:
    """Labels per relative path, interpreted: ``task`` is ``"classification"``,
    ``"regression"`` or ``None`` (no labels)."""

    task: str | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    num_targets: int = 1
    class_names: list[str] | None = None
    num_classes: int | None = None
    source: str | None = None
    names: list[str] | None = None
    """The label columns' names, from the CSV's header row."""
    splits: dict[str, int] | None = None
    """Each labelled file's split code, from the CSV's ``split`` column."""

    def target(self, relative_path: str) -> Tensor:
        """The label of one file, or the unlabeled marker (-1, or NaN targets)."""
        found = self.targets.get(relative_path)
        if found is not None:
            return found
        if self.task == "regression":
            return torch.full((self.num_targets,), math.nan)
        return torch.tensor(UNLABELED_CLASS)


def convert_checkpoints(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    label_regex: str | None = None,
    skip_bad: bool = False,
    split_ratios: Sequence[float] | None = None,
    seed: int = 0,
    force: bool = False,
    activation: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    progress: bool = True,
    splits: str | os.PathLike | None = None,
    output_offset: float | None = None,
    trust_pickles: bool = False,
    conv_geometry: Mapping[str, Any] | None = None,
) -> ConversionReport:
    """Convert the checkpoints under ``src`` into dataset root(s) at ``out``.

    Args:
        src: the folder of checkpoints.
        out: where the dataset root (or the roots and ``index.json``) will be.
        labels: a CSV file of ``path,label`` rows, paths relative to ``src``.
        label_regex: a regular expression with one group, searched in each relative path.
        skip_bad: convert what can be read and report the rest, instead of stopping at
            the first unreadable, corrupt or non-MLP file, or unreadable folder.
        split_ratios: fractions of train, val and test networks (default 0.8, 0.1, 0.1), drawn at random with
            ``seed`` over the sorted file list.
        seed: the seed of the split.
        force: replace ``out`` if it holds an earlier wsgraph dataset (``meta.json`` or ``index.json``);
            a folder of other files is never replaced.
        activation: the hidden activation to record (e.g. ``"relu"``) for every file; by
            default each file's entry in ``src/activations.json`` (see
            :mod:`wsgraph.datasets.activation_file`), else the one traced from a saved
            module, ``"unknown"`` for a state_dict. It must agree with every entry of the
            files converted.
        shard_size: the most networks per shard.
        progress: show a progress bar.
        splits: a JSON splits file (``{"train": {"path": [...], "label": [...]}, ...}``)
            whose splits and labels are kept exactly; ``split_ratios`` and ``seed`` are
            then unused. Files it does not name are left out (``report.left_out``); an
            entry that names no file is an error (skipped with ``skip_bad``).
        output_offset: a constant the networks' forward adds to their output (the DWSNets
            INR class adds 0.5), recorded as ``meta["output_offset"]`` so that rendering
            and editing reproduce the networks' functions. A saved module whose forward
            adds another constant (none: 0) is refused.
        trust_pickles: also read saved modules of classes outside
            :data:`wsgraph.core.network_files.SAFE_MODULE_CLASSES`. **This runs any code the
            files contain**: only for files you made.
        conv_geometry: the CNNs' ``stride``, ``padding`` and ``dilation`` (see
            :mod:`wsgraph.datasets.conv_geometry`), over those of ``src/geometry.json``;
            recorded in ``meta.json`` so that the graphs can be rebuilt as modules.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        FileExistsError: ``out`` is a file, holds files (without ``force``), holds files but no
            dataset, or was written by another program while the conversion ran.
        ValueError: ``out`` is a mount point; bad arguments or labels, an unreadable checkpoint or folder (without
            ``skip_bad``), or no network converted; the message names the culprit.
    """
    started = time.perf_counter()
    src, out = Path(src), followed_link(out, str(out))
    given_ratios = split_ratios is not None
    split_ratios = DEFAULT_SPLIT_RATIOS if split_ratios is None else split_ratios
    _check_arguments(src, out, labels, label_regex, split_ratios, force, activation, shard_size, splits)
    activation = None if activation is None else canonical_activation(activation)
    if splits is not None and (labels is not None or label_regex is not None):
        raise ValueError("a splits file gives the labels; do not also give --labels or --label-regex")
    geometry = _conv_geometry(src, conv_geometry)
    search = _search_checkpoints(src, out, skip_bad)
    chosen = _choose_and_label(src, search.files, labels, label_regex, splits, split_ratios, seed, skip_bad)
    if given_ratios and chosen.table.splits is not None:
        # The CSV's split column decides every file's split; ratios given as well would be ignored.
        raise ValueError(f"--split-ratios: {labels} gives each file's split (its split column); give one or the other")
    # Every activations.json that speaks for a chosen file is read (and checked) before anything is written.
    lookup = RecordedActivations()
    recorded_activations = {path: lookup.lookup(path) for path in chosen.files}
    if activation is not None:
        check_activation_flag(activation, recorded_activations)
    recipe = {
        "command": "wsgraph convert",
        "splits": None if splits is None else str(Path(splits).resolve()),
        "labels": None if labels is None else str(Path(labels).resolve()),
        "label_regex": label_regex,
        "split_ratios": list(split_ratios),
        "seed": seed,
        "skip_bad": skip_bad,
        "activation": activation,
        "activations_files": [str(path.resolve()) for path in lookup.files()],
        "trust_pickles": trust_pickles,
        "output_offset": output_offset,
    }
    if geometry:
        recipe["conv_geometry"] = {key: _plain_geometry(value) for key, value in geometry.items()}

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"{out}: cannot create the output folder ({error.strerror or error})") from None
    with write_lock(out, "wsgraph convert"):
        # A conversion into OUT may have finished between the first look and the lock.
        remove_stale_staging(out, _STAGING_SUFFIX)
        put_back_replaced_folders(out, _REPLACED_SUFFIX)
        _check_output(out, force)
        try:
            staging = make_staging_folder(out, _STAGING_SUFFIX)
        except OSError as error:
            raise OSError(f"{out}: cannot write in {out.parent} ({error.strerror or error})") from None
        try:
            writers, skipped = _stream(
                chosen.files,
                src,
                staging,
                chosen.table,
                chosen.split_codes,
                activation,
                recorded_activations,
                shard_size,
                skip_bad,
                progress,
                trust_pickles,
                geometry,
                output_offset,
            )
            skipped = search.unreadable + chosen.missing + skipped
            roots = [writer.finish(chosen.table, recipe, src) for _, writer in sorted(writers.items())]
            final = _arrange(staging, roots, skipped, src, skip_bad)
            _move_into_place(final, out, force)
            if final != staging:
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    for root in roots:
        root.path = out if len(roots) == 1 else out / root.name
    elapsed = time.perf_counter() - started
    return ConversionReport(out, roots, skipped, len(chosen.files), elapsed, chosen.left_out, search.repeated)


def _conv_geometry(src: Path, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``src/geometry.json``'s CNN geometry, with ``overrides`` (the ``--conv-*`` flags) over it."""
    geometry = read_geometry_file(src) if src.is_dir() else {}
    for key, value in (overrides or {}).items():
        if key not in GEOMETRY_KEYS:
            raise ValueError(f"unknown convolution geometry {key!r}; expected {', '.join(GEOMETRY_KEYS)}")
        geometry[key] = parse_geometry_value(value, key, f"--conv-{key}")
    return geometry


def _search_checkpoints(src: Path, out: Path, skip_bad: bool) -> CheckpointSearch:
    """The checkpoint files under ``src`` (none under ``out``); an error for an unreadable ``src``,
    for any unreadable folder without ``skip_bad``, and for no files at all."""
    search = find_checkpoints(src, exclude=out)
    top = [item for item in search.unreadable if item.path == "./"]
    if top or (search.unreadable and not skip_bad):
        first = (top or search.unreadable)[0]
        more = f"{len(search.unreadable) - 1} more cannot be read; " if len(search.unreadable) > 1 else ""
        hint = "" if top else f" ({more}pass --skip-bad to convert the other files)"
        raise ValueError(f"{shown_path(src / first.path)}: {first.reason}{hint}")
    if not search.files:
        raise ValueError(f"{src}: no checkpoint files ({', '.join(sorted(CHECKPOINT_SUFFIXES))}) found")
    return search


@dataclass
class _ChosenFiles:
    """The files to convert, with their labels and splits (0 train, 1 val, 2 test)."""

    files: list[Path]
    table: LabelTable
    split_codes: np.ndarray
    left_out: list[str]  # found, but not named by the splits file
    missing: list[SkippedCheckpoint]  # named by the splits file, not found


def _choose_and_label(
    src: Path,
    files: list[Path],
    labels: str | os.PathLike | None,
    label_regex: str | None,
    splits: str | os.PathLike | None,
    split_ratios: Sequence[float],
    seed: int,
    skip_bad: bool,
) -> _ChosenFiles:
    """Which of ``files`` to convert, their labels and their splits: a splits file's, else a labels
    CSV's or regex's labels (and the CSV's split column, if any), else random splits by ``split_ratios``."""
    relative = [path.relative_to(src).as_posix() for path in files]
    if splits is not None:
        return _chosen_by_splits_file(src, files, relative, splits, skip_bad)
    if labels is not None:
        table = read_label_csv(labels, relative)
    elif label_regex is not None:
        table = labels_from_regex(label_regex, relative)
    else:
        table = LabelTable()
    if table.splits is None:
        split_codes = assign_splits(len(files), split_ratios, seed)
    else:
        missing_split = [name for name in relative if name not in table.splits]
        if missing_split:
            raise ValueError(f"{labels}: the split column names no split for {missing_split[0]!r}")
        split_codes = np.array([table.splits[name] for name in relative], dtype=np.uint8)
    return _ChosenFiles(files, table, split_codes, [], [])


def _chosen_by_splits_file(
    src: Path, files: list[Path], relative: list[str], splits: str | os.PathLike, skip_bad: bool
) -> _ChosenFiles:
    """The files a splits file names (``relative``: their paths under ``src``), with its labels and splits."""
    assignment = read_splits_file(splits, relative)
    if assignment.unmatched and not skip_bad:
        raise ValueError(
            f"{splits}: {len(assignment.unmatched)} entries name no checkpoint under {src} "
            f"(first: {assignment.unmatched[0]!r}; pass --skip-bad to convert the others)"
        )
    missing = [SkippedCheckpoint(entry, "named in the splits file, not found") for entry in assignment.unmatched]
    chosen = [(path, name) for path, name in zip(files, relative) if name in assignment.split]
    if not chosen:
        raise ValueError(f"{splits}: names none of the {len(assignment.unlisted)} checkpoint files under {src}")
    names = [name for _, name in chosen]
    table = interpret_labels({name: assignment.labels[name] for name in names}, source=str(splits))
    split_codes = np.array([assignment.split[name] for name in names], dtype=np.uint8)
    return _ChosenFiles([path for path, _ in chosen], table, split_codes, assignment.unlisted, missing)


_STAGING_SUFFIX = ".converting"
# Where an OUT being replaced waits until the new dataset has taken its place.
_REPLACED_SUFFIX = ".replaced"


def _stream(
    files: list[Path],
    src: Path,
    staging: Path,
    table: LabelTable,
    splits: np.ndarray,
    activation: str | None,
    recorded_activations: Mapping[Path, tuple[str, Path] | None],
    shard_size: int,
    skip_bad: bool,
    progress: bool,
    trust_pickles: bool,
    geometry: Mapping[str, GeometryValue],
    output_offset: float | None,
) -> tuple[dict[tuple[int, int, int], _RootWriter], list[SkippedCheckpoint]]:
    """Read the files one at a time into per-signature writers under ``staging``."""
    writers: dict[tuple[int, int, int], _RootWriter] = {}
    skipped: list[SkippedCheckpoint] = []
    with tqdm(total=len(files), unit="ckpt", desc="convert", disable=not progress, dynamic_ncols=True) as bar:
        for number, path in enumerate(files):
            bar.update()
            name = path.relative_to(src).as_posix()
            try:
                chain = read_network(path, trust_pickles=trust_pickles)
                convolutions = (
                    network_geometry(geometry, chain, shown_path(path)) if isinstance(chain, ConvChain) else []
                )
                entry = recorded_activations[path]
                given = activation if activation is not None or entry is None else entry[0]
                named = (
                    f"the given --activation {given}"
                    if activation is not None
                    else f"{given} as {ACTIVATIONS_FILE} says"
                )
                check_traced_activation(chain, given, named)
                check_output_offset(chain, output_offset or 0.0, "--output-offset {}")
            except READ_ERRORS as error:
                reason = one_line(error).removeprefix(f"{shown_path(path)}: ")
                if not skip_bad:
                    raise ValueError(
                        f"{shown_path(path)}: {reason} (pass --skip-bad to convert the other files)"
                    ) from None
                skipped.append(SkippedCheckpoint(name, reason))
                continue
            spec = network_spec(chain)
            key = (spec.is_conv, *spec.signature)
            writer = writers.get(key)
            if writer is None:
                writer = writers[key] = _RootWriter(staging / root_name(spec), shard_size)
            network_activation = given if given is not None else chain.activation
            writer.add(chain, spec, network_activation, table.target(name), int(splits[number]), number, name)
            writer.geometries.append(convolutions)
    if not writers:
        raise ValueError(f"{src}: none of the {len(files)} checkpoint files could be converted")
    return writers, skipped


@dataclass
class CheckpointSearch:
    """What :func:`find_checkpoints` found under a folder.

    Attributes:
        files: the checkpoint files, sorted by path relative to the folder.
        unreadable: what could not be looked into, as :class:`SkippedCheckpoint` with the
            path relative to the folder (folders end in ``/``): a folder that cannot be
            listed or a symlink whose target is missing. The checkpoints in it are unknown.
        repeated: ``(relative path, relative path)`` of folders reached a second time
            through a symlink (a loop, or two links to one folder), and the path through
            which they were read.
    """

    files: list[Path]
    unreadable: list[SkippedCheckpoint] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)


def find_checkpoints(src: Path, exclude: Path | None = None) -> CheckpointSearch:
    """Checkpoint files under ``src``, sorted by relative path; hidden names and ``exclude`` left out.

    Symlinked folders are followed. Each folder is read once, however many paths lead to
    it (compared by device and inode), so a symlink loop ends and no network is read twice.
    """
    src = Path(src)
    excluded = exclude.resolve() if exclude is not None else None
    search = CheckpointSearch([])

    def relative(path: Path, folder: bool) -> str:
        name = path.relative_to(src).as_posix()
        return f"{name}/" if folder else name

    def cannot_list(error: OSError) -> None:
        folder = Path(os.fsdecode(error.filename)) if error.filename is not None else src
        reason = f"folder cannot be read: {error.strerror or one_line(error)}"
        search.unreadable.append(SkippedCheckpoint(relative(folder, True), reason))

    try:
        top = os.stat(src)
    except OSError as error:
        cannot_list(error)
        return search
    read_from: dict[tuple[int, int], str] = {(top.st_dev, top.st_ino): "./"}
    for folder, subfolders, names in os.walk(src, onerror=cannot_list, followlinks=True):
        kept = []
        for name in sorted(subfolders):
            path = Path(folder, name)
            if name.startswith(".") or (excluded is not None and path.resolve() == excluded):
                continue
            try:
                status = os.stat(path)
            except OSError as error:
                reason = f"folder cannot be read: {error.strerror or one_line(error)}"
                search.unreadable.append(SkippedCheckpoint(relative(path, True), reason))
                continue
            key = (status.st_dev, status.st_ino)
            if key in read_from:
                search.repeated.append((relative(path, True), read_from[key]))
                continue
            read_from[key] = relative(path, True)
            kept.append(name)
        subfolders[:] = kept
        for name in names:
            if name.startswith("."):
                continue
            path = Path(folder, name)
            if Path(name).suffix.lower() in CHECKPOINT_SUFFIXES:
                search.files.append(path)
            elif path.is_symlink():
                try:
                    os.stat(path)
                except OSError as error:
                    # The target may be a folder of checkpoints on a disk that is not mounted.
                    reason = f"a symlink to {shown_path(os.readlink(path))}: {error.strerror or one_line(error)}"
                    search.unreadable.append(SkippedCheckpoint(relative(path, False), reason))
    search.files.sort(key=lambda path: path.relative_to(src).as_posix())
    search.unreadable.sort(key=lambda item: item.path)
    return search


def read_network(path: Path, *, trust_pickles: bool = False) -> LinearChain | ConvChain:
    """The MLP or CNN in one checkpoint, checked (finite values, chained shapes).

    A module with ``nn.Conv2d`` layers, or a state_dict with a 4-D weight, is read as a CNN.

    Raises:
        CheckpointError: the file cannot be read (see :func:`wsgraph.load_network_file`,
            also for ``trust_pickles``).
        NotAnMLPError: it holds no MLP, or NaN/inf values; the message names the file.
    """
    content = load_network_file(path, trust_pickles=trust_pickles)
    try:
        if holds_cnn(content):
            chain = from_cnn_module(content) if isinstance(content, nn.Module) else from_cnn_state_dict(content)
            return validate_cnn(chain)
        chain = from_module(content) if isinstance(content, nn.Module) else from_state_dict(content)
        return validate(chain)
    except NotAnMLPError as error:
        raise NotAnMLPError(f"{shown_path(path)}: {error}") from None


def network_spec(chain: LinearChain | ConvChain) -> WeightSpaceSpec:
    """The architecture of a read network (with its kernel sizes for a CNN)."""
    widths = (chain.weights[0].size(1), *(w.size(0) for w in chain.weights))
    if not isinstance(chain, ConvChain):
        return WeightSpaceSpec(widths)
    kernels = tuple(tuple(w.shape[2:]) if w.dim() == 4 else (1, 1) for w in chain.weights)
    return WeightSpaceSpec(widths, kernel_sizes=kernels, conv_layers=chain.num_conv)


def root_name(spec: WeightSpaceSpec) -> str:
    """The folder name of a dataset root: ``mlp-3layers-2in-1out``, ``cnn-4layers-1in-10out``."""
    name = signature_name(spec.signature)
    return "cnn" + name.removeprefix("mlp") if spec.is_conv else name


def signature_name(signature: tuple[int, int, int]) -> str:
    """The folder name of a signature's dataset root, e.g. ``mlp-3layers-2in-1out``."""
    num_weight_layers, in_dim, out_dim = signature
    return f"mlp-{num_weight_layers}layers-{in_dim}in-{out_dim}out"


def assign_splits(count: int, ratios: Sequence[float], seed: int) -> np.ndarray:
    """Split codes (0 train, 1 val, 2 test) for ``count`` items: exact proportions, random order."""
    train = round(ratios[0] * count)
    val = min(round(ratios[1] * count), count - train)
    codes = np.full(count, 2, dtype=np.uint8)
    order = np.random.default_rng(seed).permutation(count)
    codes[order[:train]] = 0
    codes[order[train : train + val]] = 1
    return codes


def read_label_csv(path: str | os.PathLike, relative_paths: Sequence[str]) -> LabelTable:
    """Read ``path,label[,label...]`` rows; every path must name one of ``relative_paths``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a labels file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such labels file")
    try:
        raw, header, splits, split_column = _read_label_rows(path, set(relative_paths))
    except (UnicodeDecodeError, csv.Error) as error:
        # Neither names the file: a binary file, another encoding, or a cell past csv's size limit.
        raise ValueError(f"{path}: not a readable CSV labels file ({error})") from None
    if not raw:
        raise ValueError(f"{path}: no labels")
    table = interpret_labels(raw, source=str(path))
    if header is not None and len(header) == table.num_targets:
        table.names = header
    if split_column is not None:
        table.splits = splits
    return table


def _read_label_rows(
    path: Path, known: set[str]
) -> tuple[dict[str, list[str]], list[str] | None, dict[str, int], int | None]:
    """The label cells by path, the header's target names, the splits by path and the split column."""
    raw: dict[str, list[str]] = {}
    header: list[str] | None = None
    split_column: int | None = None
    splits: dict[str, int] = {}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if line == 1 and cells[0].lower() == "path":
                header = cells[1:]
                if "split" in header:
                    split_column = header.index("split") + 1
                    header.remove("split")
                continue
            if len(cells) < 2:
                raise ValueError(f"{path}, line {line}: expected 'path,label', got {','.join(cells)!r}")
            name = PurePosixPath(cells[0].replace("\\", "/")).as_posix().removeprefix("./")
            if name not in known:
                raise ValueError(f"{path}, line {line}: {cells[0]!r} is not a checkpoint file in the source folder")
            if name in raw:
                raise ValueError(f"{path}, line {line}: a second label for {cells[0]!r}")
            if split_column is not None:
                split = cells[split_column] if split_column < len(cells) else ""
                if split not in SPLITS:
                    raise ValueError(f"{path}, line {line}: split {split!r} is not one of {', '.join(SPLITS)}")
                splits[name] = SPLITS.index(split)
                cells = cells[:split_column] + cells[split_column + 1 :]
            if "" in cells[1:]:
                raise ValueError(
                    f"{path}, line {line}: an empty label for {cells[0]!r} (leave a file out of the CSV to keep it "
                    "unlabeled)"
                )
            raw[name] = cells[1:]
    return raw, header, splits, split_column


def labels_from_regex(pattern: str, relative_paths: Sequence[str]) -> LabelTable:
    """Label each path by the one group of ``pattern`` (``re.search``); paths that do not match stay unlabeled."""
    compiled = compile_label_regex(pattern)
    raw = {}
    for name in relative_paths:
        match = compiled.search(name)
        if match is not None and match.group(1) is not None:
            raw[name] = [match.group(1)]
    if not raw:
        raise ValueError(f"label regex {pattern!r} matches none of the {len(relative_paths)} checkpoint paths")
    return interpret_labels(raw, source=f"regex {pattern}")


def compile_label_regex(pattern: str) -> re.Pattern:
    """Compile a label regex, which must have exactly one group."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ValueError(f"label regex {pattern!r} does not compile: {error}") from None
    if compiled.groups != 1:
        raise ValueError(f"label regex {pattern!r} has {compiled.groups} groups; it needs exactly one")
    return compiled


def interpret_labels(raw: dict[str, list[str]], source: str | None = None) -> LabelTable:
    """Decide what labels are: class numbers, regression targets or class names."""
    widths = {len(cells) for cells in raw.values()}
    if len(widths) > 1:
        raise ValueError(f"{source}: rows have different numbers of labels ({sorted(widths)})")
    num_targets = widths.pop()
    integers = _parse_all(raw, int)
    if num_targets == 1 and integers is not None:
        negative = next((name for name, values in integers.items() if values[0] < 0), None)
        if negative is not None:
            raise ValueError(f"{source}: class label {integers[negative][0]} of {negative!r} is negative")
        highest = max(integers.items(), key=lambda item: item[1][0])
        if highest[1][0] >= MAX_CLASSES:
            raise ValueError(
                f"{source}: class label {highest[1][0]} of {highest[0]!r} would make {highest[1][0] + 1:,} classes, "
                f"more than {MAX_CLASSES:,}"
            )
        # Only now: a label past int64 would stop torch.tensor with a message naming neither file nor label.
        targets = {name: torch.tensor(values[0]) for name, values in integers.items()}
        num_classes = highest[1][0] + 1
        return LabelTable("classification", targets, 1, None, num_classes, source)
    numbers = _parse_all(raw, float)
    if numbers is not None:
        # NaN marks an unlabeled network, as for files without a row; an infinity is an error. (Read as
        # text instead, one 'nan' among numbers would turn every number into a class name.)
        bad = next((name for name, values in numbers.items() if any(math.isinf(v) for v in values)), None)
        if bad is not None:
            raise ValueError(f"{source}: label {','.join(raw[bad])!r} of {bad!r} is infinite")
        targets = {name: torch.tensor(values, dtype=torch.float32) for name, values in numbers.items()}
        return LabelTable("regression", targets, num_targets, None, None, source)
    if num_targets != 1:
        raise ValueError(f"{source}: {num_targets} label columns must all be numbers (regression targets)")
    class_names = sorted({values[0] for values in raw.values()})
    number = {name: position for position, name in enumerate(class_names)}
    targets = {name: torch.tensor(number[values[0]]) for name, values in raw.items()}
    return LabelTable("classification", targets, 1, class_names, len(class_names), source)


def _parse_all(raw: dict[str, list[str]], kind: type) -> dict[str, list] | None:
    try:
        return {name: [kind(cell) for cell in cells] for name, cells in raw.items()}
    except ValueError:
        return None


class _ShardBuffer:
    """Preallocated stacked tensors for networks of one architecture and dtype."""

    def __init__(self, spec: WeightSpaceSpec, dtype: torch.dtype, capacity: int, target: Tensor) -> None:
        self.spec = spec
        self.count = 0
        # A CNN's convolutions keep their kernels: [capacity, out, in, kh, kw].
        kernels = [
            spec.kernel_sizes[layer - 1] if spec.is_conv and layer <= spec.conv_layers else ()
            for layer in spec.weight_layers
        ]
        self.weights = [
            torch.empty(capacity, *reversed(spec.weight_shape(layer)), *kernel, dtype=dtype)
            for layer, kernel in zip(spec.weight_layers, kernels)
        ]
        self.biases = [torch.empty(capacity, spec.widths[layer], dtype=dtype) for layer in spec.weight_layers]
        self.has_bias = torch.empty(capacity, spec.num_weight_layers, dtype=torch.bool)
        self.y = torch.empty(capacity, *target.shape, dtype=target.dtype)
        self.split = torch.empty(capacity, dtype=torch.uint8)
        self.index = torch.empty(capacity, dtype=torch.long)
        self.activation_code = torch.empty(capacity, dtype=torch.int16)

    @property
    def full(self) -> bool:
        return self.count == self.y.size(0)

    def put(self, chain: LinearChain | ConvChain, target: Tensor, split: int, index: int, activation_code: int) -> None:
        row = self.count
        for layer, (weight, bias) in enumerate(zip(chain.weights, chain.biases)):
            self.weights[layer][row] = weight
            self.has_bias[row, layer] = bias is not None
            if bias is None:
                self.biases[layer][row] = 0
            else:
                self.biases[layer][row] = bias
        self.y[row] = target
        self.split[row] = split
        self.index[row] = index
        self.activation_code[row] = activation_code
        self.count += 1

    def take(self) -> tuple[Shard, Tensor]:
        """The buffered networks as a shard (copies, so the file holds no unused rows), and their
        activation codes; empties the buffer."""
        n = self.count
        codes = self.activation_code[:n].clone()
        extras = {} if bool(self.has_bias[:n].all()) else {"has_bias": self.has_bias[:n].clone()}
        shard = Shard(
            [w[:n].clone() for w in self.weights],
            [b[:n].clone() for b in self.biases],
            self.y[:n].clone(),
            self.split[:n].clone(),
            self.index[:n].clone(),
            extras,
        )
        self.count = 0
        return shard, codes


class _RootWriter:
    """Accumulates the networks of one signature and writes them as one dataset root.

    The root is stored in one dtype, the widest of its networks' layers (float32 for
    float16 and bfloat16 together), so that no value is rounded. It is known only after
    the last network: shards written before a wider network came are rewritten at the
    end (:meth:`finish`).
    """

    def __init__(self, root: Path, shard_size: int) -> None:
        self.root = root
        self.shard_size = shard_size
        self.dtype: torch.dtype | None = None
        self.buffers: dict[tuple[int, ...], _ShardBuffer] = {}
        self.shard_dtypes: list[torch.dtype] = []
        self.network_dtypes: Counter[frozenset[torch.dtype]] = Counter()
        self.shards_written = 0
        self.signature: tuple[int, int, int] | None = None
        self.architectures: Counter[str] = Counter()
        self.specs: dict[str, WeightSpaceSpec] = {}
        self.activations: Counter[str] = Counter()
        # Each network's activation as a number (in the order they were first met), kept per shard written:
        # a root of several activations stores them as the shards' ACTIVATION_CODE extra. A shard written
        # once a second activation has been met carries them at once; earlier ones get them in finish().
        self.activation_codes: dict[str, int] = {}
        self.shard_activation_codes: list[Tensor] = []
        self.shard_has_codes: list[bool] = []
        self.counts = Counter({name: 0 for name in SPLITS})
        self.unlabeled = 0
        self.paths: dict[str, str] = {}
        # Per CNN network, its convolutions' geometry (what was given, else what a saved module says).
        self.geometries: list[list[ConvGeometry]] = []

    def add(
        self,
        chain: LinearChain | ConvChain,
        spec: WeightSpaceSpec,
        activation: str,
        target: Tensor,
        split: int,
        index: int,
        name: str,
    ) -> None:
        dtypes = frozenset(tensor.dtype for tensor in (*chain.weights, *chain.biases) if tensor is not None)
        dtype = self.dtype
        for other in dtypes:
            dtype = other if dtype is None else widest_dtype(dtype, other)
        if dtype != self.dtype:
            self._widen(dtype)
        buffer = self.buffers.get(spec)
        if buffer is None:
            bytes_per_network = spec.num_params * dtype.itemsize
            capacity = max(1, min(self.shard_size, SHARD_BYTES // bytes_per_network))
            buffer = self.buffers[spec] = _ShardBuffer(spec, dtype, capacity, target)
        code = self.activation_codes.setdefault(activation, len(self.activation_codes))
        buffer.put(chain, target, split, index, code)
        self.network_dtypes[dtypes] += 1
        if buffer.full:
            self._write(buffer)
        self.signature = spec.signature
        self.architectures[str(spec)] += 1
        self.specs[str(spec)] = spec
        self.activations[activation] += 1
        self.counts[SPLITS[split]] += 1
        self.unlabeled += bool(_is_unlabeled(target))
        self.paths[str(index)] = name

    def _widen(self, dtype: torch.dtype) -> None:
        """Store the networks to come in ``dtype``: the buffered ones are written as they are
        (and rewritten by :meth:`finish`), and new buffers are sized for the wider values."""
        for buffer in self.buffers.values():
            if buffer.count:
                self._write(buffer)
        self.buffers.clear()
        self.dtype = dtype

    def _write(self, buffer: _ShardBuffer) -> None:
        shard, codes = buffer.take()
        mixed = len(self.activation_codes) > 1
        if mixed:
            shard.extras[ACTIVATION_CODE] = codes
        write_shard(self.root, self.shards_written, shard)
        self.shard_activation_codes.append(codes)
        self.shard_has_codes.append(mixed)
        self.shard_dtypes.append(buffer.weights[0].dtype)
        self.shards_written += 1

    def _rewrite_shards(self) -> None:
        """Rewrite the shards written in a narrower dtype than the root's, and, in a root of several
        activations, those written before the second activation was met, adding their codes."""
        mixed = len(self.activation_codes) > 1
        for number, dtype in enumerate(self.shard_dtypes):
            lacks_codes = mixed and not self.shard_has_codes[number]
            if dtype == self.dtype and not lacks_codes:
                continue
            shard = read_shard(shard_path(self.root, number))
            shard.weights = [weight.to(self.dtype) for weight in shard.weights]
            shard.biases = [bias.to(self.dtype) for bias in shard.biases]
            if mixed:
                shard.extras[ACTIVATION_CODE] = self.shard_activation_codes[number]
            write_shard(self.root, number, shard)
            self.shard_dtypes[number] = self.dtype
            self.shard_has_codes[number] = mixed

    def finish(self, table: LabelTable, recipe: dict[str, Any], src: Path) -> ConvertedRoot:
        """Write the buffered networks, ``meta.json`` and ``checkpoints.json``."""
        for buffer in self.buffers.values():
            if buffer.count:
                self._write(buffer)
        self._rewrite_shards()
        widened: Counter[str] = Counter()
        for dtypes, count in self.network_dtypes.items():
            narrower = sorted(dtype_name(dtype) for dtype in dtypes if dtype != self.dtype)
            if narrower:
                widened["+".join(narrower)] += count
        activations = dict(sorted(self.activations.items()))
        meta: dict[str, Any] = {
            "kind": "checkpoints",
            "signature": list(self.signature),
            "architectures": dict(sorted(self.architectures.items())),
            "activation": next(iter(activations)) if len(activations) == 1 else UNKNOWN,
            "activations": activations,
            **({ACTIVATION_NAMES: list(self.activation_codes)} if len(activations) > 1 else {}),
            "counts": dict(self.counts),
            NUM_SHARDS: self.shards_written,
            SPLIT_SIZES: dict(self.counts),
            "unlabeled": self.unlabeled,
            "source": str(src.resolve()),
            "recipe": recipe,
            "dtype": dtype_name(self.dtype),
        }
        if len(self.architectures) == 1:
            meta["widths"] = list(self.specs[next(iter(self.architectures))].widths)
        specs = list(self.specs.values())
        if specs[0].is_conv:
            meta["weight_space"] = "cnn"
            meta["kernel_grid"] = [max(spec.kernel_grid[axis] for spec in specs) for axis in range(2)]
            geometry = common_geometry(self.geometries)
            if geometry is not None:
                meta[CONV_GEOMETRY] = geometry
        if recipe.get("output_offset") is not None:
            meta["output_offset"] = recipe["output_offset"]
        if table.task is not None:
            meta.update(task=table.task, label_source=table.source)
        if table.num_classes is not None:
            meta["num_classes"] = table.num_classes
        if table.class_names is not None:
            meta["class_names"] = table.class_names
        if table.names is not None and table.task == "regression":
            meta["target_names"] = table.names
        write_meta(self.root, meta)
        write_json(self.root / "checkpoints.json", {"source": str(src.resolve()), "paths": self.paths})
        return ConvertedRoot(
            self.root.name,
            self.root,
            self.signature,
            dict(self.counts),
            dict(sorted(self.architectures.items())),
            dtype_name(self.dtype),
            dict(sorted(widened.items())),
        )


def _plain_geometry(value: GeometryValue) -> list:
    return [list(pair) for pair in value] if isinstance(value, list) else list(value)


def widest_dtype(first: torch.dtype, second: torch.dtype) -> torch.dtype:
    """The floating dtype that holds every value of both exactly (``torch.promote_types``;
    float32 for two 8-bit float formats or one with a 16-bit format, which torch does not
    promote, float64 when either is float64)."""
    try:
        return torch.promote_types(first, second)
    except RuntimeError:
        return torch.float64 if torch.float64 in (first, second) else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


def _is_unlabeled(target: Tensor) -> bool:
    if target.is_floating_point():
        return bool(target.isnan().all())
    return bool((target == UNLABELED_CLASS).all())


def _arrange(
    staging: Path, roots: list[ConvertedRoot], skipped: list[SkippedCheckpoint], src: Path, skip_bad: bool
) -> Path:
    """The folder to rename to OUT: the single root itself, or ``staging`` with the roots and ``index.json``."""
    skipped_document = {"source": str(src.resolve()), "skipped": [vars(item) for item in skipped]}
    if len(roots) == 1:
        if skip_bad:
            write_json(roots[0].path / "skipped.json", skipped_document)
        return roots[0].path
    index = {
        "format": "wsgraph-index",
        "version": 1,
        "source": str(src.resolve()),
        "datasets": [
            {
                "name": root.name,
                "signature": list(root.signature),
                "networks": root.num_networks,
                "counts": root.counts,
                "architectures": root.architectures,
            }
            for root in roots
        ],
        "skipped": len(skipped),
    }
    write_json(staging / "index.json", index)
    if skip_bad:
        write_json(staging / "skipped.json", skipped_document)
    return staging


def _move_into_place(built: Path, out: Path, force: bool) -> None:
    """Rename ``built`` to ``out``; an ``out`` that is not empty is replaced only with ``force``.

    ``out`` is looked at again here, not only before the conversion: a program that does
    not take the lock may have written it in the meantime.
    """
    _check_output(out, force, changed=True)
    try:
        replace_folder(built, out, _REPLACED_SUFFIX)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
            # Filled between the look and the rename; the rename then fails and changes nothing.
            raise FileExistsError(_CHANGED.format(out=out)) from None
        raise OSError(f"{out}: cannot put the dataset there ({rename_failure(error)})") from None


def _check_arguments(
    src: Path,
    out: Path,
    labels: str | os.PathLike | None,
    label_regex: str | None,
    split_ratios: Sequence[float],
    force: bool,
    activation: str | None,
    shard_size: int,
    splits: str | os.PathLike | None = None,
) -> None:
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such folder")
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: not a folder")
    if labels is not None and label_regex is not None:
        raise ValueError("give labels as a CSV file or as a regex, not both")
    if label_regex is not None:
        compile_label_regex(label_regex)
    check_split_ratios(split_ratios)
    if activation is not None:
        make_activation(activation)
    if shard_size < 1:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if out.resolve() == src.resolve() or src.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"{out}: the output folder would replace the source folder {src}")
    if out.resolve().is_relative_to(src.resolve()):
        # Every later conversion of SRC would find the dataset's shards among the checkpoints.
        raise ValueError(f"{out}: inside the source folder {src}; choose an output folder outside it")
    for kind, path in (("labels", labels), ("splits", splits)):
        if path is not None and Path(path).resolve().is_relative_to(out.resolve()):
            # Replacing OUT would delete the very file the conversion reads.
            raise ValueError(f"{path}: the {kind} file is inside the output folder {out}; move it out first")
    refuse_unreplaceable_folder(out, str(out))
    _check_output(out, force)


def check_traced_activation(chain: LinearChain | ConvChain, given: str | None, named: str) -> None:
    """Raise a ``ValueError`` if a saved module's trace rules out the hidden activation ``given`` (already in
    its recorded form; a network without hidden layers has none, a state_dict records none); ``named`` says
    where it came from, e.g. ``"relu as activations.json says"``."""
    traced = chain.activation
    if given is None or traced == UNKNOWN or len(chain.weights) < 2 or given in (traced, *chain.activation_candidates):
        return
    raise ValueError(f"the saved module's hidden activation is {traced}, not {named}")


# The refusal of a second conversion into OUT that finds OUT written after its start.
_CHANGED = "{out}: written by another program while this conversion ran; nothing replaced (pass --force to replace it)"


def _check_output(out: Path, force: bool, changed: bool = False) -> None:
    """Refuse an ``out`` that is a file, or a folder that is not empty unless ``force`` and it holds
    only a wsgraph dataset: ``--force`` must not delete someone's files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        if changed:
            raise FileExistsError(_CHANGED.format(out=out))
        raise FileExistsError(f"{out}: exists and is not empty; pass --force to replace it")
    if not (out / "meta.json").is_file() and not (out / "index.json").is_file():
        raise FileExistsError(
            f"{out}: holds files but no wsgraph dataset (no meta.json or index.json), so --force does not "
            "replace it; choose another output folder"
        )
    foreign = _not_dataset_files(out)
    if foreign:
        raise FileExistsError(
            f"{out}: holds {foreign[0]}, which is not part of a wsgraph dataset, so --force does not replace it; "
            "move it out or choose another output folder"
        )


# What a dataset root holds once written (by convert or a fitter) and loaded (``processed``).
_DATASET_ENTRIES = frozenset(
    {"meta.json", "shards", "checkpoints.json", "skipped.json", "summary.json", "reconstructions.png", "processed"}
)


def _not_dataset_files(folder: Path) -> list[str]:
    """What in ``folder`` is not part of a wsgraph dataset root (``meta.json``), or of a folder of
    them with its ``index.json``, as paths relative to ``folder``."""
    names = sorted(entry.name for entry in os.scandir(folder))
    # A writer killed mid-write leaves its temporary file (``.NAME.XXXXXXXX.tmp``, see atomic_write).
    names = [name for name in names if not (name.startswith(".") and name.endswith(".tmp"))]
    if "meta.json" in names:
        return [name for name in names if name not in _DATASET_ENTRIES]
    foreign = []
    for name in names:
        if name in ("index.json", "skipped.json"):
            continue
        root = folder / name
        if root.is_dir() and not root.is_symlink() and (root / "meta.json").is_file():
            foreign += [f"{name}/{inner}" for inner in _not_dataset_files(root)]
        else:
            foreign.append(name)
    return foreign


def check_split_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative fractions that sum to 1."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or any(not math.isfinite(r) or r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"split ratios must be three non-negative fractions summing to 1, got {ratios}")
    return ratios
