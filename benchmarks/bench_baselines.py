"""Training-step speed of the baseline models: forward + backward + AdamW step on one batch.

Builds one batch of ``--batch-size`` (default 512) random networks of widths ``--widths``
(default 2-32-32-1) and, for each model of ``--models`` (default: the flat MLP at its
published sizes and the four PyG GNNs with ``--hidden-channels`` 64 and ``--rounds`` 4),
times ``--steps`` training steps after one untimed warm-up step. Prints a markdown table
(median and best step time, networks per second, parameters) and writes the numbers as
JSON (default ``benchmarks/results/baselines_<hostname>.json``).

On Linux, glibc hands every tensor above 32 MB back to the kernel when it is freed, and
the page faults of reallocating it can cost more than the arithmetic. Like the ``wsgraph``
commands, the script first calls ``wsgraph.runtime.tune_cpu_allocator()`` to keep that
memory in the process; ``--default-malloc`` keeps glibc's defaults for comparison. The
JSON records which (``tuned_allocator``) and any ``MALLOC_*`` variables.

Run: ``python benchmarks/bench_baselines.py [--batch-size 512] [--widths 2-32-32-1] [--steps 3] [--threads N]
[--default-malloc]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch

import wsgraph
from wsgraph.io import write_json
from wsgraph.layers import FlatMLP, WeightSpaceGNN, pna_degree_histogram
from wsgraph.spec import WeightSpaceSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, markdown_table, time_calls, tune_allocator

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

    return time_calls(step, steps)


def run(
    models: list[str],
    spec: WeightSpaceSpec,
    batch_size: int,
    hidden_channels: int,
    rounds: int,
    steps: int,
    tuned_allocator: bool,
) -> dict[str, Any]:
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
    info = environment()
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
        "threads": info["torch_threads"],
        "cpus": info["cpu_count"],
        "load_average_1min": info["load_average"][0] if info["load_average"] else None,
        "tuned_allocator": tuned_allocator,
        **info,
        "results": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    rows = [
        [
            row["model"],
            f"{row['parameters']:,}",
            f"{row['median_step_s']:.3f}",
            f"{row['min_step_s']:.3f}",
            f"{row['networks_per_s']:,.0f}",
        ]
        for row in report["results"]
    ]
    headers = ["model", "parameters", "median step (s)", "best step (s)", "networks/s"]
    return markdown_table(headers, rows, align="lrrrr")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--widths", type=WeightSpaceSpec.parse, default=WeightSpaceSpec((2, 32, 32, 1)))
    parser.add_argument("--hidden-channels", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    add_common_flags(parser, "baselines")
    args = parser.parse_args()
    if min(args.batch_size, args.hidden_channels, args.rounds, args.steps) < 1:
        parser.error("--batch-size, --hidden-channels, --rounds and --steps must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    tuned = tune_allocator(args.default_malloc)

    report = run(args.models, args.widths, args.batch_size, args.hidden_channels, args.rounds, args.steps, tuned)
    out = args.out
    write_json(out, report)
    load = report["load_average_1min"]
    print(
        f"\n{report['batch_size']} networks of {report['widths']} ({report['nodes']:,} nodes, {report['edges']:,} edges), "
        f"{report['threads']} threads, load average {'?' if load is None else f'{load:.1f}'} on {report['cpus']} CPUs, "
        f"allocator {'tuned' if tuned else 'glibc default'}\n"
    )
    print(markdown(report))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
