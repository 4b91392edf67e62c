"""Vectorised conversion speed: stacked parameters of many networks -> one Batch -> back.

Converts ``--networks`` (default 10,000) networks of widths ``--widths`` (default
2-32-32-1) with ``wsgraph.mlp_to_graph`` on stacked ``([B, out, in], [B, out])`` pairs,
and back with ``wsgraph.stacked_params``, ``--repeats`` times each; prints a markdown
table (median and best time, networks per second) and writes the numbers as JSON
(default ``benchmarks/results/convert_<hostname>.json``).

Like the ``wsgraph`` commands it first tunes glibc's allocator
(``wsgraph.runtime.tune_cpu_allocator``); ``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_convert.py [--networks N] [--widths 2-32-32-1] [--repeats R] [--out FILE]
[--default-malloc]``
"""

from __future__ import annotations

import argparse
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

import wsgraph
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.io import write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    add_common_flags,
    environment,
    machine_summary,
    markdown_table,
    summarize,
    time_calls,
    tune_allocator,
)

# The target for the forward conversion of 10,000 networks of 2-32-32-1 on a 2-core CPU.
TARGET_SECONDS = 1.0


def stacked_networks(spec: WeightSpaceSpec, count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random stacked ``([count, out, in], [count, out])`` pairs, one per weight layer of ``spec``."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(count, d_out, d_in, generator=generator), torch.randn(count, d_out, generator=generator))
        for d_in, d_out in pairwise(spec.widths)
    ]


def run(networks: int, spec: WeightSpaceSpec, repeats: int, tuned_allocator: bool) -> dict[str, Any]:
    pairs = stacked_networks(spec, networks)
    batch = wsgraph.mlp_to_graph(pairs)
    exact = all(
        torch.equal(a, b) for pair, back in zip(pairs, wsgraph.stacked_params(batch)) for a, b in zip(pair, back)
    )
    if not exact:
        raise RuntimeError("stacked_params(mlp_to_graph(pairs)) does not give back pairs exactly")
    timings = {
        "forward: mlp_to_graph(stacked pairs) -> Batch": time_calls(lambda: wsgraph.mlp_to_graph(pairs), repeats),
        "inverse: stacked_params(Batch)": time_calls(lambda: wsgraph.stacked_params(batch), repeats),
    }
    rows = []
    for name, seconds in timings.items():
        timing = summarize(seconds)
        rows.append({"operation": name, **timing, "networks_per_s": networks / timing["median_s"]})
    return {
        "benchmark": "convert",
        "networks": networks,
        "widths": str(spec),
        "nodes": batch.num_nodes,
        "edges": batch.num_edges,
        "repeats": repeats,
        "round_trip_exact": exact,
        "target_forward_s": TARGET_SECONDS,
        "results": rows,
        "tuned_allocator": tuned_allocator,
        **environment(),
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        [row["operation"], f"{row['median_s']:.3f}", f"{row['min_s']:.3f}", f"{row['networks_per_s']:,.0f}"]
        for row in report["results"]
    ]
    heading = (
        f"{report['networks']} networks of {report['widths']} ({report['edges']} edges, {report['nodes']} nodes), "
        f"{report['repeats']} repeats, {machine_summary(report)}"
    )
    return heading + "\n\n" + markdown_table(["operation", "median s", "min s", "networks/s"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10_000, help="networks per conversion (default: 10000)")
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 32, 32, 1)))
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (default: 5)")
    add_common_flags(parser, "convert")
    args = parser.parse_args(argv)
    if args.networks < 1 or args.repeats < 1:
        parser.error("--networks and --repeats must be positive")
    tuned = tune_allocator(args.default_malloc)
    report = run(args.networks, args.widths, args.repeats, tuned)
    out = args.out
    write_json(out, report)
    print(markdown(report))
    forward = report["results"][0]["median_s"]
    verdict = "meets" if forward < TARGET_SECONDS else "MISSES"
    print(f"\nforward conversion {verdict} the {TARGET_SECONDS:.0f} s target (median {forward:.3f} s); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
