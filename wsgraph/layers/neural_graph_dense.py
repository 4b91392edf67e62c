"""Message passing on networks of one architecture through dense tensors: the fast path of NeuralGraphGNN.

The graph of an MLP is a chain of complete bipartite graphs, so the messages along (or
against) the weights of layer :math:`l` of :math:`B` networks form a dense tensor
``[B, d_{l-1}, d_l, F]``: a message meets its two endpoints by broadcasting
``[B, d_{l-1}, 1, F]`` against ``[B, 1, d_l, F]``, and the messages a neuron receives
are a slice reduced along one axis. No index is gathered or scattered, and each
weight layer and direction is its own tensor, so autograd never pads a slice's
gradient to the size of a larger tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor


class DenseNetworks:
    r"""Layer structure of :math:`B` networks of one architecture :math:`(d_0, \dots, d_M)`.

    Node states are ``[B, N_g, F]`` (each network's neurons in canonical order, layer by
    layer). Edge states are one ``[B, d_{l-1}, d_l, F]`` tensor per weight layer
    :math:`l` and direction (along the weight, then against it).

    Args:
        widths: the architecture :math:`(d_0, \dots, d_M)`.
    """

    def __init__(self, widths: Sequence[int]) -> None:
        self.widths = tuple(int(width) for width in widths)
        self.num_weight_layers = len(self.widths) - 1
        self.node_offsets = [0]
        for width in self.widths:
            self.node_offsets.append(self.node_offsets[-1] + width)
        self.edge_sizes = [d_in * d_out for d_in, d_out in zip(self.widths[:-1], self.widths[1:])]

    @property
    def num_nodes(self) -> int:
        return self.node_offsets[-1]

    @property
    def num_edges(self) -> int:
        return sum(self.edge_sizes)

    def nodes(self, x: Tensor, layer: int) -> Tensor:
        """``[B, d_k, F]``: the neurons of layer ``k = layer`` of ``x`` ``[B, N_g, F]``."""
        return x[:, self.node_offsets[layer] : self.node_offsets[layer + 1]]

    def split(self, x: Tensor) -> list[Tensor]:
        """``x`` ``[B, N_g, F]`` as one ``[B, d_k, F]`` view per layer ``k = 0..M``."""
        # One split, not a slice per layer: its backward concatenates the layers' gradients once, where each
        # slice's would fill a zero tensor of the size of ``x``.
        return list(x.split(self.widths, dim=1))

    def weights(self, edge_attr: Tensor, num_networks: int) -> list[Tensor]:
        """Canonically ordered ``edge_attr`` ``[B * E_g, C]`` as one ``[B, d_{l-1}, d_l, C]`` view per weight layer."""
        per_network = edge_attr.view(num_networks, self.num_edges, -1)
        return [
            part.unflatten(1, (self.widths[layer], self.widths[layer + 1]))
            for layer, part in enumerate(per_network.split(self.edge_sizes, dim=1))
        ]

    @staticmethod
    def endpoints(source: list[Tensor], target: list[Tensor], layer: int, direction: int) -> Tensor:
        """``[B, d_{l-1}, d_l, F]``: ``source`` of each directed edge's sender plus ``target`` of its receiver,
        from per-layer node features, for weight layer ``l`` along (``direction=0``) or against (``1``) the
        weights."""
        if direction == 0:
            return source[layer - 1].unsqueeze(2) + target[layer].unsqueeze(1)
        return target[layer - 1].unsqueeze(2) + source[layer].unsqueeze(1)

    @staticmethod
    def receivers(layer: int, direction: int) -> tuple[int, int]:
        """The node layer receiving the messages of weight layer ``layer`` in ``direction``, and the axis of
        the ``[B, d_{l-1}, d_l, F]`` message tensor that holds their senders."""
        return (layer, 1) if direction == 0 else (layer - 1, 2)


class NeighbourhoodStatistics(NamedTuple):
    """Sum, sum of squares, minimum and maximum of the ``count`` messages each neuron receives from one tensor
    (``[B, d_k, F]`` each; ``None`` where not asked for)."""

    count: int
    total: Tensor | None
    squares: Tensor | None
    minimum: Tensor | None
    maximum: Tensor | None


def neighbourhood_statistics(messages: Tensor, axis: int, moments: bool, extremes: bool) -> NeighbourhoodStatistics:
    """The statistics PNA's aggregators need, reduced along ``axis`` of ``messages``.

    ``moments`` asks for the sum and the sum of squares, ``extremes`` for the minimum and
    maximum. Differentiable; the backward pass writes the gradient of the messages in
    one pass (plus a scatter of the extremes' gradients into the arg-extremes), where
    composing ``sum``, ``square`` and ``amax``/``amin`` would take several full-size
    passes. At a tie, the whole gradient of a minimum or maximum goes to one of the
    tied messages (as ``torch.max(dim=...)`` does).
    """
    outputs = _Statistics.apply(messages, axis, moments, extremes)
    total, squares, minimum, maximum = (output if output.numel() else None for output in outputs)
    return NeighbourhoodStatistics(messages.size(axis), total, squares, minimum, maximum)


class _Statistics(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, messages: Tensor, axis: int, moments: bool, extremes: bool) -> tuple[Tensor, ...]:
        empty = messages.new_empty(0)
        total = squares = minimum = maximum = empty
        arg_min = arg_max = None
        if moments:
            total = messages.sum(axis)
            squares = messages.square().sum(axis)
        if extremes:
            minimum, arg_min = messages.min(axis)
            maximum, arg_max = messages.max(axis)
        ctx.axis = axis
        ctx.shape = messages.shape
        ctx.save_for_backward(messages if moments else None, arg_min, arg_max)
        ctx.set_materialize_grads(False)
        return total, squares, minimum, maximum

    @staticmethod
    def backward(
        ctx: Any,
        grad_total: Tensor | None,
        grad_squares: Tensor | None,
        grad_min: Tensor | None,
        grad_max: Tensor | None,
    ) -> tuple[Tensor | None, None, None, None]:
        messages, arg_min, arg_max = ctx.saved_tensors
        axis = ctx.axis
        grad: Tensor | None = None
        if grad_squares is not None:
            base = grad_total.unsqueeze(axis) if grad_total is not None else messages.new_zeros(())
            grad = torch.addcmul(base, messages, grad_squares.unsqueeze(axis), value=2.0).expand(ctx.shape)
        elif grad_total is not None:
            grad = grad_total.unsqueeze(axis).expand(ctx.shape)
        if grad_min is None and grad_max is None:
            return grad, None, None, None
        # The extremes' gradients are scattered into the full-size gradient, which must own its memory.
        grad = (
            torch.zeros(ctx.shape, dtype=_dtype(grad_min, grad_max), device=_device(grad_min, grad_max))
            if grad is None
            else grad.contiguous()
        )
        for extreme_grad, index in ((grad_min, arg_min), (grad_max, arg_max)):
            if extreme_grad is not None:
                grad.scatter_add_(axis, index.unsqueeze(axis), extreme_grad.unsqueeze(axis))
        return grad, None, None, None


def modulate(shift: Tensor, scale: Tensor, hidden: Tensor) -> Tensor:
    """``shift + scale * hidden`` (FiLM), whose backward skips the two multiplications by ``value=1`` that
    ``torch.addcmul``'s takes: a tenth of a training step's time at the sizes of a batch of INRs."""
    return _Modulate.apply(shift, scale, hidden)


class _Modulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, shift: Tensor, scale: Tensor, hidden: Tensor) -> Tensor:
        ctx.save_for_backward(scale, hidden)
        return torch.addcmul(shift, scale, hidden)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        scale, hidden = ctx.saved_tensors
        grad_scale = grad * hidden if ctx.needs_input_grad[1] else None
        grad_hidden = grad * scale if ctx.needs_input_grad[2] else None
        return grad, grad_scale, grad_hidden


def _dtype(*tensors: Tensor | None) -> torch.dtype:
    return next(tensor.dtype for tensor in tensors if tensor is not None)


def _device(*tensors: Tensor | None) -> torch.device:
    return next(tensor.device for tensor in tensors if tensor is not None)


def pairwise_extreme(first: Tensor, second: Tensor, largest: bool) -> Tensor:
    """``torch.maximum`` (``largest``) or ``torch.minimum`` of two tensors of one shape, with the same gradient
    (split in halves at a tie), whose backward pass compares into float masks: a third of the time of
    torch's on CPU."""
    return _PairwiseExtreme.apply(first, second, largest)


class _PairwiseExtreme(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, first: Tensor, second: Tensor, largest: bool) -> Tensor:
        ctx.save_for_backward(first, second)
        ctx.largest = largest
        return torch.maximum(first, second) if largest else torch.minimum(first, second)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        first, second = ctx.saved_tensors
        wins = torch.empty_like(first)
        (torch.gt if ctx.largest else torch.lt)(first, second, out=wins)
        ties = torch.eq(first, second, out=torch.empty_like(first))
        share = wins.add_(ties, alpha=0.5)
        grad_first = grad * share
        return grad_first, grad - grad_first, None
