"""Model-zoo training speed: members per minute of ``wsgraph zoo`` with its default settings.

Trains ``--members`` members (default 128, one shard) of the default zoo (Small CNN Zoo
network on MNIST, the default hyper-parameter ranges, batch 32, the whole 10,000-image
test split evaluated per member) for each ``--group-sizes`` value, timing the shard
(training and evaluation; the one-off image loading is timed apart), and extrapolates
linearly to ``--target-members`` (default 2,000): the table labels that column as an
extrapolation. Members of a zoo are independent and every shard costs the same on
average, so a zoo's time is its shard count times a shard's. Prints a markdown table and
writes JSON (default ``benchmarks/results/zoo_<hostname>.json``).

Run: ``python benchmarks/bench_zoo.py [--root data/mnist] [--members 128] [--group-sizes 32,64] [--arch cnn]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from wsgraph.io import write_json
from wsgraph.zoo.build import ZooPlan, build_zoo
from wsgraph.zoo.data import load_zoo_data
from wsgraph.zoo.members import DEFAULT_WIDTH, MemberArchitecture

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, load_average, markdown_table, tune_allocator

DEFAULT_ROOT = Path(os.environ.get("WSGRAPH_MNIST_ROOT", Path(__file__).resolve().parents[1] / "data" / "mnist"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="mnist")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--arch", default="cnn", choices=("cnn", "mlp"))
    parser.add_argument("--members", type=int, default=128, help="members timed per group size (one shard)")
    parser.add_argument("--group-sizes", default="32", help="comma-separated members per batched group")
    parser.add_argument("--target-members", type=int, default=2000, help="zoo size to extrapolate to")
    parser.add_argument("--target-minutes", type=float, default=60.0, help="the time that zoo should take")
    add_common_flags(parser, "zoo")
    args = parser.parse_args()
    tune_allocator(args.default_malloc)
    started = time.perf_counter()
    data, shape, classes = load_zoo_data(args.source, args.root if args.source != "digits" else None)
    load_seconds = time.perf_counter() - started
    architecture = MemberArchitecture(args.arch, shape, classes, DEFAULT_WIDTH[args.arch])
    rows, results = [], []
    for group_size in (int(g) for g in args.group_sizes.split(",")):
        plan = ZooPlan(
            source=args.source,
            architecture=architecture,
            count=args.members,
            shard_size=args.members,
            group_size=group_size,
        )
        before = load_average()
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            summary = build_zoo(plan, data, Path(folder) / "zoo", progress=False)
            seconds = time.perf_counter() - started
        per_minute = 60.0 * args.members / seconds
        extrapolated = args.target_members / per_minute
        results.append(
            {
                "group_size": group_size,
                "members": args.members,
                "seconds": seconds,
                "members_per_minute": per_minute,
                "extrapolated_minutes_for_target": extrapolated,
                "mean_final_test_accuracy": summary["final_test_accuracy"].get("mean"),
                "plan": plan.to_dict(),
                "load_average_before": before,
                "load_average_after": load_average(),
            }
        )
        rows.append(
            [
                group_size,
                args.members,
                f"{seconds:.1f}",
                f"{per_minute:.1f}",
                f"{extrapolated:.1f} (extrapolated)",
                "yes" if extrapolated <= args.target_minutes else "no",
                f"{summary['final_test_accuracy'].get('mean', float('nan')):.4f}",
            ]
        )
    print(
        f"{args.arch} zoo on {args.source}, {torch.get_num_threads()} threads; images loaded in {load_seconds:.1f} s "
        f"(once per run)"
    )
    print(
        markdown_table(
            [
                "group size",
                "members timed",
                "seconds",
                "members/min",
                f"minutes for {args.target_members:,}",
                f"<= {args.target_minutes:g} min",
                "mean test acc.",
            ],
            rows,
            "rrrrrcr",
        )
    )
    write_json(
        args.out,
        {
            "benchmark": "zoo",
            "source": args.source,
            "arch": args.arch,
            "load_seconds": load_seconds,
            "target_members": args.target_members,
            "target_minutes": args.target_minutes,
            "results": results,
            "environment": environment(),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
