"""Run by ``torchrun --nproc-per-node 2`` from test_global_batch_norm.py (gloo, CPU).

Each process normalises its half of one global float16 batch with
:class:`~wsgraph.layers.GlobalBatchNorm` and saves its output, input gradient and
running statistics to ``OUT/rank<r>.pt``.

Usage: ``torchrun --standalone --nproc-per-node 2 batch_norm_worker.py DTYPE OUT``
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import distributed as dist

from wsgraph.layers import GlobalBatchNorm

ROWS_PER_PROCESS = 40_000  # 80,000 in all: beyond float16's largest finite value, 65,504


def global_batch(dtype: torch.dtype) -> torch.Tensor:
    """The whole batch, entries up to a few hundred (their float16 squares overflow)."""
    generator = torch.Generator().manual_seed(0)
    scale, shift = torch.tensor([1.0, 20.0, 100.0]), torch.tensor([0.5, -3.0, 40.0])
    return (torch.randn(2 * ROWS_PER_PROCESS, 3, generator=generator) * scale + shift).to(dtype)


def main(dtype_name: str, out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    dtype = getattr(torch, dtype_name)
    rows = global_batch(dtype)[rank * ROWS_PER_PROCESS : (rank + 1) * ROWS_PER_PROCESS]
    inputs = rows.clone().requires_grad_(True)
    norm = GlobalBatchNorm(3)
    output = norm(inputs)
    (output.float() * torch.arange(1, 4)).square().sum().backward()
    torch.save(
        {
            "output": output.detach(),
            "grad": inputs.grad,
            "running_mean": norm.running_mean,
            "running_var": norm.running_var,
        },
        Path(out) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
