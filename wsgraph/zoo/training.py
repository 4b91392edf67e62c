"""Train a group of zoo members together: one batched forward, backward and Adam step for all.

A group holds members of one architecture and one activation; everything else (learning
rate, weight decay, initialisation, dropout, training subset, epochs) differs per member.
Each member takes ``epochs * (subset // batch_size)`` steps of its own images (an epoch is
one pass over its subset in a fresh order, the last partial batch dropped) and then
stops: its learning rate is gated to zero while the longest member of the group finishes.
The optimiser is Adam with L2 weight decay added to the gradient (the Small CNN Zoo's
"l2 regularization"), written out so that each member has its own learning rate.

Everything random comes from :func:`wsgraph.zoo.members.mix` of the member's key, so the
result of a member does not depend on its group (up to the rounding of batched kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from wsgraph.zoo.hyperparams import NORMAL_INIT_STD, MemberHyperparameters
from wsgraph.zoo.members import MemberArchitecture, batched_forward, dropout_masks, mix

BETAS, EPS = (0.9, 0.999), 1e-8
# Images evaluated at once per member (bounds the memory of evaluation).
EVAL_CHUNK = 500


@dataclass
class ZooData:
    """The images members train and are tested on.

    Attributes:
        train_images: ``[N, C, H, W]`` float32 in [0, 1], the pool members draw their subsets from.
        train_labels: ``[N]`` long.
        test_images: ``[M, C, H, W]``, every member's test set.
        test_labels: ``[M]``.
    """

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


@dataclass
class Snapshot:
    """One member's parameters after ``epoch`` epochs (0: at initialisation) and how it scores."""

    member: int
    epoch: int
    state_dict: dict[str, Tensor]
    train_accuracy: float = math.nan
    train_loss: float = math.nan
    test_accuracy: float = math.nan
    test_loss: float = math.nan


def subset_size(member: MemberHyperparameters, pool: int, batch_size: int) -> int:
    """The training images of a member: its fraction of the pool, at least one batch."""
    return min(pool, max(batch_size, round(member.train_fraction * pool)))


def member_subsets(keys: Tensor, sizes: Tensor, pool: int) -> Tensor:
    """``[B, max(sizes)]`` indices into the pool: member b's subset in its first ``sizes[b]`` columns."""
    order = mix(keys.view(-1, 1), 0x5B, torch.arange(pool)).argsort(dim=1, stable=True)
    return order[:, : int(sizes.max())]


def epoch_orders(keys: Tensor, epochs: Tensor, sizes: Tensor) -> Tensor:
    """``[B, max(sizes)]``: each member's order of its subset in its current epoch (positions past its size last)."""
    columns = torch.arange(int(sizes.max()))
    draws = mix(keys.view(-1, 1), 0xE0, epochs.view(-1, 1), columns)
    draws = torch.where(columns < sizes.view(-1, 1), draws, draws + 2**33)
    return draws.argsort(dim=1, stable=True)


def initial_parameters(architecture: MemberArchitecture, members: list[MemberHyperparameters]) -> dict[str, Tensor]:
    """``{key: [B, *shape]}``: each member drawn from its own generator (its key), biases zero."""
    stacked = {key: torch.zeros(len(members), *shape) for key, shape in architecture.layer_shapes().items()}
    for row, member in enumerate(members):
        generator = torch.Generator().manual_seed(member.key)
        for key, values in stacked.items():
            if key.endswith(".bias"):
                continue
            weight = values[row]
            fan_out, fan_in = weight.size(0), weight[0].numel()
            receptive = weight[0, 0].numel()
            if member.init_family == "orthogonal":
                flat = torch.empty(fan_out, fan_in)
                torch.nn.init.orthogonal_(flat, generator=generator)
                weight.copy_(flat.view_as(weight))
            else:
                if member.init_family == "he_normal":
                    std = math.sqrt(2.0 / fan_in)
                elif member.init_family == "glorot_normal":
                    std = math.sqrt(2.0 / (fan_in + fan_out * receptive))
                else:
                    std = NORMAL_INIT_STD
                weight.normal_(0.0, std, generator=generator)
            weight.mul_(member.init_scale)
    return stacked


def train_group(
    architecture: MemberArchitecture,
    members: list[MemberHyperparameters],
    data: ZooData,
    batch_size: int,
    save_epochs: tuple[int, ...] = (),
    train_eval_size: int = 1000,
) -> list[Snapshot]:
    """Train ``members`` (one activation) together and evaluate every kept snapshot.

    Args:
        architecture: the members' network.
        members: their hyper-parameters.
        data: training pool and test set.
        batch_size: images per member per step.
        save_epochs: epochs after which to keep a snapshot besides the final one (0:
            the initialisation); epochs past a member's own are skipped.
        train_eval_size: how many images of its own subset each member's train
            accuracy and loss are measured on.

    Returns:
        The snapshots, evaluated, ordered by member then epoch.
    """
    activations = {member.activation for member in members}
    if len(activations) != 1:
        raise ValueError(f"a group trains members of one activation, got {sorted(activations)}")
    activation = activations.pop()
    pool = data.train_images.size(0)
    if pool < batch_size:
        raise ValueError(f"the training pool has {pool} images, fewer than a batch of {batch_size}")
    keys = torch.tensor([member.key for member in members], dtype=torch.long)
    sizes = torch.tensor([subset_size(member, pool, batch_size) for member in members])
    steps_per_epoch = sizes // batch_size
    epochs = torch.tensor([member.epochs for member in members])
    total_steps = epochs * steps_per_epoch
    lrs = torch.tensor([member.lr for member in members])
    decays = torch.tensor([member.weight_decay for member in members])
    rates = torch.tensor([member.dropout for member in members])
    subsets = member_subsets(keys, sizes, pool)

    params = initial_parameters(architecture, members)
    names = list(params)
    tensors = [params[name].requires_grad_() for name in names]
    first = [torch.zeros_like(t) for t in tensors]
    second = [torch.zeros_like(t) for t in tensors]
    snapshots: dict[tuple[int, int], dict[str, Tensor]] = {}
    if 0 in save_epochs:
        for row in range(len(members)):
            snapshots[(row, 0)] = {name: params[name][row].detach().clone() for name in names}

    rows = torch.arange(len(members))
    current_epoch = torch.full((len(members),), -1)
    orders = torch.empty(0, dtype=torch.long)
    offsets = torch.arange(batch_size)
    for step in range(int(total_steps.max())):
        epoch = torch.div(step, steps_per_epoch, rounding_mode="floor")
        if bool((epoch != current_epoch).any()):
            orders = epoch_orders(keys, epoch, sizes)
            current_epoch = epoch
        position = (step % steps_per_epoch).view(-1, 1) * batch_size + offsets
        chosen = subsets[rows.view(-1, 1), orders[rows.view(-1, 1), position]]  # [B, batch]
        inputs, labels = data.train_images[chosen], data.train_labels[chosen]
        masks = dropout_masks(architecture, keys, rates, step, batch_size)
        logits = batched_forward(architecture, params, inputs, activation, masks)
        # The sum of per-member mean losses: each member gets the gradient of its own loss.
        loss = functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum") / batch_size
        grads = torch.autograd.grad(loss, tensors)
        t = step + 1
        # A member past its last step keeps its weights: its learning rate is 0.
        _adam_step(tensors, grads, first, second, lrs * (step < total_steps).float(), decays, t)
        finished = torch.nonzero((t % steps_per_epoch == 0) & (t <= total_steps)).view(-1).tolist()
        for row in finished:
            done = t // int(steps_per_epoch[row])
            if done in save_epochs or t == int(total_steps[row]):
                snapshots[(row, done)] = {name: params[name][row].detach().clone() for name in names}

    result = []
    for (row, epoch), state in sorted(snapshots.items()):
        result.append(Snapshot(members[row].member, epoch, state))
    _evaluate(
        architecture,
        activation,
        result,
        {m.member: r for r, m in enumerate(members)},
        subsets,
        sizes,
        data,
        train_eval_size,
    )
    return result


def _adam_step(
    tensors: list[Tensor],
    grads: tuple[Tensor, ...],
    first: list[Tensor],
    second: list[Tensor],
    lrs: Tensor,
    decays: Tensor,
    t: int,
) -> None:
    """Step ``t`` (from 1) of Adam with L2 weight decay, in place, each member (row of every
    tensor) with its own learning rate and decay, as ``torch.optim.Adam(weight_decay=...)``."""
    beta1, beta2 = BETAS
    with torch.no_grad():
        for tensor, grad, m, v in zip(tensors, grads, first, second):
            shape = (-1,) + (1,) * (tensor.dim() - 1)
            grad = grad + decays.view(shape) * tensor
            m.lerp_(grad, 1.0 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denominator = (v / (1.0 - beta2**t)).sqrt_().add_(EPS)
            scale = (lrs / (1.0 - beta1**t)).view(shape)
            tensor.sub_(scale * m / denominator)


@torch.no_grad()
def _evaluate(
    architecture: MemberArchitecture,
    activation: str,
    snapshots: list[Snapshot],
    row_of: dict[int, int],
    subsets: Tensor,
    sizes: Tensor,
    data: ZooData,
    train_eval_size: int,
) -> None:
    """Fill in each snapshot's train and test accuracy (a fraction in [0, 1], as the Small CNN Zoo records it) and mean cross-entropy, all snapshots at once."""
    if not snapshots:
        return
    params = {name: torch.stack([s.state_dict[name] for s in snapshots]) for name in snapshots[0].state_dict}
    rows = torch.tensor([row_of[s.member] for s in snapshots])
    test = _scores(architecture, activation, params, data.test_images, data.test_labels)
    evaluated = min(train_eval_size, int(sizes.min()))
    own = subsets[rows, :evaluated]
    train = _scores(architecture, activation, params, data.train_images[own], data.train_labels[own])
    for number, snapshot in enumerate(snapshots):
        snapshot.test_accuracy, snapshot.test_loss = float(test[0][number]), float(test[1][number])
        snapshot.train_accuracy, snapshot.train_loss = float(train[0][number]), float(train[1][number])


def _scores(
    architecture: MemberArchitecture, activation: str, params: dict[str, Tensor], images: Tensor, labels: Tensor
) -> tuple[Tensor, Tensor]:
    """``([B] accuracy in [0, 1], [B] mean cross-entropy)`` on shared ``[N, ...]`` or per-member ``[B, N, ...]`` images."""
    shared = images.dim() == 4
    count = images.size(0 if shared else 1)
    members = next(iter(params.values())).size(0)
    correct = torch.zeros(members, dtype=torch.float64)
    loss = torch.zeros(members, dtype=torch.float64)
    for start in range(0, count, EVAL_CHUNK):
        part = images[start : start + EVAL_CHUNK] if shared else images[:, start : start + EVAL_CHUNK]
        target = labels[start : start + EVAL_CHUNK] if shared else labels[:, start : start + EVAL_CHUNK]
        logits = batched_forward(architecture, params, part, activation)
        target = target.expand(members, -1) if shared else target
        correct += (logits.argmax(dim=-1) == target).sum(dim=1).double()
        loss += functional.cross_entropy(logits.transpose(1, 2), target, reduction="none").sum(dim=1).double()
    return correct / count, loss / count
