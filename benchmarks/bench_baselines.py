"""Training-step speed of the baseline models: forward + backward + AdamW step on one batch.

Builds one batch of ``--batch-size`` (default 512) random networks of widths ``--widths``
(default 2-32-32-1) and, for each model of ``--models`` (default: the flat MLP at its
published sizes and the four PyG GNNs with ``--hidden-channels`` 64 and ``--rounds`` 4),
times ``--steps`` training steps after one untimed warm-up step. Prints a markdown table
(median and best step time, networks per second, parameters) and writes the numbers as
JSON (default ``benchmarks/results/baselines_<hostname>.json``).

On Linux, glibc hands every tensor above 32 MB back to the kernel when it is freed, and
the page faults of reallocating it can cost more than the arithmetic; running with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`` keeps that memory in the
process (the JSON records any ``MALLOC_*`` variables).

Run: ``python benchmarks/bench_baselines.py [--batch-size 512] [--widths 2-32-32-1] [--steps 3] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

import wsgraph
from wsgraph.layers import FlatMLP, WeightSpaceGNN, pna_degree_histogram
from wsgraph.spec import WeightSpaceSpec

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MODELS = ("mlp", "gine", "pna", "gatv2", "transformer")
NUM_CLASSES = 10


def random_batch(spec: WeightSpaceSpec, count: int, seed: int = 0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    pairs = [
        (torch.randn(count, d_out, d_in, generator=generator), torch.randn(count, d_out, generator=generator))
        for d_in, d_out in pairwise(spec.widths)
    ]
    labels = torch.randint(NUM_CLASSES, (count,), generator=generator)
    return wsgraph.mlp_to_graph(pairs, activation="relu", y=labels)


def build_model(name: str, spec: WeightSpaceSpec, hidden_channels: int, rounds: int) -> nn.Module:
    if name == "mlp":
        return FlatMLP(spec.num_params, NUM_CLASSES)
    return WeightSpaceGNN(
        name,
        spec.num_layers,
        spec.in_dim,
        spec.out_dim,
        NUM_CLASSES,
        hidden_channels=hidden_channels,
        num_rounds=rounds,
        pna_degree=pna_degree_histogram([spec]) if name == "pna" else None,
    )


def time_training_steps(model: nn.Module, batch: Any, steps: int) -> list[float]:
    """Wall-clock seconds of ``steps`` training steps, after one untimed warm-up step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(batch), batch.y)
        loss.backward()
        optimizer.step()

    step()
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
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


def run(models: list[str], spec: WeightSpaceSpec, batch_size: int, hidden_channels: int, rounds: int, steps: int):
    batch = random_batch(spec, batch_size)
    rows = []
    for name in models:
        torch.manual_seed(0)
        model = build_model(name, spec, hidden_channels, rounds)
        seconds = time_training_steps(model, batch, steps)
        median = statistics.median(seconds)
        rows.append(
            {
                "model": name,
                "parameters": sum(p.numel() for p in model.parameters()),
                "median_step_s": median,
                "min_step_s": min(seconds),
                "networks_per_s": batch_size / median,
                "all_s": seconds,
            }
        )
        print(f"{name}: {median:.3f} s/step", flush=True)
    return {
        "benchmark": "baselines training step (forward + backward + AdamW)",
        "widths": str(spec),
        "batch_size": batch_size,
        "nodes": batch.num_nodes,
        "edges": batch.edge_index.size(1),
        "hidden_channels": hidden_channels,
        "rounds": rounds,
        "mlp": "FlatMLP defaults (5 hidden layers of 32, batch norm)",
        "steps": steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "hardware": hardware(),
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        # glibc's allocator settings change CPU step times a lot (page faults on big tensors).
        "malloc_env": {key: value for key, value in os.environ.items() if key.startswith("MALLOC_")},
        "results": rows,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, path)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| model | parameters | median step (s) | best step (s) | networks/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in report["results"]:
        lines.append(
            f"| {row['model']} | {row['parameters']:,} | {row['median_step_s']:.3f} | {row['min_step_s']:.3f} "
            f"| {row['networks_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 32, 32, 1)))
    parser.add_argument("--hidden-channels", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if min(args.batch_size, args.hidden_channels, args.rounds, args.steps) < 1:
        parser.error("--batch-size, --hidden-channels, --rounds and --steps must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    report = run(args.models, args.widths, args.batch_size, args.hidden_channels, args.rounds, args.steps)
    out = args.out or RESULTS_DIR / f"baselines_{socket.gethostname()}.json"
    write_json(report, out)
    print(
        f"\n{report['batch_size']} networks of {report['widths']} ({report['nodes']:,} nodes, {report['edges']:,} edges), "
        f"{report['threads']} threads, load average {report['load_average_1min']:.1f} on {report['cpus']} CPUs\n"
    )
    print(markdown(report))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
