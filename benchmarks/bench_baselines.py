"""Training-step speed and memory of the baselines, with DWSNet for reference.

One step = forward, cross-entropy, backward and AdamW update on one batch of
``--batch-size`` (default 512) random networks of widths ``--widths`` (default
2-32-32-1), 10 classes. Each model is built as ``wsgraph train --model NAME`` builds it
(``wsgraph.training.build_model`` with the model's own defaults: the flat MLP at its
published sizes, the PyG GNNs with 64 channels and 4 rounds, ``ng-gnn`` with the Neural
Graphs recipe's 32 channels and 4 rounds), in a fresh subprocess so that its peak memory
is its own. ``ng-gnn`` runs its default fused backend; ``ng-gnn-dense`` and
``ng-gnn-scatter`` are the same model on its dense backend and on its PyG
message-passing backend, the same numbers computed other ways. ``ng-transformer`` is the
Neural Graphs relational transformer at its published sizes (dense attention among each
network's neurons: its cost and memory grow with the square of the neurons per network).

Each model takes one untimed warm-up step, then ``--steps`` timed ones; networks/s is
from the best step (the machine may be shared: the load average before and after each
model is recorded), the median is reported too. Peak memory is the growth of the
process's peak resident size over the steps (on ``--device cuda``: the device's peak
allocation, and the steps are timed to the device's end). ``--profile`` adds the operators that took
the most CPU time over 2 more steps.

Like the ``wsgraph`` commands, every process first tunes glibc's allocator
(``wsgraph.runtime.tune_cpu_allocator``); ``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_baselines.py [--models ng-gnn,dwsnet] [--batch-size 512] [--widths 2-32-32-1]
[--steps 3] [--threads N] [--device cuda] [--profile] [--out FILE] [--default-malloc]``
Prints a markdown table and writes JSON (default ``benchmarks/results/baselines_<hostname>.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, load_average, markdown_table, summarize, time_calls, tune_allocator

from wsgraph.io import write_json

MODELS = (
    "dwsnet",
    "mlp",
    "gine",
    "pna",
    "gatv2",
    "transformer",
    "ng-gnn",
    "ng-gnn-dense",
    "ng-gnn-scatter",
    "ng-transformer",
)
# Suffixes that run ng-gnn on another of its backends (the same numbers, computed another way).
BACKEND_SUFFIXES = ("-dense", "-scatter")
NUM_CLASSES = 10
PROFILED_STEPS = 2
PROFILED_OPERATORS = 12


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Time one model in this process and return its measurements."""
    tuned = tune_allocator(default_malloc=not config["tuned_allocator"])
    import torch

    from wsgraph.core.spec import WeightSpaceSpec
    from wsgraph.training import build_model, model_spec

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    spec = WeightSpaceSpec(tuple(config["widths"]))
    batch = random_batch(spec, config["batch_size"]).to(device)
    name = config["model"]
    torch.manual_seed(0)
    backend = next((suffix for suffix in BACKEND_SUFFIXES if name.endswith(suffix)), None)
    model = build_model(model_spec(name.removesuffix(backend or ""), "classify", [spec], NUM_CLASSES))
    if backend is not None:
        model.backend = backend.removeprefix("-")
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(batch), batch.y)
        loss.backward()
        optimizer.step()

    cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else None
    load_before = load_average()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    seconds = time_calls(step, config["steps"], sync=sync)
    if cuda:  # the device's peak allocation, not the host's
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    timing = summarize(seconds)
    return {
        **config,
        "tuned_allocator": tuned,
        "torch_threads": torch.get_num_threads(),
        # Whether ng-gnn's fused backend ran its compiled loops (WSGRAPH_NATIVE_KERNELS, a failed build) or torch's.
        "compiled_loops": _compiled_loops(model, device) if name.startswith("ng-gnn") else None,
        "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
        "parameters": sum(p.numel() for p in model.parameters()),
        **timing,
        "networks_per_s": config["batch_size"] / timing["min_s"],
        "networks_per_s_median": config["batch_size"] / timing["median_s"],
        "peak_memory_mb": peak_mb,
        "nodes": batch.num_nodes,
        "edges": batch.num_edges,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "operators": _profile(step, PROFILED_STEPS) if config["profile"] else None,
    }


def _compiled_loops(model, device) -> bool:
    import torch

    from wsgraph.layers.neural_graph_fused import native_kernels_for

    return model.backend == "fused" and native_kernels_for(torch.empty(0, device=device)) is not None


def random_batch(spec, count: int, seed: int = 0):
    """``count`` networks of ``spec`` with Gaussian weights and random labels, as one batch."""
    from itertools import pairwise

    import torch

    import wsgraph

    generator = torch.Generator().manual_seed(seed)
    pairs = [
        (torch.randn(count, d_out, d_in, generator=generator), torch.randn(count, d_out, generator=generator))
        for d_in, d_out in pairwise(spec.widths)
    ]
    labels = torch.randint(NUM_CLASSES, (count,), generator=generator)
    return wsgraph.mlp_to_graph(pairs, activation="sine(30.0)", y=labels)


def _profile(step, steps: int) -> list[dict[str, Any]]:
    """Self CPU time by operator over ``steps`` steps: the top operators, their share and calls per step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            step()
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    ranked = sorted(events, key=lambda event: -event.self_cpu_time_total)[:PROFILED_OPERATORS]
    return [
        {"operator": e.key, "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps} for e in ranked
    ]


def check_device(name: str) -> None:
    """Raise a ``ValueError`` unless ``name`` is a device of this machine (checked before any model's
    subprocess starts, so that a typo does not fail every model one by one)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError("unknown device; expected cpu or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError("unsupported device; expected cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA is not available on this machine")


def run_in_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        return {**config, "error": completed.stderr.strip().splitlines()[-1] if completed.stderr else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def report_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        if "error" in result:
            rows.append([result["model"], "failed: " + result["error"], "", "", "", ""])
            continue
        rows.append(
            [
                result["model"],
                f"{result['parameters']:,}",
                f"{result['min_s']:.3f}",
                f"{result['median_s']:.3f}",
                f"{result['networks_per_s']:,.0f}",
                f"{result['peak_memory_mb']:,.0f}",
            ]
        )
    headers = ["model", "parameters", "best step (s)", "median step (s)", "networks/s (best)", "peak MB"]
    return markdown_table(headers, rows, align="lrrrrr")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512, help="networks per batch (default: 512)")
    parser.add_argument("--widths", default="2-32-32-1", help="the networks' widths (default: 2-32-32-1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (default: 3)")
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help=f"comma-separated, from {', '.join(MODELS)} (default: all)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--profile", action="store_true", help=f"also profile {PROFILED_STEPS} steps per model")
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda[:N] (default: cpu); on CUDA, peak MB is the device's"
    )
    add_common_flags(parser, "baselines")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    unknown = [name for name in args.models if name not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    try:
        check_device(args.device)
    except ValueError as error:
        parser.error(f"--device {args.device}: {error}")
    widths = [int(part) for part in args.widths.split("-")]
    if min(args.batch_size, args.steps, *widths) < 1 or len(widths) < 2:
        parser.error("--batch-size, --steps and every width must be positive, with at least two widths")
    tuned = tune_allocator(args.default_malloc)
    configurations = [
        {
            "model": name,
            "widths": widths,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "threads": args.threads,
            "device": args.device,
            "tuned_allocator": tuned,
            "profile": args.profile,
        }
        for name in args.models
    ]
    info = environment()
    results: list[dict[str, Any]] = []
    report = {
        "benchmark": "baselines training step (forward + cross-entropy + backward + AdamW)",
        "widths": args.widths,
        "batch_size": args.batch_size,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **info,
        "results": results,
    }
    for done, config in enumerate(configurations, start=1):
        results.append(run_in_subprocess(config))
        print(f"{config['model']}: {results[-1].get('min_s', float('nan')):.3f} s/step (best)", flush=True)
        # Written after every model, so that a run cut short (a time limit on a lent GPU) keeps what finished.
        write_json(args.out, {**report, "models_finished": f"{done} of {len(configurations)}"})
    threads = {result.get("torch_threads") for result in results if "error" not in result}
    loads = [value for result in results for value in (result.get("load_average_before") or [None])[:1]]
    print(
        f"\n{args.batch_size} networks of {args.widths}; torch {info['torch']}; {info['hardware']}; "
        f"{info['cpu_count']} CPUs; torch threads {sorted(threads)}; 1-minute load average before each model "
        f"{', '.join('?' if value is None else f'{value:.1f}' for value in loads)}; "
        f"allocator {'tuned' if tuned else 'glibc default'}\n"
    )
    print(report_table(results))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
