"""Splits and labels from a JSON file, as the DWSNets code writes them for its INR sets.

The published MNIST and Fashion-MNIST INR sets come with a splits file made by the
authors' ``generate_data_splits.py``::

    {"train": {"path": [...], "label": [...]}, "val": {...}, "test": {...}}

Its paths are absolute paths on the machine that made it (e.g.
``/home/.../dataset/mnist-inrs/mnist_png_training_2_23089/checkpoints/model_final.pth``),
so each one is matched to the checkpoint under the source folder whose relative path
is the longest trailing part of it. Every entry must match exactly one file and no
file may be named twice; files under the source folder that the splits file does not
name are left out (and counted in the conversion report).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wsgraph.datasets.store import SPLITS
from wsgraph.io import read_json_file


@dataclass(frozen=True)
class SplitAssignment:
    """What a splits file says about the checkpoints of a source folder.

    Attributes:
        split: relative path -> split code (an index into :data:`SPLITS`).
        labels: relative path -> the label cells (one string each), as the file gives them.
        unmatched: entries naming no file under the source folder (their path as written).
        unlisted: relative paths of source files the splits file does not name.
    """

    split: dict[str, int]
    labels: dict[str, list[str]]
    unmatched: list[str]
    unlisted: list[str]


def read_splits_file(path: str | os.PathLike, relative_paths: Sequence[str]) -> SplitAssignment:
    """Match a splits file's entries to ``relative_paths`` (checkpoints relative to the source).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not the expected JSON layout, a path and label list of different
            lengths, a label that is not a string or integer, or one file named twice;
            the message names the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such splits file")
    document = read_json_file(path, "JSON splits file")
    if not isinstance(document, dict) or not document:
        raise ValueError(f'{path}: expected {{"train": {{"path": [...], "label": [...]}}, "val": ..., "test": ...}}')
    unknown = sorted(set(document) - set(SPLITS))
    if unknown:
        raise ValueError(f"{path}: unknown split {unknown[0]!r}; known: {', '.join(SPLITS)}")
    known = set(relative_paths)
    split: dict[str, int] = {}
    labels: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for code, name in enumerate(SPLITS):
        if name not in document:
            continue
        entries = document[name]
        paths = entries.get("path") if isinstance(entries, dict) else None
        cells = entries.get("label") if isinstance(entries, dict) else None
        if not isinstance(paths, list) or not isinstance(cells, list):
            raise ValueError(f'{path}: split {name!r} needs lists "path" and "label"')
        if len(paths) != len(cells):
            raise ValueError(f"{path}: split {name!r} has {len(paths)} paths but {len(cells)} labels")
        for position, (entry, label) in enumerate(zip(paths, cells)):
            if not isinstance(entry, str) or isinstance(label, bool) or not isinstance(label, (str, int)):
                raise ValueError(f"{path}: {name}[{position}] needs a path string and a string or integer label")
            relative = _match(entry, known)
            if relative is None:
                unmatched.append(entry)
                continue
            if relative in split:
                raise ValueError(f"{path}: {relative!r} is named twice ({SPLITS[split[relative]]} and {name})")
            split[relative] = code
            labels[relative] = [str(label)]
    unlisted = [name for name in relative_paths if name not in split]
    return SplitAssignment(split, labels, unmatched, unlisted)


def _match(entry: str, known: set[str]) -> str | None:
    """The relative path in ``known`` that is the longest trailing part of ``entry``."""
    parts = PurePosixPath(entry.replace("\\", "/")).parts
    for start in range(len(parts)):
        candidate = "/".join(part for part in parts[start:] if part != "/")
        if candidate in known:
            return candidate
    return None
