"""The learning-rate schedules: linear warmup then cosine decay to zero (default), linear warmup then
constant, or constant."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

# Without --warmup-steps/--warmup-epochs, this share of all steps warms up.
DEFAULT_WARMUP_FRACTION = 0.05


def warmup_steps_for(total_steps: int, steps_per_epoch: int, steps: int | None, epochs: float | None) -> int:
    """The number of warmup steps from ``--warmup-steps`` or ``--warmup-epochs`` (default: 5% of all steps)."""
    if steps is not None:
        return int(steps)
    if epochs is not None:
        return round(epochs * steps_per_epoch)
    return round(DEFAULT_WARMUP_FRACTION * total_steps)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    r"""The multiplier of the base learning rate after ``step`` optimiser steps.

    .. math::
        f(s) = \begin{cases}
            (s + 1) / w & s < w \\
            \tfrac12 \left(1 + \cos\left(\pi \frac{s - w}{\max(1, T - w)}\right)\right) & s \ge w
        \end{cases}

    so the first step already uses :math:`1/w` of the rate and the rate reaches zero
    after :math:`T` steps.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_constant_factor(step: int, warmup_steps: int) -> float:
    """The multiplier after ``step`` optimiser steps: :math:`(s + 1) / w` while :math:`s < w`, then 1.

    The Neural Graphs trainer's schedule (their ``WarmupLRScheduler``, whose step count
    starts at 1), so its first step, too, uses :math:`1/w` of the rate.
    """
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def warmup_cosine(optimizer: Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """A scheduler stepped once per optimiser step. Its state is the step count, so it resumes exactly."""
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps))


def warmup_constant(optimizer: Optimizer, warmup_steps: int) -> LambdaLR:
    """Linear warmup, then the base learning rate for good; stepped once per optimiser step."""
    return LambdaLR(optimizer, lambda step: warmup_constant_factor(step, warmup_steps))


def constant_rate(optimizer: Optimizer) -> LambdaLR:
    """The base learning rate at every step (DWSNets' trainer); a scheduler so that runs resume alike."""
    return LambdaLR(optimizer, lambda step: 1.0)
