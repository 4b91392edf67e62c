"""The reductions and broadcasts a DWS layer needs, in two interchangeable forms.

:class:`ScatterOps` works on any batch through group indices (message passing over
neurons and (graph, layer) groups); :class:`DenseOps` works on ``[B, d_{l-1}, d_l, C]``
views of one-architecture batches. Layers are written once against their common
interface, :class:`WeightSpaceOps`, so the two backends share every parameter and every
line of the layer above the ops; the check of that shared code is
:mod:`wsgraph.layers.dense_reference`, which shares only the parameters.

"Tables" are per-neuron tensors of one layer ``k``: ``[N_k, F]`` rows for scatter,
``[B, d_k, F]`` for dense. Pooling keeps the fixed (input/output) neurons as channels:
``pooled_in(1)`` is the folded ``d_0 * C`` vector of each first-hidden-layer neuron, and
``pooled_out(M-1)`` the folded ``d_M * C`` vector of each last-hidden-layer neuron.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor
from torch_geometric.typing import WITH_TORCH_SCATTER
from torch_geometric.utils import scatter, segment

from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout

REDUCTIONS = ("mean", "sum", "max")


class WeightSpaceOps(ABC):
    """What a layer may do with the features of a batch of networks, in either backend.

    Args:
        features: the batch's weight and bias features.
        layout: the batch's index structure.
    """

    def __init__(self, features: WeightSpaceFeatures, layout: WeightSpaceLayout) -> None:
        self.features = features
        self.layout = layout
        self.num_weight_layers = layout.num_weight_layers
        self.num_graphs = layout.num_graphs

    @abstractmethod
    def bias(self, layer: int) -> Tensor:
        """The features of ``b_layer``, as a table of layer ``layer``."""

    @abstractmethod
    def weight(self, layer: int) -> Tensor:
        """The features of ``W_layer``."""

    @abstractmethod
    def pooled_in(self, layer: int, reduce: str = "mean") -> Tensor:
        """``W_layer`` reduced over its source neurons, per target neuron (folded for layer 1)."""

    @abstractmethod
    def pooled_out(self, layer: int, reduce: str = "mean") -> Tensor:
        """``W_{layer+1}`` reduced over its target neurons, per source neuron (folded before the output)."""

    @abstractmethod
    def table_reduce(self, table: Tensor, layer: int, reduce: str = "mean") -> Tensor:
        """Reduce a table of layer ``layer`` over its neurons: ``[B, F]``."""

    @abstractmethod
    def broadcast(self, per_graph: Tensor, layer: int) -> Tensor:
        """Per-network values ``[B, F]`` spread over the neurons of layer ``layer``."""

    @abstractmethod
    def combine_edges(self, layer: int, own: Tensor, at_source: Tensor, at_target: Tensor) -> Tensor:
        """``own[e] + at_source[src(e)] + at_target[dst(e)]`` for the edges of ``layer``, as ``[E_layer, F]``."""

    @abstractmethod
    def unfold_first(self, table: Tensor) -> Tensor:
        """A folded table of layer 1 (``d_0 * F`` channels) as the edge rows of ``W_1``."""

    def unfold_last(self, table: Tensor) -> Tensor:
        """A folded table of layer ``M - 1`` (``d_M * F`` channels) as the edge rows of ``W_M``."""
        return table.reshape(-1, table.size(-1) // self.layout.out_dim)

    def flat_weight(self, layer: int) -> Tensor:
        """All of ``W_layer`` folded per network, ``[B, d_{l-1} d_l C]`` (only when ``M = 1``)."""
        return self.weight(layer).reshape(self.num_graphs, -1)

    def flat_bias(self, layer: int) -> Tensor:
        """All of ``b_layer`` folded per network, ``[B, d_l C]`` (for the output layer)."""
        return self.bias(layer).reshape(self.num_graphs, -1)

    def rows(self, table: Tensor, channels: int) -> Tensor:
        """A table as one row of ``channels`` per neuron (scatter's layout)."""
        return table.reshape(-1, channels)


class ScatterOps(WeightSpaceOps):
    """Group reductions and gathers over the layout's (graph, layer) and neuron indices."""

    def bias(self, layer: int) -> Tensor:
        return self.features.biases[layer - 1]

    def weight(self, layer: int) -> Tensor:
        return self.features.weights[layer - 1]

    def pooled_in(self, layer: int, reduce: str = "mean") -> Tensor:
        weight, layout = self.weight(layer), self.layout
        if layer == 1:
            rows, fold = layout.node_counts[1], layout.in_dim
            folded = weight.new_zeros(rows * fold, weight.size(-1)).index_copy(0, layout.first_fold, weight)
            return folded.view(rows, fold * weight.size(-1))
        if reduce == "mean":
            summed = layout.by_target[layer - 1].sum(weight)
            return summed * self._inverse_width(layer, layer - 1, weight)
        return scatter(weight, layout.target[layer - 1], dim=0, dim_size=layout.node_counts[layer], reduce=reduce)

    def pooled_out(self, layer: int, reduce: str = "mean") -> Tensor:
        weight, layout = self.weight(layer + 1), self.layout
        if layer + 1 == self.num_weight_layers:
            # Edges leaving one neuron are contiguous and there are d_M of them.
            return weight.view(layout.node_counts[layer], layout.out_dim * weight.size(-1))
        if reduce == "mean":
            summed = layout.by_source[layer].sum(weight)
            return summed * self._inverse_width(layer, layer + 1, weight)
        return contiguous_groups(weight, layout.source_ptr[layer], reduce)

    def table_reduce(self, table: Tensor, layer: int, reduce: str = "mean") -> Tensor:
        return contiguous_groups(table, self.layout.node_ptr[layer], reduce)

    def broadcast(self, per_graph: Tensor, layer: int) -> Tensor:
        return self.layout.by_graph[layer].gather(per_graph)

    def combine_edges(self, layer: int, own: Tensor, at_source: Tensor, at_target: Tensor) -> Tensor:
        layout = self.layout
        return own + layout.by_source[layer - 1].gather(at_source) + layout.by_target[layer - 1].gather(at_target)

    def unfold_first(self, table: Tensor) -> Tensor:
        channels = table.size(-1) // self.layout.in_dim
        return self.layout.first_unfold.gather(table.reshape(-1, channels))

    def _inverse_width(self, table_layer: int, width_layer: int, like: Tensor) -> Tensor:
        layout = self.layout
        widths = layout.widths[layout.node_graph[table_layer], width_layer]
        return widths.to(like.dtype).reciprocal().unsqueeze(-1)


class DenseOps(WeightSpaceOps):
    """The same operations as tensor reductions and broadcasts on dense views."""

    def bias(self, layer: int) -> Tensor:
        return self.layout.dense_bias(self.features, layer)

    def weight(self, layer: int) -> Tensor:
        return self.layout.dense_weight(self.features, layer)

    def pooled_in(self, layer: int, reduce: str = "mean") -> Tensor:
        weight = self.weight(layer)
        if layer == 1:
            batch, _, width, _ = weight.shape
            return weight.transpose(1, 2).reshape(batch, width, -1)
        return _reduce(weight, 1, reduce)

    def pooled_out(self, layer: int, reduce: str = "mean") -> Tensor:
        weight = self.weight(layer + 1)
        if layer + 1 == self.num_weight_layers:
            return weight.reshape(weight.size(0), weight.size(1), -1)
        return _reduce(weight, 2, reduce)

    def table_reduce(self, table: Tensor, layer: int, reduce: str = "mean") -> Tensor:
        return _reduce(table, 1, reduce)

    def broadcast(self, per_graph: Tensor, layer: int) -> Tensor:
        return per_graph.unsqueeze(1)

    def combine_edges(self, layer: int, own: Tensor, at_source: Tensor, at_target: Tensor) -> Tensor:
        combined = own + at_source.unsqueeze(2) + at_target.unsqueeze(1)
        return combined.reshape(-1, combined.size(-1))

    def unfold_first(self, table: Tensor) -> Tensor:
        batch, width, folded = table.shape
        in_dim = self.layout.in_dim
        return table.view(batch, width, in_dim, folded // in_dim).transpose(1, 2).reshape(-1, folded // in_dim)


def _reduce(tensor: Tensor, dim: int, reduce: str) -> Tensor:
    if reduce == "mean":
        return tensor.mean(dim)
    if reduce == "sum":
        return tensor.sum(dim)
    if reduce == "max":
        return tensor.amax(dim)
    raise ValueError(f"unknown reduction {reduce!r}; choose from {REDUCTIONS}")


def contiguous_groups(values: Tensor, ptr: Tensor, reduce: str) -> Tensor:
    """Reduce rows ``ptr[g]..ptr[g+1]-1`` of ``values`` for every group ``g``.

    On CUDA this is torch-scatter's ``segment_csr`` when it is installed (through PyG).
    On CPU it is always torch's own ``segment_reduce``: torch-scatter's OpenMP threads
    compete with torch's on small machines (measured: DWSNet steps from 0.7 s to between
    1.6 s and 9 s on 2 cores, see docs/benchmarks.md).
    """
    if values.is_cuda and WITH_TORCH_SCATTER:
        return segment(values, ptr, reduce=reduce)
    reduction = {"max": "max", "sum": "sum", "mean": "mean"}[reduce]
    return torch.segment_reduce(values, reduction, offsets=ptr, axis=0, unsafe=True)


def network_pools(
    ops: WeightSpaceOps,
    reduce: str = "mean",
    incoming: dict[int, Tensor] | None = None,
    outgoing: dict[int, Tensor] | None = None,
) -> list[Tensor]:
    """Every object reduced over all its permuted neurons, ``[B, fold * C]`` each, in the
    order ``W_1..W_M, b_1..b_M`` of :func:`~wsgraph.layers.objects.weight_space_objects`.

    ``incoming``/``outgoing`` are the per-neuron tables of the hidden layers when the
    caller has them already (reduced with the same ``reduce``).
    """
    num_weight_layers = ops.num_weight_layers
    if num_weight_layers == 1:
        return [ops.flat_weight(1), ops.flat_bias(1)]
    hidden = range(1, num_weight_layers)
    last = num_weight_layers - 1
    incoming = incoming if incoming is not None else {k: ops.pooled_in(k, reduce) for k in hidden}
    last_outgoing = outgoing[last] if outgoing is not None else ops.pooled_out(last, reduce)
    pools = [ops.table_reduce(incoming[k], k, reduce) for k in hidden]
    pools.append(ops.table_reduce(last_outgoing, last, reduce))
    pools += [ops.table_reduce(ops.bias(k), k, reduce) for k in hidden]
    pools.append(ops.flat_bias(num_weight_layers))
    return pools


def make_ops(backend: str, features: WeightSpaceFeatures, layout: WeightSpaceLayout) -> WeightSpaceOps:
    if backend == "scatter":
        return ScatterOps(features, layout)
    if backend == "dense":
        return DenseOps(features, layout)
    raise ValueError(f"unknown backend {backend!r}; choose 'scatter' or 'dense'")
