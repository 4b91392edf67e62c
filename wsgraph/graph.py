"""The PyG graph of an MLP: schema, construction from dense weights, and batching.

See :mod:`wsgraph.spec` for the canonical node and edge order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.activations import UNKNOWN
from wsgraph.spec import WeightSpaceSpec

# Per-graph attributes stored as one row per graph, concatenated along dim 0 by `Batch`.
PER_GRAPH_KEYS = frozenset({"layer_widths", "has_bias"})
# Position/layer labels: never shifted by the number of nodes when batching (PyG would
# shift `node_index` because its name contains "index").
UNSHIFTED_KEYS = frozenset({"node_index", "node_layer", "edge_layer"})


class WeightSpaceGraph(Data):
    r"""The graph of one MLP: a node per neuron, an edge per weight.

    Attributes:
        x (Tensor): ``[N, C]`` node features, the neuron's bias (input neurons: 0).
        edge_index (Tensor): ``[2, E]`` edges, neuron ``i`` of layer ``l-1`` to neuron
            ``j`` of layer ``l``, in the canonical order of :mod:`wsgraph.spec`.
        edge_attr (Tensor): ``[E, C]`` edge features, the weight :math:`W_l[i, j]`.
        node_layer (Tensor): ``[N]`` layer ``k`` of each neuron (``0..M``).
        node_index (Tensor): ``[N]`` position of each neuron within its layer.
        edge_layer (Tensor): ``[E]`` weight layer ``l`` of each edge (``1..M``).
        layer_widths (Tensor): ``[1, M+1]`` widths ``d_0..d_M`` (``[B, M+1]`` in a batch).
        has_bias (Tensor): ``[1, M]`` whether layer ``l`` had a bias (a missing bias is
            stored as zeros).
        activation (str): the hidden activation, e.g. ``"relu"`` or ``"sine(30.0)"``,
            or ``"unknown"`` where it could not be read.
    """

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in UNSHIFTED_KEYS or key in PER_GRAPH_KEYS:
            return 0
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key in UNSHIFTED_KEYS or key in PER_GRAPH_KEYS:
            return 0
        return super().__cat_dim__(key, value, *args, **kwargs)


def graph_specs(data: Data) -> list[WeightSpaceSpec]:
    """The architecture of every network in a graph or batch, in order."""
    widths = _layer_widths(data)
    return [WeightSpaceSpec(tuple(row)) for row in widths.tolist()]


def common_spec(data: Data) -> WeightSpaceSpec:
    """The one architecture shared by every network of ``data``.

    Raises:
        ValueError: if the batch mixes architectures.
    """
    if mixes_architectures(data):
        distinct = sorted({str(spec) for spec in graph_specs(data)})
        raise ValueError(
            f"this batch mixes architectures ({', '.join(distinct[:4])}{', ...' if len(distinct) > 4 else ''}); "
            "a dense view needs networks of one architecture"
        )
    return WeightSpaceSpec(tuple(_layer_widths(data)[0].tolist()))


def mixes_architectures(data: Data) -> bool:
    """Whether the networks of a graph or batch have more than one architecture."""
    widths = _layer_widths(data)
    return widths.size(0) > 1 and not bool((widths == widths[:1]).all())


def num_networks(data: Data) -> int:
    return _layer_widths(data).size(0)


def _layer_widths(data: Data) -> Tensor:
    widths = getattr(data, "layer_widths", None)
    if not isinstance(widths, Tensor) or widths.dim() != 2:
        raise ValueError(
            f"{type(data).__name__} has no 'layer_widths' [B, M+1]; build graphs with wsgraph.mlp_to_graph"
        )
    return widths


def check_channels_match(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> None:
    """Raise unless every dense weight ``[B, d_{l-1}, d_l, C]`` and bias ``[B, d_l, C]`` chain."""
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"expected as many bias layers as weight layers, got {len(weights)} and {len(biases)}")
    batch, _, _, channels = weights[0].shape
    for layer, (weight, bias) in enumerate(zip(weights, biases), start=1):
        if weight.dim() != 4 or weight.shape[0] != batch or weight.shape[3] != channels:
            raise ValueError(
                f"weight layer {layer} has shape {tuple(weight.shape)}, expected [{batch}, d_in, d_out, {channels}]"
            )
        if layer > 1 and weight.shape[1] != weights[layer - 2].shape[2]:
            raise ValueError(
                f"weight layer {layer} takes {weight.shape[1]} inputs but layer {layer - 1} "
                f"has {weights[layer - 2].shape[2]} outputs"
            )
        if tuple(bias.shape) != (batch, weight.shape[2], channels):
            raise ValueError(
                f"bias layer {layer} has shape {tuple(bias.shape)}, expected ({batch}, {weight.shape[2]}, {channels})"
            )


def assemble(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    has_bias: Sequence[bool] | Tensor | None = None,
    activation: str = UNKNOWN,
    y: Tensor | None = None,
) -> Batch:
    """Build a batch of ``B`` graphs of one architecture from dense tensors, vectorised.

    Args:
        weights: per weight layer ``[B, d_{l-1}, d_l, C]`` (wsgraph's layout).
        biases: per weight layer ``[B, d_l, C]``.
        has_bias: per layer (``[M]``) or per network and layer (``[B, M]``).
        activation: the hidden activation's name, stored on every graph (a list in a batch).
        y: optional per-network targets, ``[B, ...]``.
    """
    check_channels_match(weights, biases)
    batch_size, _, _, channels = weights[0].shape
    spec = WeightSpaceSpec((weights[0].shape[1], *(w.shape[2] for w in weights)))
    device = weights[0].device
    num_nodes, num_edges = spec.num_nodes, spec.num_edges

    input_bias = weights[0].new_zeros(batch_size, spec.in_dim, channels)
    x = torch.cat([input_bias, *biases], dim=1).reshape(batch_size * num_nodes, channels)
    edge_attr = torch.cat([w.reshape(batch_size, -1, channels) for w in weights], dim=1)
    edge_attr = edge_attr.reshape(batch_size * num_edges, channels)

    template = spec.index_tensors(device)
    node_shift = torch.arange(batch_size, device=device) * num_nodes
    edge_index = (template["edge_index"].unsqueeze(1) + node_shift.view(1, -1, 1)).reshape(2, -1)

    if has_bias is None:
        has_bias = torch.ones(spec.num_layers, dtype=torch.bool)
    has_bias = torch.as_tensor(has_bias, dtype=torch.bool, device=device)
    if has_bias.dim() == 1:
        has_bias = has_bias.expand(batch_size, -1)

    batch = Batch(_base_cls=WeightSpaceGraph)
    batch.x = x
    batch.edge_index = edge_index
    batch.edge_attr = edge_attr
    batch.node_layer = template["node_layer"].repeat(batch_size)
    batch.node_index = template["node_index"].repeat(batch_size)
    batch.edge_layer = template["edge_layer"].repeat(batch_size)
    batch.layer_widths = torch.tensor(spec.widths, device=device).expand(batch_size, -1).contiguous()
    batch.has_bias = has_bias.contiguous()
    per_graph = torch.arange(batch_size + 1)
    slices = {
        "x": per_graph * num_nodes,
        "edge_index": per_graph * num_edges,
        "edge_attr": per_graph * num_edges,
        "node_layer": per_graph * num_nodes,
        "node_index": per_graph * num_nodes,
        "edge_layer": per_graph * num_edges,
        "layer_widths": per_graph,
        "has_bias": per_graph,
    }
    increments: dict[str, Any] = {key: None for key in slices}
    increments["edge_index"] = per_graph[:-1] * num_nodes
    batch.activation = [activation] * batch_size
    slices["activation"], increments["activation"] = per_graph, None
    if y is not None:
        if y.size(0) != batch_size:
            raise ValueError(f"got {y.size(0)} targets for {batch_size} networks")
        batch.y = y
        slices["y"], increments["y"] = per_graph, None
    batch.batch = torch.arange(batch_size, device=device).repeat_interleave(num_nodes)
    batch.ptr = per_graph.to(device) * num_nodes
    batch._num_graphs = batch_size
    batch._slice_dict = slices
    batch._inc_dict = increments
    return batch


def single_graph(batch: Batch) -> WeightSpaceGraph:
    """The only graph of a one-network batch, as a plain :class:`WeightSpaceGraph`."""
    if batch.num_graphs != 1:
        raise ValueError(f"expected one network, got a batch of {batch.num_graphs}")
    data = WeightSpaceGraph()
    for key, value in batch:
        if key in ("batch", "ptr"):
            continue
        data[key] = value[0] if isinstance(value, list) else value
    return data
