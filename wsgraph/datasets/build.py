"""Write a dataset of fitted networks shard by shard: resumable, with a progress bar and a summary.

The first call writes ``meta.json`` with the dataset's ``plan`` (every setting that
decides its contents) and what the finished dataset holds (``num_shards``,
``split_sizes``); a rerun with the same plan skips the shards already written and,
since each network's fit depends only on its own key and the seed, produces the same
shards. A rerun with a different plan is refused rather than mixing two datasets, unless
no shard was written yet (the first attempt failed): then the new plan replaces the old.
A shard whose fit diverged (NaN or infinite weights) is refused, not written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wsgraph.datasets.store import (
    FIT_SUMMARY_ENTRIES,
    SPLITS,
    Shard,
    contents,
    read_meta,
    read_shard,
    shard_path,
    shard_paths,
    write_meta,
    write_shard,
)
from wsgraph.errors import short_repr
from wsgraph.io import write_json
from wsgraph.locks import write_lock

# make_shard(start, stop, advance) fits networks start..stop-1, calling advance(k) as k more are done.
ShardMaker = Callable[[int, int, Callable[[int], None]], Shard]
SUMMARY_FILE = "summary.json"


def write_shards(
    root: str | os.PathLike,
    meta: dict[str, Any],
    split: torch.Tensor,
    shard_size: int,
    make_shard: ShardMaker,
    progress: bool = True,
) -> list[Path]:
    """Create or resume the dataset in ``root``; return the shards written by this call.

    Args:
        root: the dataset folder.
        meta: the ``meta.json`` content; ``meta["plan"]`` must hold every setting that
            decides the shards' contents.
        split: ``[count]``, the split code of every network, in order.
        shard_size: networks per shard (the last may hold fewer).
        make_shard: builds the shard of networks ``start..stop-1``.
        progress: show a progress bar.

    Raises:
        ValueError: if ``root`` holds shards of a dataset made with another plan, or a
            shard's networks have non-finite weights (it is not written).
    """
    if shard_size < 1:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root}: exists and is not a folder")
    # Two fitters on one folder would both write every missing shard: the second one refuses.
    with write_lock(root, "a dataset writer (wsgraph fit-inrs / fit-sines)"):
        return _write_shards_locked(root, meta, split, shard_size, make_shard, progress)


def _write_shards_locked(
    root: Path,
    meta: dict[str, Any],
    split: torch.Tensor,
    shard_size: int,
    make_shard: ShardMaker,
    progress: bool,
) -> list[Path]:
    if (root / "meta.json").is_file():
        old = read_meta(root)  # a meta.json that is not a dataset's is refused, not replaced
        if shard_paths(root):
            _check_same_plan(root, old.get("plan"), meta["plan"])
    elif root.is_dir() and shard_paths(root):
        raise ValueError(f"{root}: has shards but no meta.json; use an empty --out folder")
    elif root.is_dir() and any(not entry.name.startswith(".") for entry in root.iterdir()):
        # Not a dataset this writer began (it writes meta.json first): its files, a summary.json or
        # reconstructions.png among them, are someone else's and would be overwritten. Hidden files
        # (a killed first run's temporary meta.json, a .DS_Store) are nobody's results.
        raise ValueError(f"{root}: holds files but no meta.json; use an empty --out folder")
    count = split.numel()
    num_shards = math.ceil(count / shard_size)
    write_meta(root, {**meta, **contents(split, num_shards)})
    done = [number for number in range(num_shards) if shard_path(root, number).is_file()]
    written = []
    with tqdm(total=count, unit="INR", disable=not progress, dynamic_ncols=True, smoothing=0.1) as bar:
        bar.update(sum(min(shard_size, count - number * shard_size) for number in done))
        for number in range(num_shards):
            if number in done:
                continue
            start, stop = number * shard_size, min(count, (number + 1) * shard_size)
            shard = make_shard(start, stop, bar.update)
            if len(shard) != stop - start or not torch.equal(shard.split.long(), split[start:stop].long()):
                raise RuntimeError(f"shard {number} does not hold networks {start}..{stop - 1} of their splits")
            _refuse_diverged(shard_path(root, number), shard, meta)
            written.append(write_shard(root, number, shard))
    return written


def _refuse_diverged(path: Path, shard: Shard, meta: dict[str, Any]) -> None:
    bad = int(shard.non_finite_networks().sum())
    if not bad:
        return
    lr = meta.get("recipe", {}).get("lr")
    hint = "" if lr is None else f"; try a lower --lr than {lr:g}"
    raise ValueError(
        f"{path}: not written: {bad} of {len(shard)} fitted networks have NaN or infinite weights "
        f"(the fit diverged){hint}"
    )


def _check_same_plan(root: Path, old: dict | None, new: dict) -> None:
    if old == new:
        return
    if old is None:
        raise ValueError(
            f"{root}: holds a dataset that no fitter made (its meta.json records no fitting plan, as after "
            "wsgraph convert); use another --out folder"
        )
    changes = _changed_settings(old, new)
    detail = ", ".join(f"{key}: {short_repr(before)} -> {short_repr(after)}" for key, before, after in changes[:3])
    raise ValueError(f"{root}: holds a dataset made with other settings ({detail}); use another --out folder")


def _changed_settings(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(setting, old value, new value)`` for every setting that differs, nested ones (the recipe's) by their own
    names, so that a message names ``recipe.steps`` rather than printing the whole recipe."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict):
            changes += _changed_settings(before, after, f"{prefix}{key}.")
        else:
            changes.append((f"{prefix}{key}", before, after))
    return changes


def split_statistics(root: str | os.PathLike, key: str) -> dict[str, dict[str, float]]:
    """Per split (and ``"all"``): count, mean, std, min, 5th percentile, median and max of ``extras[key]``."""
    values, splits = [], []
    for path in shard_paths(root):
        shard = read_shard(path)
        if key not in shard.extras:
            raise ValueError(f"{path}: has no extras[{key!r}]")
        values.append(shard.extras[key].double())
        splits.append(shard.split.long())
    if not values:
        raise ValueError(f"{root}: no shards")
    value, split = torch.cat(values), torch.cat(splits)
    table = {}
    for name, mask in [
        *((s, split == code) for code, s in enumerate(SPLITS)),
        ("all", torch.ones_like(split, dtype=torch.bool)),
    ]:
        if bool(mask.any()):
            table[name] = _describe(value[mask])
    return table


def layer_statistics(root: str | os.PathLike, split: str = "train") -> dict[str, dict[str, float]]:
    """Mean and std over every entry of each weight and bias layer of one split's networks.

    Keys ``W1..WM`` and ``b1..bM`` (``nn.Linear`` layers in order); computed in float64
    from running sums, one shard at a time. Comparable with published per-layer
    statistics of INR sets (the std over all entries of all training networks).
    """
    code = SPLITS.index(split)
    sums: dict[str, list[float]] = {}
    for path in shard_paths(root):
        shard = read_shard(path)
        mask = shard.split.long() == code
        if not bool(mask.any()):
            continue
        layers = [(f"W{n}", w) for n, w in enumerate(shard.weights, 1)] + [
            (f"b{n}", b) for n, b in enumerate(shard.biases, 1)
        ]
        for name, tensor in layers:
            values = tensor[mask].double()
            total = sums.setdefault(name, [0.0, 0.0, 0.0])
            total[0] += values.numel()
            total[1] += float(values.sum())
            total[2] += float(values.square().sum())
    if not sums:
        raise ValueError(f"{root}: no networks in the {split} split")
    table = {}
    for name, (count, total, squares) in sums.items():
        mean = total / count
        variance = max(0.0, (squares - count * mean * mean) / max(1.0, count - 1))
        table[name] = {"count": int(count), "mean": mean, "std": variance**0.5}
    return table


def _describe(values: torch.Tensor) -> dict[str, float]:
    # NumPy's sums do not depend on the thread count (torch's parallel ones do, in the last
    # bits), so a rerun rewrites meta.json byte for byte and cached processing stays valid.
    array = values.numpy()
    quantiles = np.quantile(array, [0.05, 0.5])
    return {
        "count": int(array.size),
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if array.size > 1 else 0.0,
        "min": float(array.min()),
        "p5": float(quantiles[0]),
        "median": float(quantiles[1]),
        "max": float(array.max()),
    }


def write_summary(root: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` atomically."""
    return write_json(Path(root) / SUMMARY_FILE, summary, sort_keys=True)


def summarize_fit(
    root: str | os.PathLike,
    extra: str,
    name: str,
    preview: Path,
    device_name: str,
    more: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Record how well a finished set of INRs fits: ``summary.json``, and the same table in ``meta.json``.

    Args:
        root: the dataset folder, with every shard written.
        extra: the per-network fit measure every shard carries (``extras[extra]``).
        name: the key of its :func:`split_statistics` table in both files.
        preview: the picture of reconstructions already saved in ``root``.
        device_name: the device the INRs were fitted on.
        more: other per-network extras to tabulate under their own names (e.g. ``steps``).

    Returns:
        The summary: ``{name: table, **{m: table}, "layer_statistics": {...},
        "files": {"preview": ...}, "fitted_on": device_name}``; ``layer_statistics``
        holds :func:`layer_statistics` of the train split (absent without one).
    """
    if name not in FIT_SUMMARY_ENTRIES:
        raise ValueError(f"fit summary {name!r} is not one of {sorted(FIT_SUMMARY_ENTRIES)}")
    table = split_statistics(root, extra)
    summary = {name: table, "files": {"preview": preview.name}, "fitted_on": device_name}
    for other in more:
        summary[other] = split_statistics(root, other)
    has_train = any(bool((read_shard(p).split == SPLITS.index("train")).any()) for p in shard_paths(root))
    if has_train:
        summary["layer_statistics"] = {"split": "train", "layers": layer_statistics(root, "train")}
    write_summary(root, summary)
    meta = read_meta(root)
    meta[name] = table
    write_meta(root, {k: v for k, v in meta.items() if k not in ("format", "version")})
    return summary


def format_layer_statistics(summary: dict[str, Any], digits: int = 4) -> str:
    """The per-layer mean/std table of a summary's ``layer_statistics``, as markdown."""
    layers = summary["layer_statistics"]["layers"]
    names = list(layers)
    lines = [f"| {summary['layer_statistics']['split']} | {' | '.join(names)} |", "|" + " --- |" * (len(names) + 1)]
    for stat in ("mean", "std"):
        lines.append(f"| {stat} | {' | '.join(f'{layers[n][stat]:.{digits}f}' for n in names)} |")
    return "\n".join(lines)


def format_statistics(table: dict[str, dict[str, float]], name: str, digits: int = 2) -> str:
    """A markdown table of :func:`split_statistics`."""
    columns = ("count", "mean", "std", "min", "p5", "median", "max")
    lines = [f"| split | {' | '.join(f'{name} {c}' if c != 'count' else c for c in columns)} |"]
    lines.append("|" + " --- |" * (len(columns) + 1))
    for split, row in table.items():
        cells = [str(row["count"])] + [
            f"{row[c]:.{digits}f}" if abs(row[c]) >= 1e-3 else f"{row[c]:.2e}" for c in columns[1:]
        ]
        lines.append(f"| {split} | {' | '.join(cells)} |")
    return "\n".join(lines)
