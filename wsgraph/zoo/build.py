"""Build a model zoo on disk: members trained in batched groups, written shard by shard, resumable.

Layout of a zoo folder ``OUT``::

    OUT/zoo.json                      the plan (every setting that decides the members) and progress
    OUT/checkpoints/geometry.json     the convolutions' stride and padding (cnn), for 'wsgraph convert'
    OUT/checkpoints/activations.json  each checkpoint's hidden activation, for 'wsgraph convert'
    OUT/checkpoints/shard-00000/      one folder per shard, renamed into place when complete
        m000000-e03.pt                member 0 after 3 epochs: a plain state_dict (weights_only=True)
        records.json                  hyper-parameters, split and scores of the shard's checkpoints
    OUT/index.csv                     every checkpoint: member, epoch, split, hyper-parameters, scores
    OUT/labels.csv                    the same for 'wsgraph convert --labels': path, split, numeric targets
    OUT/summary.json                  counts, timings, score statistics

A shard is trained in a hidden ``checkpoints/.shard-NNNNN.partial`` folder and renamed
when all its files are written, so an interrupted run leaves no half shard; rerunning the
same command trains only the shards that are missing (members do not depend on each
other, so the result is the same as an uninterrupted run). A rerun with other settings
is refused. ``wsgraph convert OUT/checkpoints DATA --labels OUT/labels.csv`` turns the
zoo into a dataset whose regression targets are the scores (``--targets test_accuracy``),
with each member's checkpoints in the member's split.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from wsgraph.checks import entry_problem, is_number
from wsgraph.datasets.activation_file import write_activation_file
from wsgraph.datasets.store import SPLITS
from wsgraph.io import atomic_write, missing_folders, remove_empty_folders, write_json
from wsgraph.locks import LockedError, write_lock
from wsgraph.runtime import physical_memory
from wsgraph.zoo.hyperparams import MemberHyperparameters, SearchSpace, draw_member
from wsgraph.zoo.members import PADDING, STRIDE, MemberArchitecture
from wsgraph.zoo.training import Snapshot, ZooData, subset_size, train_group

ZOO_FILE, INDEX_CSV, LABELS_CSV, SUMMARY_JSON = "zoo.json", "index.csv", "labels.csv", "summary.json"
CHECKPOINTS, RECORDS, GEOMETRY_JSON = "checkpoints", "records.json", "geometry.json"
FORMAT = "wsgraph-zoo"
# Member splits for the generalization task (train/val/test of the weight-space model).
SPLIT_RATIOS = (0.8, 0.1, 0.1)
MAX_MEMBERS = 10_000_000
# The numeric columns of labels.csv, in order: what a weight-space model can be asked to predict.
TARGET_COLUMNS = (
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
    "generalization_gap",
    "epoch",
    "lr",
    "weight_decay",
    "init_scale",
    "dropout",
    "train_fraction",
)


@dataclass(frozen=True)
class ZooPlan:
    """Every setting that decides a zoo's members (stored in ``zoo.json``; a resume must match)."""

    source: str
    architecture: MemberArchitecture
    count: int
    seed: int = 0
    space: SearchSpace = field(default_factory=SearchSpace)
    batch_size: int = 32
    save_epochs: tuple[int, ...] = ()
    train_eval_size: int = 1000
    test_size: int | None = None
    shard_size: int = 256
    group_size: int = 32

    def __post_init__(self) -> None:
        for name in ("count", "batch_size", "shard_size", "group_size", "train_eval_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        # Far past any zoo a machine trains; an absurd count would only show as a plan that never ends.
        if self.count > MAX_MEMBERS:
            raise ValueError(f"--count must be at most {MAX_MEMBERS:,}, got {self.count}")
        if self.test_size is not None and self.test_size < 1:
            raise ValueError(f"--test-size must be at least 1, got {self.test_size}")
        if any(epoch < 0 for epoch in self.save_epochs):
            raise ValueError(f"--save-epochs must be epochs >= 0, got {list(self.save_epochs)}")
        longest = self.space.epochs[1]
        if any(epoch > longest for epoch in self.save_epochs):
            raise ValueError(
                f"--save-epochs {max(self.save_epochs)}: no member trains that long (--epochs at most {longest})"
            )
        # numpy's seed sequences, which draw every member, take non-negative seeds only.
        if self.seed < 0:
            raise ValueError(f"--seed must be at least 0, got {self.seed}")
        self._check_group_memory()

    def _check_group_memory(self) -> None:
        """Refuse a group whose parameters, gradients and Adam moments alone (float32) exceed the machine's
        memory: the allocator would fail deep inside the first shard, naming neither --width nor --group-size."""
        members = min(self.group_size, self.count)
        needed = self.architecture.num_parameters * members * 4 * 4
        total = physical_memory()
        if total is not None and needed > total:
            raise ValueError(
                f"--width {self.architecture.width} with --group-size {members}: a group's parameters and optimiser "
                f"state alone need {needed / 2**30:,.1f} GiB, more than this machine's {total / 2**30:,.1f} GiB; "
                "lower --width or --group-size"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "architecture": self.architecture.to_dict(),
            "count": self.count,
            "seed": self.seed,
            "space": self.space.to_dict(),
            "batch_size": self.batch_size,
            "save_epochs": list(self.save_epochs),
            "train_eval_size": self.train_eval_size,
            "test_size": self.test_size,
            "shard_size": self.shard_size,
            "group_size": self.group_size,
        }

    @property
    def num_shards(self) -> int:
        return math.ceil(self.count / self.shard_size)

    def members(self, start: int, stop: int) -> list[MemberHyperparameters]:
        return [draw_member(self.space, self.seed, member) for member in range(start, stop)]


def member_split(seed: int, member: int) -> str:
    """The split of ``member`` for the weight-space task (80/10/10, seeded, independent of other members)."""
    draw = np.random.default_rng([int(seed), int(member), 0x5B1]).uniform()
    cumulative = np.cumsum(SPLIT_RATIOS)
    return SPLITS[int(np.searchsorted(cumulative, draw, side="right"))]


def checkpoint_name(member: int, epoch: int) -> str:
    return f"m{member:06d}-e{epoch:02d}.pt"


def shard_folder(out: Path, number: int) -> Path:
    return out / CHECKPOINTS / f"shard-{number:05d}"


def build_zoo(
    plan: ZooPlan, data: ZooData, out: str | os.PathLike, *, progress: bool = True, workers: int | None = None
) -> dict[str, Any]:
    """Train the zoo of ``plan`` into ``out`` (or finish an interrupted one); returns the summary.

    Args:
        plan: what to train.
        data: the training pool and the test images (as the plan's source gave them).
        out: the zoo folder.
        progress: show a progress bar.
        workers: groups trained at once, each on one CPU thread (default: torch's thread count).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    made = missing_folders(out)
    try:
        with write_lock(out, "wsgraph zoo"):
            return _build_locked(plan, data, out, progress, workers or torch.get_num_threads())
    except LockedError:
        raise  # the folder is another process's
    except BaseException:
        # A zoo this call started that failed before finishing a shard holds nothing worth keeping; removed
        # once the lock (a file beside it) is gone, so that the folders this call made go too.
        if out in made and out.is_dir() and not _finished_shards(out):
            shutil.rmtree(out, ignore_errors=True)
            remove_empty_folders(made)
        raise


def _build_locked(plan: ZooPlan, data: ZooData, out: Path, progress: bool, workers: int) -> dict[str, Any]:
    document = {"format": FORMAT, "version": 1, "plan": plan.to_dict(), "num_shards": plan.num_shards}
    pool = data.train_images.size(0)
    if pool < plan.batch_size:
        raise ValueError(f"--batch-size {plan.batch_size}: the training pool has only {pool} images")
    zoo_file = out / ZOO_FILE
    if zoo_file.is_file():
        from wsgraph.training.metrics import read_json

        old = read_json(zoo_file)
        if not isinstance(old, dict) or old.get("format") != FORMAT or not isinstance(old.get("plan"), dict):
            raise ValueError(f"{zoo_file}: not a wsgraph zoo; use another --out folder")
        # A zoo that failed before finishing a shard holds no member: a corrected command may start it again.
        if old.get("plan") != document["plan"] and _finished_shards(out):
            changed = sorted(k for k in document["plan"] if old.get("plan", {}).get(k) != document["plan"][k])
            detail = ", ".join(f"{k}: {old['plan'].get(k)!r} -> {document['plan'][k]!r}" for k in changed[:3])
            raise ValueError(f"{out}: holds a zoo made with other settings ({detail}); use another --out folder")
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists, is not empty and holds no {ZOO_FILE}; use an empty --out folder")
    write_json(zoo_file, document)
    (out / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    if plan.architecture.arch == "cnn":
        # A state_dict holds no strides or paddings; 'wsgraph convert' reads them from here.
        write_json(out / CHECKPOINTS / GEOMETRY_JSON, {"stride": STRIDE, "padding": PADDING})
    else:
        # Left by a CNN zoo that failed before its first shard and was started again as an MLP zoo.
        (out / CHECKPOINTS / GEOMETRY_JSON).unlink(missing_ok=True)
    for stale in (out / CHECKPOINTS).glob(".shard-*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    done = [n for n in range(plan.num_shards) if (shard_folder(out, n) / RECORDS).is_file()]
    with tqdm(total=plan.count, unit="net", desc="zoo", disable=not progress, dynamic_ncols=True) as bar:
        bar.update(sum(min(plan.shard_size, plan.count - n * plan.shard_size) for n in done))
        for number in range(plan.num_shards):
            if number in done:
                continue
            _train_shard(plan, data, out, number, bar.update, workers)
    return write_index(plan, out)


def _finished_shards(out: Path) -> list[Path]:
    """The shard folders of ``out`` that a run finished (any plan's)."""
    return [records.parent for records in (out / CHECKPOINTS).glob(f"shard-*/{RECORDS}")]


def _groups(plan: ZooPlan, members: list[MemberHyperparameters], pool: int) -> list[list[MemberHyperparameters]]:
    """Members of one activation, similar step counts together (a group runs as long as its longest member)."""

    def steps(member: MemberHyperparameters) -> int:
        return member.epochs * (subset_size(member, pool, plan.batch_size) // plan.batch_size)

    groups = []
    for activation in sorted({member.activation for member in members}):
        same = sorted((m for m in members if m.activation == activation), key=lambda m: (steps(m), m.member))
        groups += [same[i : i + plan.group_size] for i in range(0, len(same), plan.group_size)]
    return groups


def _train_shard(plan: ZooPlan, data: ZooData, out: Path, number: int, advance, workers: int) -> None:
    started = time.perf_counter()
    start, stop = number * plan.shard_size, min(plan.count, (number + 1) * plan.shard_size)
    members = plan.members(start, stop)
    groups = _groups(plan, members, data.train_images.size(0))

    def run(group: list[MemberHyperparameters]) -> list[Snapshot]:
        snapshots = train_group(plan.architecture, group, data, plan.batch_size, plan.save_epochs, plan.train_eval_size)
        advance(len(group))
        return snapshots

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max(1, min(workers, len(groups)))) as pool:
            snapshots = [s for group in pool.map(run, groups) for s in group]
    finally:
        torch.set_num_threads(threads)
    snapshots.sort(key=lambda s: (s.member, s.epoch))
    by_member = {member.member: member for member in members}
    final = out / CHECKPOINTS / f"shard-{number:05d}"
    partial = out / CHECKPOINTS / f".shard-{number:05d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    records = []
    for snapshot in snapshots:
        member = by_member[snapshot.member]
        finite = all(bool(torch.isfinite(t).all()) for t in snapshot.state_dict.values())
        name = checkpoint_name(snapshot.member, snapshot.epoch)
        if finite:
            # Written straight into the partial folder: the folder's rename is what makes the shard appear.
            torch.save(snapshot.state_dict, partial / name)
        records.append(_record(plan, member, snapshot, f"{final.name}/{name}" if finite else None))
    seconds = time.perf_counter() - started
    write_json(partial / RECORDS, {"shard": number, "members": [start, stop], "seconds": seconds, "records": records})
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)


def _record(plan: ZooPlan, member: MemberHyperparameters, snapshot: Snapshot, path: str | None) -> dict[str, Any]:
    record = member.to_dict()
    del record["key"]
    record.update(
        path=path,
        epoch=snapshot.epoch,
        final=snapshot.epoch == member.epochs,
        split=member_split(plan.seed, member.member),
        test_accuracy=snapshot.test_accuracy,
        test_loss=snapshot.test_loss,
        train_accuracy=snapshot.train_accuracy,
        train_loss=snapshot.train_loss,
        generalization_gap=snapshot.train_accuracy - snapshot.test_accuracy,
    )
    return record


# The fields of a checkpoint record (see `_record`) and the JSON types each may hold.
_NUMBER = (int, float)
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "member": (int,), "epoch": (int,), "epochs": (int,), "final": (bool,), "split": (str,),
    "path": (str, type(None)), "activation": (str,), "init_family": (str,), "lr": _NUMBER,
    "weight_decay": _NUMBER, "init_scale": _NUMBER, "dropout": _NUMBER, "train_fraction": _NUMBER,
    "test_accuracy": _NUMBER, "test_loss": _NUMBER, "train_accuracy": _NUMBER, "train_loss": _NUMBER,
    "generalization_gap": _NUMBER,
}  # fmt: skip


def read_records(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every checkpoint record of the zoo's finished shards, ordered by member and epoch."""
    return _ordered(_read_shard_records(Path(out)))


def _ordered(shard_records: list[tuple[float, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The records of every shard, ordered by member and epoch."""
    records = [record for _, records in shard_records for record in records]
    return sorted(records, key=lambda r: (r["member"], r["epoch"]))


def _read_shard_records(out: Path) -> list[tuple[float, list[dict[str, Any]]]]:
    """Every finished shard's training seconds and records, checked: a zoo folder may come
    from someone else, and its records name the files that are then loaded."""
    from wsgraph.training.metrics import read_json

    shards = []
    # A path or a (member, epoch) that two records claim would count one checkpoint twice.
    seen_paths: dict[str, Path] = {}
    seen_checkpoints: dict[tuple[int, int], Path] = {}
    for folder in sorted((out / CHECKPOINTS).glob("shard-*")):
        path = folder / RECORDS
        if not path.is_file():
            continue
        document = read_json(path)
        records = document.get("records") if isinstance(document, dict) else None
        seconds = document.get("seconds") if isinstance(document, dict) else None
        if not isinstance(records, list) or not is_number(seconds):
            raise ValueError(f"{path}: not a zoo shard's records (expected 'records', a list, and 'seconds')")
        for number, record in enumerate(records):
            problem = _record_problem(record)
            if problem:
                raise ValueError(f"{path}: record {number}: {problem}")
            checkpoint = (record["member"], record["epoch"])
            if checkpoint in seen_checkpoints:
                raise ValueError(
                    f"{path}: record {number}: member {checkpoint[0]} after epoch {checkpoint[1]} is recorded twice "
                    f"(also in {seen_checkpoints[checkpoint]}); a zoo records each checkpoint once"
                )
            if record["path"] is not None and record["path"] in seen_paths:
                raise ValueError(
                    f"{path}: record {number}: path {record['path']!r} is recorded twice (also in "
                    f"{seen_paths[record['path']]}); a zoo records each checkpoint once"
                )
            seen_checkpoints[checkpoint] = path
            if record["path"] is not None:
                seen_paths[record["path"]] = path
        shards.append((float(seconds), records))
    return shards


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"a {type(record).__name__}, not an object"
    problem = entry_problem(record, RECORD_FIELDS)
    if problem:
        return problem
    if record["member"] < 0 or record["epoch"] < 0 or record["split"] not in SPLITS:
        return f"member {record['member']}, epoch {record['epoch']}, split {record['split']!r} out of range"
    path = record["path"]
    if path is not None and (Path(path).is_absolute() or ".." in Path(path).parts or "\\" in path):
        return f"path {path!r} leaves the zoo's checkpoints folder"
    return None


def write_index(plan: ZooPlan, out: Path) -> dict[str, Any]:
    """Write ``index.csv``, ``labels.csv`` and ``summary.json`` from the shards' records."""
    shard_records = _read_shard_records(out)
    records = _ordered(shard_records)
    columns = [
        "path", "member", "epoch", "final", "split", "activation", "init_family", "lr", "weight_decay",
        "init_scale", "dropout", "train_fraction", "epochs", "test_accuracy", "test_loss", "train_accuracy",
        "train_loss", "generalization_gap",
    ]  # fmt: skip
    _write_csv(out / INDEX_CSV, columns, [[_cell(r[c]) for c in columns] for r in records])
    saved = [r for r in records if r["path"] is not None]
    _write_csv(
        out / LABELS_CSV,
        ["path", "split", *TARGET_COLUMNS],
        [[r["path"], r["split"], *(_cell(r[c]) for c in TARGET_COLUMNS)] for r in saved],
    )
    # A state_dict cannot say its activation; 'wsgraph convert' records each member's own from here.
    write_activation_file(out / CHECKPOINTS, {r["path"]: r["activation"] for r in saved})
    shards = [seconds for seconds, _ in shard_records]
    final = [r for r in records if r["final"]]
    accuracies = np.array([r["test_accuracy"] for r in final], dtype=np.float64)
    summary = {
        "plan": plan.to_dict(),
        "members": len({r["member"] for r in records}),
        "checkpoints": len(saved),
        "not_saved_non_finite": len(records) - len(saved),
        "parameters_per_member": plan.architecture.num_parameters,
        "splits": {name: sum(1 for r in final if r["split"] == name) for name in SPLITS},
        "final_test_accuracy": _describe(accuracies),
        "train_seconds": float(sum(shards)),
        "members_per_minute": 60.0 * len(final) / sum(shards) if shards and sum(shards) > 0 else math.nan,
        "convert": f"wsgraph convert {out / CHECKPOINTS} DATA --labels {out / LABELS_CSV}",
    }
    write_json(out / SUMMARY_JSON, summary)
    return summary


def _describe(values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {}
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue().encode()))
