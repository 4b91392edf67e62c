"""Dense views of one-architecture batches: ``[B, d_{l-1}, d_l, C]`` weights, ``[B, d_l, C]`` biases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.core.activations import UNKNOWN
from wsgraph.core.graph import assemble, canonical_positions, common_spec, num_networks


class DenseWeights(NamedTuple):
    """Per weight layer ``l = 1..M``: ``weights[l-1]`` ``[B, d_{l-1}, d_l, C]`` and ``biases[l-1]`` ``[B, d_l, C]``."""

    weights: list[Tensor]
    biases: list[Tensor]


def to_dense_weights(data: Data) -> DenseWeights:
    """Dense views of a graph or a one-architecture batch, sharing memory with it.

    The canonical edge order makes every returned tensor a strided view of
    ``data.edge_attr`` / ``data.x`` (no copy), so in-place changes show on both sides.
    Graphs whose edges come in another order are refused: pass them through
    :func:`wsgraph.sort_edges` first (which copies the edge features).

    Raises:
        ValueError: if the batch mixes architectures or is not in canonical layout.
    """
    spec = common_spec(data)
    batch_size = num_networks(data)
    x, edge_attr = data.x, data.edge_attr
    if x is None or edge_attr is None:
        raise ValueError("the graph has no 'x' or no 'edge_attr'")
    if edge_attr.size(0) != batch_size * spec.num_edges or x.size(0) != batch_size * spec.num_nodes:
        raise ValueError(
            f"expected {batch_size} networks of {spec} with {spec.num_nodes} nodes and {spec.num_edges} edges each, "
            f"got {x.size(0)} nodes and {edge_attr.size(0)} edges in all"
        )
    if canonical_positions(data) is not None:
        raise ValueError(
            "the edges are not in canonical order, so the weights have no dense view; "
            "reorder them with wsgraph.sort_edges(data) first"
        )
    channels = edge_attr.size(-1)
    edges = edge_attr.view(batch_size, spec.num_edges, channels)
    nodes = x.view(batch_size, spec.num_nodes, x.size(-1))
    weights = [
        edges[:, spec.edge_slice(layer)].view(batch_size, *spec.weight_shape(layer), channels)
        for layer in spec.weight_layers
    ]
    biases = [nodes[:, spec.node_slice(layer)] for layer in spec.weight_layers]
    return DenseWeights(weights, biases)


def from_dense_weights(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    like: Data | None = None,
) -> Batch:
    """The batch of graphs whose dense views are ``weights`` and ``biases``.

    Args:
        weights: per layer ``[B, d_{l-1}, d_l, C]``.
        biases: per layer ``[B, d_l, C]``.
        like: a graph or batch of as many networks, whose per-network metadata (``has_bias``,
            ``activation``, ``y``) the result keeps.
    """
    if like is None:
        return assemble(weights, biases)
    networks = int(like.layer_widths.size(0)) if "layer_widths" in like else 1
    if networks != weights[0].size(0):
        raise ValueError(f"like describes {networks} network(s), the weights {weights[0].size(0)}")
    activations = getattr(like, "activation", UNKNOWN)
    return assemble(
        weights, biases, has_bias=getattr(like, "has_bias", None), activation=activations, y=getattr(like, "y", None)
    )
