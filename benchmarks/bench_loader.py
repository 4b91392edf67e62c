"""Data loading against a DWSNet training step: is the loader a bottleneck?

Builds (once) a dataset root of ``--count`` random networks of ``--widths`` (default
70,000 of 2-32-32-1, split 55k/5k/10k like MNIST INRs) under ``--root``, opens its train
split, and times per batch of ``--batch-size`` (default 512):

* PyG's ``torch_geometric.loader.DataLoader`` over the dataset's graphs (shuffled,
  in-process), plus the per-layer normalisation every run applies;
* ``wsgraph.training.loaders.StackedLoader`` (slices the stored stacked tensors and
  builds the batch with ``wsgraph.core.graph.assemble``), plus the same normalisation;
* one DWSNet training step (the default ``wsgraph train --model dwsnet``: 4 DWS layers,
  32 channels, mean readout, 10 classes; forward, backward, AdamW) on such a batch.

Prints a markdown table (milliseconds per batch and share of the DWSNet step) and
writes JSON (default ``benchmarks/results/loader_<hostname>.json``). Like the ``wsgraph``
commands it first tunes glibc's allocator (``wsgraph.runtime.tune_cpu_allocator``);
``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_loader.py [--root data/loader70k] [--batches 10] [--steps 3] [--out FILE]
[--default-malloc]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from itertools import pairwise
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets import WeightSpaceDataset
from wsgraph.datasets.store import SPLITS, Shard, shard_paths, write_meta, write_shard
from wsgraph.io import write_json
from wsgraph.training.data import SplitData
from wsgraph.training.distributed import DistributedContext
from wsgraph.training.loaders import EpochPlan, StackedLoader
from wsgraph.training.registry import build_model, model_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, markdown_table, time_calls, tune_allocator

SPLIT_SIZES = {"train": 55_000, "val": 5_000, "test": 10_000}
SHARD_SIZE = 10_000
NUM_CLASSES = 10


def make_root(root: Path, spec: WeightSpaceSpec, count: int) -> None:
    """Random networks with random labels, in shards, split in MNIST's proportions."""
    generator = torch.Generator().manual_seed(0)
    fractions = torch.tensor([SPLIT_SIZES[name] for name in SPLITS], dtype=torch.float) / sum(SPLIT_SIZES.values())
    counts = (fractions * count).long()
    counts[0] += count - counts.sum()
    split = torch.repeat_interleave(torch.arange(len(SPLITS), dtype=torch.uint8), counts)
    split = split[torch.randperm(count, generator=generator)]
    for number, start in enumerate(range(0, count, SHARD_SIZE)):
        rows = torch.arange(start, min(start + SHARD_SIZE, count))
        weights = [torch.randn(len(rows), d_out, d_in, generator=generator) for d_in, d_out in pairwise(spec.widths)]
        biases = [torch.randn(len(rows), d_out, generator=generator) for d_out in spec.widths[1:]]
        labels = torch.randint(NUM_CLASSES, (len(rows),), generator=generator)
        write_shard(root, number, Shard(weights, biases, labels, split[rows], rows))
    write_meta(root, {"kind": "random", "task": "classification", "num_classes": NUM_CLASSES, "activation": "relu"})


def per_batch(iterator, count: int, prepare) -> list[float]:
    """Seconds to produce (and normalise) each of ``count`` batches after one warm-up batch."""
    return time_calls(lambda: prepare(next(iterator)), count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("data/loader70k"))
    parser.add_argument("--count", type=int, default=70_000)
    parser.add_argument("--widths", default="2-32-32-1")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--batches", type=int, default=10, help="timed batches per loader")
    parser.add_argument("--steps", type=int, default=3, help="timed DWSNet steps")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    add_common_flags(parser, "loader")
    args = parser.parse_args()
    tuned = tune_allocator(args.default_malloc)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = WeightSpaceSpec.parse(args.widths)
    if not shard_paths(args.root):
        make_root(args.root, spec, args.count)
    dataset = WeightSpaceDataset(args.root, split="train")
    normalize = dataset.normalization

    pyg = iter(DataLoader(dataset, batch_size=args.batch_size, shuffle=True))
    pyg_seconds = per_batch(pyg, args.batches, normalize)

    context = DistributedContext(0, 1, 0, torch.device("cpu"))
    split = SplitData("train", dataset, torch.arange(len(dataset)))
    plan = EpochPlan(len(dataset), args.batch_size, shuffle=True, seed=0, context=context)
    stacked_loader = StackedLoader(split, spec, plan, torch.device("cpu"))
    stacked_seconds = per_batch(iter(stacked_loader), args.batches, normalize)

    model = build_model(model_spec("dwsnet", "classify", [spec], NUM_CLASSES))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = normalize(next(iter(stacked_loader)))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
        optimizer.step()

    step_seconds = time_calls(step, args.steps)
    step_ms = statistics.median(step_seconds) * 1e3
    rows = []
    for name, seconds in (("PyG DataLoader", pyg_seconds), ("StackedLoader", stacked_seconds)):
        ms = statistics.median(seconds) * 1e3
        rows.append([name, f"{ms:.1f}", f"{100 * ms / step_ms:.1f}%"])
    rows.append(["DWSNet training step", f"{step_ms:.1f}", "100%"])
    print(f"{len(dataset)} train networks of {spec}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print(markdown_table(["per batch of networks", "median ms", "share of a DWSNet step"], rows))
    out = args.out
    write_json(
        out,
        {
            "widths": str(spec),
            "train_networks": len(dataset),
            "batch_size": args.batch_size,
            "pyg_dataloader_s": pyg_seconds,
            "stacked_loader_s": stacked_seconds,
            "dwsnet_step_s": step_seconds,
            "tuned_allocator": tuned,
            "environment": environment(),
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
