"""WeightSpaceDataset speed on an MNIST-sized store: processing, reopening, items and batches.

Writes a store of ``--networks`` (default 70,000) random networks of widths ``--widths``
(default 2-32-32-1, the MNIST INR architecture) in shards of 10,000 with the MNIST split
sizes scaled (55/5/10 of 70), then times: the first open (processing), reopening all
networks and each split from the cache, ``dataset[i]``, and batches of 128 from
``torch_geometric.loader.DataLoader``. Prints a markdown table and writes the numbers as
JSON (default ``benchmarks/results/dataset_load_<hostname>.json``).

Run: ``python benchmarks/bench_dataset_load.py [--networks N] [--widths 2-32-32-1] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch_geometric.loader import DataLoader

from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import Shard, atomic_write, write_meta, write_shard
from wsgraph.spec import WeightSpaceSpec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SHARD_SIZE = 10_000
SPLIT_FRACTIONS = (55 / 70, 5 / 70, 10 / 70)
BATCH_SIZE = 128
TIMED_BATCHES = 50
TIMED_ITEMS = 2_000


def write_store(root: Path, count: int, spec: WeightSpaceSpec) -> None:
    generator = torch.Generator().manual_seed(0)
    train, val = round(SPLIT_FRACTIONS[0] * count), round(SPLIT_FRACTIONS[1] * count)
    split = torch.full((count,), 2, dtype=torch.uint8)
    split[:train] = 0
    split[train : train + val] = 1
    for number, start in enumerate(range(0, count, SHARD_SIZE)):
        rows = min(SHARD_SIZE, count - start)
        shard = Shard(
            [torch.randn(rows, d_out, d_in, generator=generator) for d_in, d_out in pairwise(spec.widths)],
            [torch.randn(rows, d_out, generator=generator) for d_out in spec.widths[1:]],
            torch.randint(0, 10, (rows,), generator=generator),
            split[start : start + rows],
            torch.arange(start, start + rows),
            {"psnr": torch.rand(rows, generator=generator) * 10 + 25},
        )
        write_shard(root, number, shard)
    write_meta(root, {"kind": "inr", "task": "classification", "num_classes": 10, "activation": "sine(30.0)"})


def seconds(function: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def run(count: int, spec: WeightSpaceSpec) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsgraph-bench-dataset-") as scratch:
        root = Path(scratch)
        write_store(root, count, spec)
        rows = []
        _, first = seconds(lambda: WeightSpaceDataset(root, log=False))
        rows.append({"step": f"first open, all {count} (process)", "seconds": first})
        dataset, reopen = seconds(lambda: WeightSpaceDataset(root, log=False))
        rows.append({"step": f"reopen, all {len(dataset)} (cached)", "seconds": reopen})
        for split in ("train", "val", "test"):
            subset, elapsed = seconds(lambda split=split: WeightSpaceDataset(root, split=split, log=False))
            rows.append({"step": f"reopen split={split!r} ({len(subset)})", "seconds": elapsed})
        _, items = seconds(lambda: [dataset[i] for i in range(TIMED_ITEMS)])
        rows.append({"step": "dataset[i], per item", "seconds": items / TIMED_ITEMS})
        loader = iter(DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True))
        _, batches = seconds(lambda: [next(loader) for _ in range(TIMED_BATCHES)])
        rows.append({"step": f"DataLoader batch of {BATCH_SIZE}, per batch", "seconds": batches / TIMED_BATCHES})
        processed_bytes = sum(path.stat().st_size for path in (root / "processed").iterdir())
    return {
        "benchmark": "dataset_load",
        "networks": count,
        "widths": str(spec),
        "processed_mib": processed_bytes / 2**20,
        "results": rows,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hostname": socket.gethostname(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def markdown(report: dict[str, Any]) -> str:
    load = report["load_average"]
    lines = [
        f"{report['networks']} networks of {report['widths']}, processed cache {report['processed_mib']:.0f} MiB, "
        f"torch {report['torch']}, {report['cpu_count']} CPUs" + (f", load average {load[0]:.1f}" if load else ""),
        "",
        "| step | seconds |",
        "| --- | --- |",
    ]
    lines += [f"| {row['step']} | {row['seconds']:.4g} |" for row in report["results"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=70_000, help="networks in the store (default: 70000)")
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 32, 32, 1)))
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/dataset_load_<host>.json)")
    args = parser.parse_args(argv)
    smallest = max(TIMED_ITEMS, TIMED_BATCHES * BATCH_SIZE)
    if args.networks < smallest:
        parser.error(f"--networks must be at least {smallest}")
    report = run(args.networks, args.widths)
    out = args.out or RESULTS_DIR / f"dataset_load_{socket.gethostname()}.json"
    text = json.dumps(report, indent=2) + "\n"
    atomic_write(out, lambda handle: handle.write(text.encode()))
    print(markdown(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
