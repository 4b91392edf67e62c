"""Vectorised conversion speed: stacked parameters of many networks -> one Batch -> back.

Converts ``--networks`` (default 10,000) networks of widths ``--widths`` (default
2-32-32-1) with ``wsgraph.mlp_to_graph`` on stacked ``([B, out, in], [B, out])`` pairs,
and back with ``wsgraph.stacked_params``, ``--repeats`` times each; prints a markdown
table (median and best time, networks per second) and writes the numbers as JSON
(default ``benchmarks/results/convert_<hostname>.json``).

Run: ``python benchmarks/bench_convert.py [--networks N] [--widths 2-32-32-1] [--repeats R] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import socket
import statistics
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

import wsgraph
from wsgraph.spec import WeightSpaceSpec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The target for the forward conversion of 10,000 networks of 2-32-32-1 on a 2-core CPU.
TARGET_SECONDS = 1.0


def stacked_networks(spec: WeightSpaceSpec, count: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random stacked ``([count, out, in], [count, out])`` pairs, one per weight layer of ``spec``."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(count, d_out, d_in, generator=generator), torch.randn(count, d_out, generator=generator))
        for d_in, d_out in pairwise(spec.widths)
    ]


def time_calls(function: Callable[[], Any], repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls, after one untimed warm-up call."""
    function()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def hardware() -> str:
    """The CPU model where Linux says it, else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run(networks: int, spec: WeightSpaceSpec, repeats: int) -> dict[str, Any]:
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
    rows = [
        {
            "operation": name,
            "median_s": statistics.median(seconds),
            "min_s": min(seconds),
            "networks_per_s": networks / statistics.median(seconds),
            "all_s": seconds,
        }
        for name, seconds in timings.items()
    ]
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
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hardware": hardware(),
        "hostname": socket.gethostname(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['networks']} networks of {report['widths']} ({report['edges']} edges, {report['nodes']} nodes), "
        f"{report['repeats']} repeats, torch {report['torch']}, {report['cpu_count']} CPUs ({report['hardware']})",
        "",
        "| operation | median s | min s | networks/s |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {row['operation']} | {row['median_s']:.3f} | {row['min_s']:.3f} | {row['networks_per_s']:,.0f} |"
        for row in report["results"]
    ]
    return "\n".join(lines)


def write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        temporary.write_text(json.dumps(content, indent=2) + "\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10_000, help="networks per conversion (default: 10000)")
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 32, 32, 1)))
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions (default: 5)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/convert_<hostname>.json)")
    args = parser.parse_args(argv)
    if args.networks < 1 or args.repeats < 1:
        parser.error("--networks and --repeats must be positive")
    report = run(args.networks, args.widths, args.repeats)
    out = args.out or RESULTS_DIR / f"convert_{socket.gethostname()}.json"
    write_json(out, report)
    print(markdown(report))
    forward = report["results"][0]["median_s"]
    verdict = "meets" if forward < TARGET_SECONDS else "MISSES"
    print(f"\nforward conversion {verdict} the {TARGET_SECONDS:.0f} s target (median {forward:.3f} s); wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
