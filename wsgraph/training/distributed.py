"""Process-group setup for ``torchrun`` and the few collectives the trainer needs.

``torchrun --nproc-per-node N -m wsgraph train ...`` starts ``N`` processes with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set.
:func:`setup` reads them, joins the process group (NCCL on CUDA, gloo on CPU) and
picks the process's device. Without those variables (a plain ``wsgraph train``) it
returns a one-process context and every collective below is the identity, so the
training code has a single path.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from wsgraph.runtime import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the job.

    Attributes:
        rank: the global rank of this process (0 for a single process).
        world_size: the number of processes.
        local_rank: the rank on this machine, which picks its CUDA device.
        device: the device this process trains on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process logs, writes checkpoints and reports (rank 0)."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    The group is joined once per process and left when the process exits, so several
    runs in one process (``wsgraph bench`` under ``torchrun``) share it: leaving and
    joining again would race with stale addresses in the rendezvous store.

    Args:
        device: ``--device``; under ``torchrun`` a bare ``"cuda"`` means
            ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        atexit.register(_leave)
    return DistributedContext(rank, world_size, local_rank, resolved)


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: Tensor, context: DistributedContext) -> Tensor:
    """The sum of ``values`` over all processes (a copy; ``values`` is left alone)."""
    total = values.detach().clone()
    if context.is_distributed:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def all_reduce_min(values: Tensor, context: DistributedContext) -> Tensor:
    """The elementwise minimum of ``values`` over all processes (a copy)."""
    total = values.detach().clone()
    if context.is_distributed:
        dist.all_reduce(total, op=dist.ReduceOp.MIN)
    return total


def all_gather_objects(value: Any, context: DistributedContext) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]``, on every process."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(context: DistributedContext) -> None:
    """Wait until every process gets here."""
    if context.is_distributed:
        dist.barrier()
