r"""Fit many SIRENs at once: forward, backward and Adam written out as batched tensor products.

Every network of a batch has its own parameters, stacked along a leading axis ``B``,
and its own loss (the MSE over its sample points), so one step for the whole batch
updates each network exactly as fitting it alone with ``torch.optim.Adam`` would.

A layer's weight and bias are kept as one augmented matrix :math:`\Theta_l = [W_l \mid b_l]`
``[B, d_l, d_{l-1}+1]`` (one tensor per layer for Adam). The forward pass is one
``baddbmm`` per layer, :math:`\omega_0 Z_l = \omega_0 (h_{l-1} W_l^\top + b_l)`, and the
gradients are :math:`\partial L / \partial W_l = G_l^\top h_{l-1}` and
:math:`\partial L / \partial b_l = \sum_p G_l`, where :math:`G_l = \partial L / \partial Z_l`
is back-propagated by hand:

.. math::
    G_M = \tfrac{2}{P d_M} (f - y), \qquad
    G_{l} = \big(G_{l+1} W_{l+1}\big) \odot \omega_0 \cos(\omega_0 Z_l).

For images on a pixel grid (:class:`PixelGrid`) the first layer is separable,
:math:`\omega_0 Z_1[r, c] = u_c + v_r`, so its sines and cosines come from the
angle-sum identities on ``H + W`` rows instead of ``H W`` pixels.

Buffers are allocated once per batch and the step runs in place, without autograd: at
these sizes (a few thousand numbers per network) the bookkeeping of autograd and of
fresh allocations costs as much as the arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from wsgraph.inrs.siren import PixelGrid, SirenRecipe, siren_forward, siren_init, split_augmented
from wsgraph.runtime import resolve_device


@dataclass
class SirenFit:
    """Fitted SIRENs: ``nn.Linear``-style stacked parameters and each network's final MSE.

    Attributes:
        weights: per layer ``[B, d_l, d_{l-1}]``.
        biases: per layer ``[B, d_l]``.
        mse: ``[B]`` the mean squared error of the final parameters (offset included).
        steps: ``[B]`` the Adam steps each network took (fewer with early stopping).
    """

    weights: list[Tensor]
    biases: list[Tensor]
    mse: Tensor
    steps: Tensor


Points = Tensor | PixelGrid


def default_workers(device: torch.device) -> int:
    """Concurrent batches: one per CPU thread torch may use; one on a GPU."""
    return torch.get_num_threads() if device.type == "cpu" else 1


def default_batch_size(device: torch.device, num_points: int) -> int:
    """Networks per batch: about 32k points per CPU thread (cache-sized buffers), 4M on a GPU."""
    budget = 2**22 if device.type == "cuda" else 2**15
    return max(1, budget // num_points)


def fit_sirens(
    targets: Tensor,
    points: Points,
    recipe: SirenRecipe,
    keys: Tensor,
    seed: int,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    device: torch.device | str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> SirenFit:
    """Fit one SIREN per target signal with the batched, hand-differentiated Adam loop.

    Args:
        targets: ``[N, P, d_M]`` the values to fit at the ``P`` points.
        points: ``[P, d_0]`` coordinates, or a :class:`PixelGrid` (faster first layer).
        recipe: architecture, optimiser and initialisation.
        keys: ``[N]`` integers naming the networks; with ``seed`` they fix each
            network's initialisation (see :func:`~wsgraph.inrs.siren.siren_init`).
        seed: the dataset's seed.
        batch_size: networks fitted together (default: :func:`default_batch_size`).
        workers: CPU threads, each fitting its own batches single-threaded (default:
            :func:`default_workers`); ignored on a GPU.
        device: where to compute (default: the targets' device).
        on_batch: called with the number of networks after each batch (progress).

    Returns:
        The fitted parameters on the CPU.
    """
    device = resolve_device(device) if device is not None else targets.device
    coords = points.coords(device) if isinstance(points, PixelGrid) else points.to(device, torch.float32)
    _check_inputs(targets, coords, recipe, keys)
    batch_size = batch_size or default_batch_size(device, coords.size(0))
    workers = workers or default_workers(device)
    if device.type == "cpu":
        # Every batch runs on one thread, so that a network's result depends on nothing but its own
        # target, key and seed (not on its batch, the batch size or the number of threads); the
        # batches are shared out so that every thread has one.
        batch_size = max(1, min(batch_size, math.ceil(targets.size(0) / workers)))
    grid = points if isinstance(points, PixelGrid) else None

    def fit_batch(start: int) -> tuple[list[Tensor], Tensor, Tensor]:
        batch_targets = targets[start : start + batch_size].to(device, torch.float32)
        batch_keys = keys[start : start + batch_size]
        count = batch_targets.size(0)
        if count == 1:
            # A batched product of one matrix takes another kernel, with other rounding: fitting the
            # network twice keeps its result the same as in any larger batch.
            batch_targets, batch_keys = batch_targets.repeat(2, 1, 1), batch_keys.repeat(2)
        params = siren_init(recipe, batch_keys, seed, device)
        steps = _FusedTrainer(recipe, grid, coords, batch_targets).run(params)
        mse = _mse(params, coords, batch_targets, recipe)
        if on_batch is not None:
            on_batch(count)
        return [p[:count].cpu() for p in params], mse[:count].cpu(), steps[:count].cpu()

    starts = range(0, targets.size(0), batch_size)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(min(workers, len(starts))) as pool:
                pieces = list(pool.map(fit_batch, starts))
        finally:
            torch.set_num_threads(threads)
    else:
        pieces = [fit_batch(start) for start in starts]
    merged = [torch.cat([piece[0][layer] for piece in pieces]) for layer in range(recipe.spec.num_weight_layers)]
    weights, biases = split_augmented(merged)
    return SirenFit(weights, biases, torch.cat([p[1] for p in pieces]), torch.cat([p[2] for p in pieces]))


def fit_sirens_autograd(
    targets: Tensor,
    points: Points,
    recipe: SirenRecipe,
    keys: Tensor,
    seed: int,
    *,
    device: torch.device | str | None = None,
) -> SirenFit:
    """The reference: the same fit with autograd and ``torch.optim.Adam`` on stacked tensors.

    Slower than :func:`fit_sirens`; kept to check it and to benchmark against it.
    Early stopping is not supported here.
    """
    if recipe.early_stop_loss is not None:
        raise ValueError("fit_sirens_autograd does not implement early_stop_loss")
    device = torch.device(device) if device is not None else targets.device
    coords = points.coords(device) if isinstance(points, PixelGrid) else points.to(device, torch.float32)
    _check_inputs(targets, coords, recipe, keys)
    targets = targets.to(device, torch.float32)
    weights, biases = split_augmented(siren_init(recipe, keys, seed, device))
    params = [p.requires_grad_() for p in (*weights, *biases)]
    optimizer = torch.optim.Adam(
        params, lr=recipe.lr, betas=recipe.betas, eps=recipe.eps, weight_decay=recipe.weight_decay
    )
    for _ in range(recipe.steps):
        optimizer.zero_grad(set_to_none=True)
        output = siren_forward(weights, biases, coords, recipe.omega_0) + recipe.output_offset
        # Sum of per-network means: each network gets the gradient of its own MSE.
        loss = (output - targets).square().mean(dim=(1, 2)).sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        output = siren_forward(weights, biases, coords, recipe.omega_0) + recipe.output_offset
        mse = (output - targets).square().mean(dim=(1, 2))
    steps = torch.full((targets.size(0),), recipe.steps, dtype=torch.long)
    return SirenFit([w.detach().cpu() for w in weights], [b.detach().cpu() for b in biases], mse.cpu(), steps)


def _check_inputs(targets: Tensor, coords: Tensor, recipe: SirenRecipe, keys: Tensor) -> None:
    widths = recipe.widths
    if coords.dim() != 2 or coords.size(1) != widths[0]:
        raise ValueError(f"points have shape {tuple(coords.shape)}, expected [P, {widths[0]}] for widths {recipe.spec}")
    if targets.dim() != 3 or targets.size(1) != coords.size(0) or targets.size(2) != widths[-1]:
        raise ValueError(
            f"targets have shape {tuple(targets.shape)}, expected [N, {coords.size(0)}, {widths[-1]}] "
            f"for {coords.size(0)} points and widths {recipe.spec}"
        )
    if keys.shape != (targets.size(0),):
        raise ValueError(f"got {tuple(keys.shape)} keys for {targets.size(0)} targets")
    if not bool(torch.isfinite(targets).all()):
        raise ValueError("targets contain NaN or inf")


@torch.no_grad()
def _mse(params: list[Tensor], coords: Tensor, targets: Tensor, recipe: SirenRecipe) -> Tensor:
    weights, biases = split_augmented(params)
    output = siren_forward(weights, biases, coords, recipe.omega_0) + recipe.output_offset
    return (output - targets).square().mean(dim=(1, 2))


class _FusedTrainer:
    """Preallocated buffers and the in-place step for one batch of networks."""

    # With early stopping, the networks still running are gathered into smaller buffers once at
    # most this fraction of the rows is active (checked every COMPACT_EVERY steps).
    COMPACT_BELOW = 0.75
    COMPACT_EVERY = 10

    def __init__(self, recipe: SirenRecipe, grid: PixelGrid | None, coords: Tensor, targets: Tensor) -> None:
        self.recipe, self.grid, self.coords = recipe, grid, coords
        self.loss_scale = 2.0 / (coords.size(0) * recipe.widths[-1])
        self._allocate(targets)

    def _allocate(self, targets: Tensor) -> None:
        recipe, coords = self.recipe, self.coords
        self.targets = targets
        batch, points = targets.size(0), coords.size(0)
        hidden = recipe.widths[1:-1]
        new = dict(device=targets.device, dtype=torch.float32)
        # inputs[l]: [B, P, d_l], the input of weight layer l + 1 (coords, then each sine layer's output).
        self.inputs = [coords.expand(batch, -1, -1)] + [torch.empty(batch, points, w, **new) for w in hidden]
        # cosines[l]: cos(omega_0 Z_{l+1}), the derivative of sine layer l + 1 up to the factor omega_0.
        self.cosines = [torch.empty(batch, points, w, **new) for w in hidden]
        self.pre = [torch.empty(batch, points, w, **new) for w in hidden]
        self.output = torch.empty(batch, points, recipe.widths[-1], **new)

    def run(self, params: list[Tensor]) -> Tensor:
        """Take up to ``recipe.steps`` Adam steps on ``params`` in place; return each network's step count.

        With ``recipe.early_stop_loss``, a network stops after the first step whose loss
        (computed in that step's forward pass, before its update) is at or below the
        threshold, as the DWSNets INR trainer breaks after ``optimizer.step()`` once
        ``loss.item() <= early_stop_loss``; the networks still running are
        compacted into smaller buffers as others stop. Every network keeps a batch
        mate (at least two rows), so its arithmetic takes the same kernels whatever
        stops around it.
        """
        recipe = self.recipe
        threshold = recipe.early_stop_loss
        batch, device = self.targets.size(0), self.targets.device
        taken = torch.zeros(batch, dtype=torch.long, device=device)
        rows = torch.arange(batch, device=device)
        work = params if threshold is None else [p.clone() for p in params]
        first_moment = [torch.zeros_like(p) for p in work]
        second_moment = [torch.zeros_like(p) for p in work]
        active = torch.ones(batch, dtype=torch.bool, device=device)
        beta1, beta2 = recipe.betas
        for step in range(1, recipe.steps + 1):
            if threshold is not None and step % self.COMPACT_EVERY == 1 and step > 1:
                running = int(active.sum())
                if running == 0:
                    break
                if rows.numel() > 2 and running <= self.COMPACT_BELOW * rows.numel():
                    keep = _rows_to_keep(active)
                    for full, part in zip(params, work):
                        full[rows] = part
                    rows, active = rows[keep], active[keep]
                    work = [p[keep] for p in work]
                    first_moment = [m[keep] for m in first_moment]
                    second_moment = [m[keep] for m in second_moment]
                    self._allocate(self.targets[keep])
            grads, residual = self._gradients(work)
            if recipe.weight_decay:
                torch._foreach_add_(grads, work, alpha=recipe.weight_decay)
            torch._foreach_lerp_(first_moment, grads, 1.0 - beta1)
            torch._foreach_mul_(second_moment, beta2)
            torch._foreach_addcmul_(second_moment, grads, grads, 1.0 - beta2)
            denominators = torch._foreach_sqrt(second_moment)
            torch._foreach_div_(denominators, math.sqrt(1.0 - beta2**step))
            torch._foreach_add_(denominators, recipe.eps)
            numerators = first_moment
            if threshold is not None:
                # Multiplying by 1 or 0 keeps the arithmetic of running networks as without early stopping.
                gate = active.to(torch.float32).view(-1, 1, 1)
                numerators = [moment * gate for moment in first_moment]
            torch._foreach_addcdiv_(work, numerators, denominators, -recipe.lr / (1.0 - beta1**step))
            taken.index_add_(0, rows, active.long())
            if threshold is not None:
                active &= residual.square().mean(dim=(1, 2)) > threshold
        if threshold is not None:
            for full, part in zip(params, work):
                full[rows] = part
        return taken

    def _gradients(self, params: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """Gradients of every network's MSE w.r.t. its augmented matrices, and the residuals ``f - y``."""
        omega, layers = self.recipe.omega_0, len(params)
        for layer in range(1, layers):
            if layer == 1 and self.grid is not None:
                self._first_layer_on_grid(params[0])
                continue
            pre = _affine(self.inputs[layer - 1], params[layer - 1], omega, out=self.pre[layer - 1])
            torch.sin(pre, out=self.inputs[layer])
            torch.cos(pre, out=self.cosines[layer - 1])
        output = _affine(self.inputs[-1], params[-1], 1.0, out=self.output)
        residual = output.add_(self.recipe.output_offset).sub_(self.targets)
        upstream = residual * self.loss_scale
        grads: list[Tensor] = [torch.empty(0)] * layers
        for layer in range(layers, 0, -1):
            if layer == 1:
                # The coordinates are shared by the batch: one [d_0, P] x [B, P, d_1] product.
                weight_grad = torch.matmul(self.coords.T, upstream).transpose(1, 2)
            else:
                weight_grad = torch.bmm(upstream.transpose(1, 2), self.inputs[layer - 1])
            grads[layer - 1] = torch.cat([weight_grad, upstream.sum(1).unsqueeze(2)], dim=2)
            if layer > 1:
                # The omega_0 of the sine's derivative rides on the (small) weight matrix.
                below = _product(upstream, omega * params[layer - 1][..., :-1], out=self.pre[layer - 2])
                upstream = below.mul_(self.cosines[layer - 2])
        return grads, residual

    def _first_layer_on_grid(self, theta: Tensor) -> None:
        """Sines and cosines of layer 1 on a pixel grid, from row and column terms."""
        omega, grid = self.recipe.omega_0, self.grid
        x, y = grid.axes(theta.device)
        batch, width = theta.size(0), theta.size(1)
        # omega Z_1[r, c, j] = u[c, j] + v[r, j]
        u = omega * x.view(1, -1, 1) * theta[:, :, 0].unsqueeze(1)
        v = omega * (y.view(1, -1, 1) * theta[:, :, 1].unsqueeze(1) + theta[:, :, 2].unsqueeze(1))
        sin_u, cos_u = torch.sin(u).unsqueeze(1), torch.cos(u).unsqueeze(1)
        sin_v, cos_v = torch.sin(v).unsqueeze(2), torch.cos(v).unsqueeze(2)
        sines = self.inputs[1].view(batch, grid.height, grid.width, width)
        torch.mul(sin_v, cos_u, out=sines)
        sines.addcmul_(cos_v, sin_u)
        cosines = self.cosines[0].view(batch, grid.height, grid.width, width)
        torch.mul(cos_v, cos_u, out=cosines)
        cosines.addcmul_(sin_v, sin_u, value=-1.0)


def _rows_to_keep(active: Tensor) -> Tensor:
    """The indices of the running rows, padded with stopped ones to at least two."""
    order = torch.argsort((~active).to(torch.int8), stable=True)
    return order[: max(2, int(active.sum()))]


def _affine(inputs: Tensor, theta: Tensor, scale: float, out: Tensor) -> Tensor:
    """``out = scale * (inputs @ W^T + b)`` for augmented ``theta = [W | b]``, batched."""
    weight, bias = theta[..., :-1].transpose(1, 2), theta[..., -1].unsqueeze(1)
    if inputs.size(-1) == 1:
        # A product with one inner index is an outer product: elementwise beats bmm.
        return torch.addcmul(scale * bias, inputs, scale * weight, out=out)
    return torch.baddbmm(bias, inputs, weight, beta=scale, alpha=scale, out=out)


def _product(left: Tensor, right: Tensor, out: Tensor) -> Tensor:
    """``out = left @ right``, batched, elementwise when the inner size is one."""
    if left.size(-1) == 1:
        return torch.mul(left, right, out=out)
    return torch.bmm(left, right, out=out)
