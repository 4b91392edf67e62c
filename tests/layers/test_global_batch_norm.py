"""GlobalBatchNorm in reduced precision: statistics in float32, output in the input's dtype.

Under float16 autocast a batch of 64 networks with 1,024 middle-layer edges each has
more entries than float16 can count (65,504); the statistics must not overflow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchrun_launcher import run_two_processes

from wsgraph.layers import GlobalBatchNorm, blocks

from .batch_norm_worker import ROWS_PER_PROCESS, global_batch

WORKER = Path(__file__).with_name("batch_norm_worker.py")
REDUCED = [torch.float16, torch.bfloat16]
# One float16/bfloat16 rounding of a normalised value of a few units.
OUTPUT_TOL = {torch.float16: 1e-2, torch.bfloat16: 5e-2}


def _reference(rows: torch.Tensor) -> tuple[torch.Tensor, nn.BatchNorm1d]:
    """Float32 batch norm of the same (already rounded) values."""
    norm = nn.BatchNorm1d(rows.size(1))
    return norm(rows.float()), norm


def _assert_statistics_match(norm: nn.BatchNorm1d, reference: nn.BatchNorm1d) -> None:
    for name in ("running_mean", "running_var"):
        found = getattr(norm, name)
        assert found.dtype == torch.float32 and bool(torch.isfinite(found).all()), name
        torch.testing.assert_close(found, getattr(reference, name), rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("dtype", REDUCED, ids=str)
def test_one_process_keeps_float32_statistics(dtype):
    rows = global_batch(dtype)
    norm = GlobalBatchNorm(3)
    output = norm(rows)
    expected, reference = _reference(rows)
    assert output.dtype == dtype
    _assert_statistics_match(norm, reference)
    torch.testing.assert_close(output.float(), expected, rtol=0, atol=OUTPUT_TOL[dtype])


class _TwoEqualProcesses:
    """Stands in for a two-process all-reduce whose other process holds the same rows."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        self.dtypes.append(tensor.dtype)
        return tensor * 2


@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "autocast"])
@pytest.mark.parametrize("dtype", REDUCED, ids=str)
def test_all_reduce_path_sums_in_float32(monkeypatch, dtype, autocast):
    reduce = _TwoEqualProcesses()
    monkeypatch.setattr(blocks.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(blocks.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(blocks, "all_reduce", reduce)
    rows = global_batch(dtype)[:ROWS_PER_PROCESS]
    inputs = rows.clone().requires_grad_(True)
    norm = GlobalBatchNorm(3)
    with torch.autocast("cpu", dtype=dtype, enabled=autocast):
        output = norm(inputs)
    output.float().sum().backward()
    assert reduce.dtypes == [torch.float32]
    assert output.dtype == dtype and bool(torch.isfinite(inputs.grad).all())
    # The global batch is these rows twice: 80,000 entries per channel.
    expected, reference = _reference(torch.cat([rows, rows]))
    _assert_statistics_match(norm, reference)
    torch.testing.assert_close(output.float(), expected[:ROWS_PER_PROCESS], rtol=0, atol=OUTPUT_TOL[dtype])


def test_float64_statistics_stay_float64(monkeypatch):
    reduce = _TwoEqualProcesses()
    monkeypatch.setattr(blocks.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(blocks.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(blocks, "all_reduce", reduce)
    rows = global_batch(torch.float64)[:100]
    output = GlobalBatchNorm(3).double()(rows)
    assert reduce.dtypes == [torch.float64] and output.dtype == torch.float64
    expected = nn.BatchNorm1d(3).double()(torch.cat([rows, rows]))[:100]
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_two_gloo_processes_agree_with_float32_on_the_whole_batch(tmp_path):
    run_two_processes(WORKER, "float16", str(tmp_path))

    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in range(2)]
    rows = global_batch(torch.float16)
    inputs = rows.float().requires_grad_(True)
    expected, reference = _reference(inputs)
    (expected * torch.arange(1, 4)).square().sum().backward()
    for rank, saved in enumerate(ranks):
        part = slice(rank * ROWS_PER_PROCESS, (rank + 1) * ROWS_PER_PROCESS)
        assert saved["output"].dtype == torch.float16 and saved["grad"].dtype == torch.float16
        torch.testing.assert_close(saved["output"].float(), expected[part].detach(), rtol=0, atol=1e-2)
        torch.testing.assert_close(saved["grad"].float(), inputs.grad[part], rtol=1e-2, atol=1e-2)
        for name in ("running_mean", "running_var"):
            assert bool(torch.isfinite(saved[name]).all()), name
            torch.testing.assert_close(saved[name], getattr(reference, name), rtol=1e-4, atol=1e-5, msg=name)
