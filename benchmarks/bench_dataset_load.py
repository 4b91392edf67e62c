"""WeightSpaceDataset speed on an MNIST-sized store: processing, reopening, items and batches.

Writes a store of ``--networks`` (default 70,000) random networks of widths ``--widths``
(default 2-32-32-1, the MNIST INR architecture) in shards of 10,000 with the MNIST split
sizes scaled (55/5/10 of 70), then times: the first open (processing), reopening all
networks and each split from the cache, ``dataset[i]``, and batches of 128 from
``torch_geometric.loader.DataLoader``. Prints a markdown table and writes the numbers as
JSON (default ``benchmarks/results/dataset_load_<hostname>.json``).

Like the ``wsgraph`` commands it first tunes glibc's allocator
(``wsgraph.runtime.tune_cpu_allocator``); ``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_dataset_load.py [--networks N] [--widths 2-32-32-1] [--out FILE] [--default-malloc]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch_geometric.loader import DataLoader

from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import Shard, write_meta, write_shard
from wsgraph.io import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, machine_summary, markdown_table, timed, tune_allocator

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


def run(count: int, spec: WeightSpaceSpec, tuned_allocator: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wsgraph-bench-dataset-") as scratch:
        root = Path(scratch)
        write_store(root, count, spec)
        rows = []
        _, (first, _) = timed(lambda: WeightSpaceDataset(root, log=False))
        rows.append({"step": f"first open, all {count} (process)", "seconds": first})
        dataset, (reopen, _) = timed(lambda: WeightSpaceDataset(root, log=False))
        rows.append({"step": f"reopen, all {len(dataset)} (cached)", "seconds": reopen})
        for split in ("train", "val", "test"):
            subset, (elapsed, _) = timed(lambda split=split: WeightSpaceDataset(root, split=split, log=False))
            rows.append({"step": f"reopen split={split!r} ({len(subset)})", "seconds": elapsed})
        _, (items, _) = timed(lambda: [dataset[i] for i in range(TIMED_ITEMS)])
        rows.append({"step": "dataset[i], per item", "seconds": items / TIMED_ITEMS})
        loader = iter(DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True))
        _, (batches, _) = timed(lambda: [next(loader) for _ in range(TIMED_BATCHES)])
        rows.append({"step": f"DataLoader batch of {BATCH_SIZE}, per batch", "seconds": batches / TIMED_BATCHES})
        processed_bytes = sum(path.stat().st_size for path in (root / "processed").iterdir())
    return {
        "benchmark": "dataset_load",
        "networks": count,
        "widths": str(spec),
        "processed_mib": processed_bytes / 2**20,
        "results": rows,
        "tuned_allocator": tuned_allocator,
        **environment(),
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [[row["step"], f"{row['seconds']:.4g}"] for row in report["results"]]
    heading = (
        f"{report['networks']} networks of {report['widths']}, processed cache {report['processed_mib']:.0f} MiB, "
        f"{machine_summary(report)}"
    )
    return heading + "\n\n" + markdown_table(["step", "seconds"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=70_000, help="networks in the store (default: 70000)")
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 32, 32, 1)))
    add_common_flags(parser, "dataset_load")
    args = parser.parse_args(argv)
    smallest = max(TIMED_ITEMS, TIMED_BATCHES * BATCH_SIZE)
    if args.networks < smallest:
        parser.error(f"--networks must be at least {smallest}")
    tuned = tune_allocator(args.default_malloc)
    report = run(args.networks, args.widths, tuned)
    out = args.out
    write_json(out, report)
    print(markdown(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
