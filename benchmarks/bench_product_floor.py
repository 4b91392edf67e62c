"""The matrix-product floor of a model's training step on this machine.

Counts the floating-point operations of the dense matrix products (``mm``, ``addmm``,
``bmm``, ...) in one training step of a model, forward and backward, as they reach
torch's dispatcher (the recomputations of the fused ``ng-gnn`` kernels included; products
with a sparse operand are counted apart, by their non-zeros), and measures how fast this machine multiplies matrices of the shapes
the model's per-edge work has (a chunk of 8,192 rows of 32 channels by 32, 64 and 256
wide maps, their transposes, and the weight-gradient products), in float32 and bfloat16.
Their ratio is the time a step needs for its products alone, at the best measured rate:
the fastest the step could be if everything else were free.

The step is the one of ``benchmarks/bench_baselines.py`` (same model, same random batch).

Run: ``python benchmarks/bench_product_floor.py [--models ng-gnn,dwsnet] [--batch-size 512]
[--widths 2-32-32-1] [--threads N] [--out FILE]``
Prints a markdown table and writes JSON (default ``benchmarks/results/product_floor_<hostname>.json``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_baselines import NUM_CLASSES, random_batch
from common import add_common_flags, environment, load_average, markdown_table, tune_allocator
from torch.utils._python_dispatch import TorchDispatchMode

from wsgraph.io import write_json

# Rows of one chunk of the fused ng-gnn kernels (2^18 float32 elements of 32 channels).
CHUNK_ROWS = 8192
# (rows, inner, columns) of the per-edge products: FiLM (32 -> 64), the edge update (32 -> 32),
# the Fourier encoder (256 -> 32), their input gradients (64 -> 32, 32 -> 32) ...
FORWARD_SHAPES = ((CHUNK_ROWS, 32, 64), (CHUNK_ROWS, 32, 32), (CHUNK_ROWS, 256, 32), (CHUNK_ROWS, 64, 32))
# ... and the weight gradients, sums over the chunk's rows: (columns of the inputs, rows,
# columns of the gradients).
WEIGHT_GRADIENT_SHAPES = ((32, CHUNK_ROWS, 64), (32, CHUNK_ROWS, 32), (256, CHUNK_ROWS, 32))
REPEATS = 200


class ProductCounter(TorchDispatchMode):
    """Counts the FLOPs of the dense matrix products that run under it, by operator.

    ``FlopCounterMode`` counts a sparse operand as dense (DWSNet's sparse aggregations
    would count at thousands of times their cost); here a product with a sparse operand
    counts ``2 * nnz * columns`` and is reported apart.
    """

    # Operator -> the positions of its two factors (every overload: .default, .out, ...).
    PRODUCTS: ClassVar[dict[Any, tuple[int, int]]] = {
        torch.ops.aten.mm: (0, 1),
        torch.ops.aten.addmm: (1, 2),
        torch.ops.aten.addmm_: (1, 2),
        torch.ops.aten.bmm: (0, 1),
        torch.ops.aten.baddbmm: (1, 2),
        torch.ops.aten.mv: (0, 1),
        torch.ops.aten.addmv: (1, 2),
    }

    def __init__(self) -> None:
        super().__init__()
        self.flops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        operands = self.PRODUCTS.get(func.overloadpacket)
        if operands is not None:
            left, right = (args[index] for index in operands)
            columns = right.shape[-1] if right.dim() > 1 else 1
            name = func.overloadpacket.__name__
            if left.layout != torch.strided:
                name, flops = f"{name} (sparse)", 2 * left._nnz() * columns
            else:
                batches = left.shape[0] if left.dim() == 3 else 1
                flops = 2 * batches * left.shape[-2] * left.shape[-1] * columns
            self.flops[name] = self.flops.get(name, 0) + flops
        return func(*args, **(kwargs or {}))


def product_flops(model_name: str, widths: list[int], batch_size: int) -> tuple[dict[str, int], int]:
    """The FLOPs of the products of one training step (forward + backward) by operator, and the parameters."""
    from wsgraph.core.spec import WeightSpaceSpec
    from wsgraph.training import build_model, model_spec

    spec = WeightSpaceSpec(tuple(widths))
    batch = random_batch(spec, batch_size)
    torch.manual_seed(0)
    model = build_model(model_spec(model_name, "classify", [spec], NUM_CLASSES))
    model.train()
    loss = torch.nn.functional.cross_entropy(model(batch), batch.y)  # warm-up: lazy set-up is not counted
    loss.backward()
    model.zero_grad(set_to_none=True)
    counter = ProductCounter()
    with counter:
        torch.nn.functional.cross_entropy(model(batch), batch.y).backward()
    return counter.flops, sum(p.numel() for p in model.parameters())


def gigaflops_per_second(product: Callable[[], torch.Tensor], flops: int) -> float:
    """The best rate over ``REPEATS`` products, after 10 untimed ones."""
    for _ in range(10):
        product()
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - started)
    return flops / best / 1e9


def product_rates(dtype: torch.dtype) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    rates = []
    for kind, shapes in (("forward", FORWARD_SHAPES), ("weight gradient", WEIGHT_GRADIENT_SHAPES)):
        for first, second, third in shapes:
            if kind == "forward":
                rows, inner, columns = first, second, third
                left = torch.randn(rows, inner, generator=generator).to(dtype)
                right = torch.randn(inner, columns, generator=generator).to(dtype)
            else:  # (inputs of the chunk)^T @ (gradients of the chunk): the left operand is a transposed view
                inner, rows, columns = first, second, third
                left = torch.randn(rows, inner, generator=generator).to(dtype).t()
                right = torch.randn(rows, columns, generator=generator).to(dtype)
            flops = 2 * left.shape[0] * left.shape[1] * right.shape[1]
            rate = gigaflops_per_second(lambda left=left, right=right: left @ right, flops)
            rates.append({"kind": kind, "shape": f"{tuple(left.shape)} @ {tuple(right.shape)}", "gflops_per_s": rate})
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ng-gnn,dwsnet", help="comma-separated (default: ng-gnn,dwsnet)")
    parser.add_argument("--batch-size", type=int, default=512, help="networks per step (default: 512)")
    parser.add_argument("--widths", default="2-32-32-1", help="the networks' widths (default: 2-32-32-1)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    add_common_flags(parser, "product_floor")
    args = parser.parse_args(argv)
    tuned = tune_allocator(args.default_malloc)
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = [int(part) for part in args.widths.split("-")]
    load_before = load_average()
    rates = {name: product_rates(dtype) for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    best = {name: max(row["gflops_per_s"] for row in rows) for name, rows in rates.items()}
    models = []
    for name in [part.strip() for part in args.models.split(",") if part.strip()]:
        by_operator, parameters = product_flops(name, widths, args.batch_size)
        # Sparse products run far below the dense rate; the floor counts the dense ones only.
        flops = sum(count for op, count in by_operator.items() if not op.endswith("(sparse)"))
        floor = flops / (best["float32"] * 1e9)
        models.append(
            {
                "model": name,
                "parameters": parameters,
                "dense_product_gflop_per_step": flops / 1e9,
                "product_gflop_by_operator": {op: count / 1e9 for op, count in by_operator.items()},
                "float32_floor_s": floor,
                "float32_ceiling_networks_per_s": args.batch_size / floor,
            }
        )
    report = {
        "benchmark": "matrix-product floor of a training step (FLOPs of its products / best measured product rate)",
        "widths": args.widths,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "tuned_allocator": tuned,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        **environment(),
        "product_rates": rates,
        "best_gflops_per_s": best,
        "models": models,
    }
    write_json(args.out, report)
    print(f"torch threads {torch.get_num_threads()}; 1-minute load average before {load_before[0]:.1f}\n")
    rows = [
        [row["kind"], row["shape"], f"{row['gflops_per_s']:.0f}", f"{bf['gflops_per_s']:.0f}"]
        for row, bf in zip(rates["float32"], rates["bfloat16"])
    ]
    print(markdown_table(["product", "shape", "float32 GFLOP/s", "bfloat16 GFLOP/s"], rows))
    print()
    rows = [
        [
            m["model"],
            f"{m['parameters']:,}",
            f"{m['dense_product_gflop_per_step']:.1f}",
            f"{m['float32_floor_s']:.3f}",
            f"{m['float32_ceiling_networks_per_s']:.0f}",
        ]
        for m in models
    ]
    headers = ["model", "parameters", "dense product GFLOP/step", "float32 floor (s)", "networks/s at the floor"]
    print(markdown_table(headers, rows))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
