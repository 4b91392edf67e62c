"""One epoch of training and one pass of evaluation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch_geometric.data import Batch
from torch_geometric.transforms import BaseTransform
from tqdm.auto import tqdm

from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.training.distributed import DistributedContext, all_reduce_min, all_reduce_sum
from wsgraph.training.loaders import GraphLoader, StackedLoader
from wsgraph.training.tasks import Task, detach_sum

Loader = StackedLoader | GraphLoader
# Seconds between progress-bar refreshes: reading the running loss waits for the device.
PROGRESS_INTERVAL = 0.5


@dataclass(frozen=True)
class Precision:
    """Mixed precision for ``--amp``: bfloat16 autocast on CPU; float16 autocast with a
    gradient scaler on CUDA (float16's narrow range needs the loss scaled so small
    gradients do not flush to zero; bfloat16 has float32's range and needs no scaling).
    """

    enabled: bool
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.device_type == "cuda" else torch.bfloat16

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device_type, enabled=self.enabled and self.device_type == "cuda")


class BatchPreparation:
    """What happens to every batch on the device before the model sees it: weights and
    biases are cast to float32 (the models' dtype; converted checkpoints may hold float64
    or float16), the training augmentations (training batches only), then normalisation
    with the train split's per-layer statistics, for every model.

    Args:
        normalization: the dataset's :class:`~wsgraph.datasets.transforms.NormalizeWeights`.
        augmentations: transforms applied, in order, to training batches.
    """

    def __init__(self, normalization: NormalizeWeights, augmentations: Sequence[BaseTransform] = ()) -> None:
        self.normalization = normalization
        self.augmentations = list(augmentations)

    def __call__(self, batch: Batch, train: bool) -> Batch:
        batch.x, batch.edge_attr = batch.x.float(), batch.edge_attr.float()
        if train:
            for augmentation in self.augmentations:
                batch = augmentation(batch)
        return self.normalization(batch)


@dataclass
class EpochResult:
    """The outcome of one training epoch over all processes."""

    loss: float
    networks: int
    seconds: float
    first_non_finite_step: int | None = None

    @property
    def networks_per_second(self) -> float:
        return self.networks / self.seconds if self.seconds > 0 else 0.0


def train_epoch(
    model: nn.Module,
    loader: Loader,
    task: Task,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    scaler: torch.amp.GradScaler,
    prepare: Callable[[Batch, bool], Batch],
    precision: Precision,
    context: DistributedContext,
    description: str = "train",
    progress: bool = True,
    clip_grad_norm: float | None = None,
) -> EpochResult:
    """Train ``model`` for one pass over ``loader``; one optimiser and scheduler step per batch.

    Every process weights its networks' losses by ``world_size / global batch size``:
    DDP averages gradients over processes, so each step follows the gradient of the mean
    loss over the whole global batch, exactly as one process would, even when the parts
    differ in size.

    Args:
        model: the model, wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
            when distributed.
        loader: this process's batches (its ``plan`` gives the global batch sizes).
        task: the loss.
        optimizer: the optimiser.
        scheduler: the learning-rate schedule, stepped per batch.
        scaler: the gradient scaler (a no-op unless float16 autocast).
        prepare: augmentation and normalisation, ``prepare(batch, train=True)``.
        precision: the autocast setting.
        context: this process's rank and the world size.
        description: the progress bar's label.
        progress: show a progress bar with the running loss and networks/s.
        clip_grad_norm: if given, the gradient of all parameters together is scaled down
            to at most this norm before each step (after unscaling a float16 loss scale).

    Returns:
        The mean loss and the networks trained on, over all processes, the seconds taken,
        and the first step (0-based, over all processes) whose loss was not finite.
    """
    model.train()
    device = context.device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    # Tracked on the device: asking the host about every step's loss would wait for the device each time.
    no_step = len(loader)
    first_bad = torch.full((), no_step, dtype=torch.long, device=device)
    networks = 0
    bar = tqdm(total=len(loader), desc=description, leave=False, disable=not progress, unit="step", dynamic_ncols=True)
    start = last_refresh = time.perf_counter()
    for step, (batch, global_size) in enumerate(zip(loader, loader.plan.global_sizes())):
        batch = prepare(batch, True)
        with precision.autocast():
            losses = task.losses(model(batch), batch)
        loss = losses.sum() * (context.world_size / global_size)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad_norm is not None:
            # The scaler's own step skips a step with non-finite gradients after this, as without clipping.
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += detach_sum(losses)
        first_bad = torch.where(torch.isfinite(loss.detach()) | (first_bad < no_step), first_bad, step)
        networks += batch.num_graphs
        bar.update()
        now = time.perf_counter()
        if not bar.disable and now - last_refresh > PROGRESS_INTERVAL:
            last_refresh = now
            rate = networks * context.world_size / (now - start)
            bar.set_postfix(loss=f"{loss_sum.item() / networks:.4g}", networks_per_s=f"{rate:.0f}", refresh=False)
    bar.close()
    totals = all_reduce_sum(
        torch.stack([loss_sum, torch.tensor(float(networks), dtype=torch.float64, device=device)]), context
    )
    count = int(totals[1].item())
    seconds = time.perf_counter() - start  # after .item(): the device has finished the epoch
    bad = int(all_reduce_min(first_bad, context).item())
    return EpochResult(float(totals[0].item()) / max(count, 1), count, seconds, None if bad == no_step else bad)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Loader,
    task: Task,
    prepare: Callable[[Batch, bool], Batch],
    precision: Precision,
    context: DistributedContext,
) -> tuple[float, float] | None:
    """``(mean loss, metric)`` of ``model`` over a split, reduced over processes; ``None`` for an empty split.

    Args:
        model: the model itself, not its DDP wrapper: processes may hold different
            numbers of evaluation batches, and the wrapper would wait for the others at
            every forward.
        loader: this process's part of the split.
        task: the loss and metric.
        prepare: normalisation, ``prepare(batch, train=False)``.
        precision: the autocast setting.
        context: this process's rank and the world size.
    """
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=context.device)
    # Counted on the host: a per-batch host-to-device copy would wait for the device every step.
    networks = 0
    for batch in loader:
        batch = prepare(batch, False)
        with precision.autocast():
            output = model(batch)
            losses, scores = task.losses_and_scores(output, batch)
        sums += torch.stack([detach_sum(losses), detach_sum(scores)])
        networks += batch.num_graphs
    totals = torch.cat([sums, sums.new_tensor([float(networks)])])
    loss, score, count = all_reduce_sum(totals, context).tolist()
    if count == 0:
        return None
    return loss / count, score / count
