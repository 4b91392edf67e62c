"""DWSNet training-step throughput: scatter versus dense, with and without torch-scatter, CPU and GPU.

One step = forward, cross-entropy, backward and AdamW update of a DWSNet with 5 DWS
layers of 32 channels (batch norm after each, unless ``--norm none``), the invariant
readout and a 10-class head, on a batch of ``--batch`` networks of widths 2-32-32-1.
Every configuration runs in a fresh subprocess (so peak memory and the torch-scatter
switch are clean). A last row runs the scatter backend on networks of mixed hidden
widths with the same number of edges as the one-architecture batch.

``--compile`` adds ``torch.compile(model, fullgraph=True)`` rows: the first step
(tracing and code generation of forward and backward, reported as "compile s") is
not timed. ``--amp`` adds rows under bfloat16 autocast, as ``wsgraph train --amp``.

Like the ``wsgraph`` commands, every process first tunes glibc's allocator
(``wsgraph.runtime.tune_cpu_allocator``); ``--default-malloc`` keeps glibc's defaults.

Run: ``python benchmarks/bench_layers.py [--batch 512] [--steps 5] [--devices cpu,cuda] [--compile] [--eager/--no-eager]
[--amp] [--backends scatter,dense] [--mixed/--no-mixed] [--norm batch|none] [--profile] [--out FILE] [--default-malloc]``
Prints a markdown table and writes JSON (default ``benchmarks/results/layers_<hostname>.json``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_common_flags, environment, markdown_table, summarize, time_calls, tune_allocator

from wsgraph.io import write_json

WIDTHS = (2, 32, 32, 1)
PROFILED_STEPS = 3
PROFILED_OPERATORS = 12


def child(config: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process and return its measurements."""
    if not config["torch_scatter"]:
        sys.modules["torch_scatter"] = None  # make PyG fall back to torch's own reductions
    tuned = tune_allocator(default_malloc=not config["tuned_allocator"])
    import torch
    import torch_geometric.typing

    from wsgraph.layers import DWSNet

    device = torch.device(config["device"])
    torch.manual_seed(0)
    batch = _mixed_batch(config["batch"]) if config["mixed"] else _uniform_batch(config["batch"])
    batch = batch.to(device)
    labels = torch.randint(0, 10, (batch.num_graphs,), device=device)
    norm = None if config["norm"] == "none" else config["norm"]
    model = DWSNet(3, 2, 1, 10, hidden_channels=32, depth=5, norm=norm, backend=config["backend"])
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    forward = torch.compile(model, fullgraph=True) if config["compile"] else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config["amp"])

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(forward(batch), labels)
        loss.backward()
        optimizer.step()

    sync = torch.cuda.synchronize if device.type == "cuda" else None
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    compile_s = None
    if config["compile"]:
        # The first step traces and generates code for forward and backward: timed on its own.
        compile_s = time_calls(step, 1, warmup=0, sync=sync)[0]
    seconds = time_calls(step, config["steps"], warmup=2, sync=sync)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    timing = summarize(seconds)
    operators = _profile(step, PROFILED_STEPS) if config.get("profile") else None
    return {
        **config,
        "operators": operators,
        "tuned_allocator": tuned,
        "compile_s": compile_s,
        **timing,
        "networks": batch.num_graphs,
        "edges": batch.num_edges,
        "networks_per_s": batch.num_graphs / timing["median_s"],
        "edges_per_s": batch.num_edges / timing["median_s"],
        "peak_memory_mb": peak_mb,
        "torch_scatter_used": bool(torch_geometric.typing.WITH_TORCH_SCATTER),
    }


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


def _uniform_batch(count: int):
    import torch

    from wsgraph.core.graph import assemble

    weights = [torch.randn(count, a, b, 1) / a**0.5 for a, b in itertools.pairwise(WIDTHS)]
    biases = [torch.randn(count, b, 1) * 0.1 for b in WIDTHS[1:]]
    return assemble(weights, biases)


def _mixed_batch(count: int):
    """Networks 2-h1-h2-1 with h1, h2 drawn from 16..48, as many edges in all as ``count`` 2-32-32-1 networks."""
    import torch
    from torch_geometric.data import Batch

    from wsgraph.core.graph import assemble

    generator = torch.Generator().manual_seed(0)
    target_edges = count * sum(a * b for a, b in itertools.pairwise(WIDTHS))
    graphs, edges = [], 0
    while edges < target_edges:
        h1, h2 = (int(v) for v in torch.randint(16, 49, (2,), generator=generator))
        widths = (2, h1, h2, 1)
        weights = [torch.randn(1, a, b, 1, generator=generator) / a**0.5 for a, b in itertools.pairwise(widths)]
        biases = [torch.randn(1, b, 1, generator=generator) * 0.1 for b in widths[1:]]
        graph = assemble(weights, biases).to_data_list()[0]
        graphs.append(graph)
        edges += graph.num_edges
    return Batch.from_data_list(graphs)


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    has_torch_scatter = _importable("torch_scatter")
    configs = []
    compiled_settings = ([False] if args.eager else []) + ([True] if args.compile else [])
    for device in args.devices:
        for amp in [False, True] if args.amp else [False]:
            for compiled in compiled_settings:
                for backend in args.backends:
                    for use_scatter in [True, False] if has_torch_scatter else [False]:
                        configs.append(_config(device, backend, use_scatter, compiled, False, amp, args))
        if args.mixed and "scatter" in args.backends:
            configs.append(_config(device, "scatter", has_torch_scatter, False, True, False, args))
    return configs


def _config(device, backend, use_scatter, compiled, mixed, amp, args) -> dict[str, Any]:
    return {
        "device": device,
        "backend": backend,
        "torch_scatter": use_scatter,
        "compile": compiled,
        "amp": amp,
        "norm": args.norm,
        "mixed": mixed,
        "tuned_allocator": not args.default_malloc,
        "batch": args.batch,
        "steps": args.steps,
        "profile": args.profile,
    }


def _importable(name: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
    return probe.returncode == 0


def run_in_subprocess(config: dict[str, Any]) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)], capture_output=True, text=True
    )
    if completed.returncode != 0:
        return {**config, "error": completed.stderr.strip().splitlines()[-1] if completed.stderr else "failed"}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _settings(result: dict[str, Any]) -> str:
    compiled = ", compiled" if result["compile"] else ""
    amp = ", bf16 autocast" if result.get("amp") else ""
    norm = ", no norm" if result.get("norm") == "none" else ""
    return f"{'torch-scatter' if result['torch_scatter'] else 'torch only'}{compiled}{amp}{norm}"


def report_table(results: list[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        label = f"{result['backend']}{' (mixed widths)' if result['mixed'] else ''}"
        settings = _settings(result)
        if "error" in result:
            rows.append([result["device"], label, settings, "failed: " + result["error"], "", "", "", ""])
            continue
        compile_s = result.get("compile_s")
        rows.append(
            [
                result["device"],
                label,
                settings,
                f"{result['median_s'] * 1000:.0f}",
                f"{result['networks_per_s']:,.0f}",
                f"{result['edges_per_s'] / 1e6:.2f}",
                f"{result['peak_memory_mb']:,.0f}",
                "" if compile_s is None else f"{compile_s:.0f}",
            ]
        )
    headers = ["device", "backend", "settings", "step ms (median)", "networks/s", "M edges/s", "peak MB", "compile s"]
    return markdown_table(headers, rows)


def ratios(results: list[dict[str, Any]]) -> dict[str, float]:
    """scatter/dense step time on one architecture, and mixed/uniform time per edge (scatter)."""
    found: dict[str, float] = {}
    for device in {r["device"] for r in results}:
        ok = [
            r for r in results if r["device"] == device and "error" not in r and not r["compile"] and not r.get("amp")
        ]
        best = {}
        for r in ok:
            key = "mixed" if r["mixed"] else r["backend"]
            best[key] = min(best.get(key, float("inf")), r["median_s"] / r["edges"])
        if "scatter" in best and "dense" in best:
            found[f"{device}: scatter / dense"] = best["scatter"] / best["dense"]
        if "mixed" in best and "scatter" in best:
            found[f"{device}: mixed / one-architecture (scatter, per edge)"] = best["mixed"] / best["scatter"]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="networks per batch (default: 512)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (default: 5)")
    parser.add_argument(
        "--devices", default=None, help="comma-separated: cpu,cuda (default: cpu, plus cuda if present)"
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(fullgraph=True)'d models")
    parser.add_argument(
        "--eager", action=argparse.BooleanOptionalAction, default=True, help="time eager models (default: on)"
    )
    parser.add_argument("--amp", action="store_true", help="also time every configuration under bfloat16 autocast")
    parser.add_argument("--backends", default="scatter,dense", help="comma-separated (default: scatter,dense)")
    parser.add_argument(
        "--mixed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the mixed-widths scatter row (default: on)",
    )
    parser.add_argument("--norm", choices=("batch", "none"), default="batch", help="normalisation after each layer")
    parser.add_argument("--profile", action="store_true", help="also profile 3 steps per configuration (CPU operators)")
    add_common_flags(parser, "layers")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.batch < 1 or args.steps < 1:
        parser.error("--batch and --steps must be positive")
    args.backends = [name for name in args.backends.split(",") if name]
    if not args.backends or set(args.backends) - {"scatter", "dense"}:
        parser.error(f"--backends takes scatter and/or dense, got {','.join(args.backends)!r}")
    if not (args.eager or args.compile):
        parser.error("--no-eager needs --compile")
    tuned = tune_allocator(args.default_malloc)
    import torch

    args.devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    results = [run_in_subprocess(config) for config in configurations(args)]
    summary = ratios(results)
    report = {
        "benchmark": "dws_training_step",
        "command": "python benchmarks/bench_layers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "widths": "-".join(map(str, WIDTHS)),
        "results": results,
        "ratios": summary,
        "tuned_allocator": tuned,
        **environment(),
    }
    out = args.out
    write_json(out, report)
    print(
        f"DWSNet training step (5 DWS layers x 32 channels, readout, 10-class head, AdamW), batch {args.batch} "
        f"networks of 2-32-32-1; torch {report['torch']}; {report['hardware']}; {report['cpu_count']} CPUs"
    )
    print(report_table(results))
    for name, value in summary.items():
        print(f"- {name}: {value:.2f}x")
    for result in results:
        if result.get("operators"):
            print(f"\nself CPU time by operator: {result['device']}, {result['backend']}, {_settings(result)}")
            rows = [
                [f"`{o['operator']}`", f"{100 * o['share']:.1f}%", f"{o['calls_per_step']:.0f}"]
                for o in result["operators"]
            ]
            print(markdown_table(["operator", "share", "calls/step"], rows))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
