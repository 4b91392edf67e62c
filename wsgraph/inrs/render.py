"""Evaluate the networks a batch of graphs describes: differentiable, batched rendering of INRs."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.core.activations import UNKNOWN, make_activation
from wsgraph.core.dense import to_dense_weights
from wsgraph.core.graph import graph_specs, num_networks, sort_edges
from wsgraph.inrs.siren import PixelGrid


def image_grid_coords(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """The ``[height * width, 2]`` pixel coordinates the image INRs are fitted on.

    Row-major pixel order; pixel ``(r, c)`` sits at ``(x, y) = (lin_w[c], lin_h[r])``
    with ``lin_n = linspace(-1, 1, n)`` (see :class:`~wsgraph.inrs.siren.PixelGrid`).
    """
    return PixelGrid(height, width).coords(device)


def render_inr(
    data: Data,
    coords: Tensor,
    output_offset: float = 0.0,
    activation: str | None = None,
) -> Tensor:
    r"""Evaluate every network of a graph or batch at the given points.

    Gradients flow to ``data.edge_attr`` and ``data.x`` (the weights and biases), which
    is what INR editing needs: render the edited networks and compare with a target.
    A batch of one architecture is evaluated through dense views of the graph's tensors
    (:func:`wsgraph.to_dense_weights`, no copy); a batch of mixed widths is evaluated
    one architecture at a time and reassembled in order.

    Args:
        data: a :class:`~wsgraph.core.graph.WeightSpaceGraph` or a batch of them, with one
            feature channel, edges in any order.
        coords: ``[P, d_0]`` points shared by every network, or ``[B, P, d_0]``.
        output_offset: added to every output (the image INRs' recipe adds +0.5).
        activation: the hidden activation's name (e.g. ``"sine(30.0)"``); by default
            the one each graph records.

    Returns:
        ``[B, P, d_M]``, the networks' outputs (``B = 1`` for a single graph).

    Shapes:
        - **input:** graphs with ``edge_attr`` :math:`(E, 1)`, ``x`` :math:`(N, 1)`,
          coordinates :math:`(P, d_0)` or :math:`(B, P, d_0)`
        - **output:** :math:`(B, P, d_M)`
    """
    data, names, uniform = _prepare(data, coords, activation, "render_inr")
    if uniform is not None:
        weights, biases = uniform
        return _evaluate(weights, biases, coords, names[0]) + output_offset
    return _render_mixed(data, coords, names) + output_offset


def _prepare(
    data: Data, coords: Tensor, activation: str | None, caller: str
) -> tuple[Data, list[str], tuple[list[Tensor], list[Tensor]] | None]:
    """What both evaluators start with: the graph with its edges sorted, each network's
    activation name, and, when the batch is one architecture with one activation, its
    weights and biases as dense one-channel views (``None`` otherwise). Refuses graphs
    that are not one-channel and coordinates for another number of networks."""
    count = num_networks(data)
    names = _activation_names(data, activation, count)
    data = sort_edges(data)
    if data.edge_attr is None or data.edge_attr.size(-1) != 1:
        channels = None if data.edge_attr is None else data.edge_attr.size(-1)
        raise ValueError(f"{caller} evaluates one-channel graphs (weights as edge features), got {channels} channels")
    if coords.dim() == 3 and coords.size(0) != count:
        raise ValueError(f"got coordinates for {coords.size(0)} networks, the batch has {count}")
    widths = data.layer_widths
    if not (bool((widths == widths[:1]).all()) and len(set(names)) == 1):
        return data, names, None
    dense = to_dense_weights(data)
    weights = [w.squeeze(-1) for w in dense.weights]
    biases = [b.squeeze(-1) for b in dense.biases]
    return data, names, (weights, biases)


def _activation_names(data: Data, activation: str | None, count: int) -> list[str]:
    if activation is not None:
        make_activation(activation)
        return [activation] * count
    recorded = getattr(data, "activation", None)
    names = [recorded] * count if isinstance(recorded, str) else list(recorded or [UNKNOWN] * count)
    if UNKNOWN in names and data.layer_widths.size(1) > 2:
        raise ValueError("a graph's activation is unknown; pass activation='sine(30.0)' (or another) to render_inr")
    return names


def _evaluate(weights: list[Tensor], biases: list[Tensor], coords: Tensor, activation: str) -> Tensor:
    """``weights[l]``: ``[B, d_{l-1}, d_l]`` (wsgraph layout), ``biases[l]``: ``[B, d_l]``."""
    return _evaluate_layers(weights, biases, coords, activation)[-1]


def _evaluate_layers(weights: list[Tensor], biases: list[Tensor], coords: Tensor, activation: str) -> list[Tensor]:
    """Every layer's values ``[B, P, d_k]``, ``k = 0..M``: the inputs, each hidden layer after its activation,
    the outputs."""
    if coords.size(-1) != weights[0].size(1):
        raise ValueError(
            f"coordinates have {coords.size(-1)} dimensions, the networks take {weights[0].size(1)} inputs"
        )
    hidden_activation: nn.Module = make_activation(activation) if len(weights) > 1 else nn.Identity()
    hidden = coords.to(weights[0].dtype)
    layers = [hidden.expand(weights[0].size(0), *hidden.shape[-2:])]
    for layer, (weight, bias) in enumerate(zip(weights, biases), start=1):
        hidden = torch.matmul(hidden, weight) + bias.unsqueeze(1)
        if layer < len(weights):
            hidden = hidden_activation(hidden)
        layers.append(hidden)
    return layers


def _render_mixed(data: Data, coords: Tensor, names: list[str]) -> Tensor:
    """One vectorised evaluation per (architecture, activation) group, outputs put back in order."""
    if len({spec.out_dim for spec in graph_specs(data)}) > 1:
        raise ValueError("the batch mixes output widths; render_inr returns one [B, P, d_M] tensor")
    outputs, order = [], []
    for index, _, layers in _evaluate_groups(data, coords, names):
        outputs.append(layers[-1])
        order.append(index)
    return torch.cat(outputs)[torch.argsort(torch.cat(order))]


def _evaluate_groups(data: Data, coords: Tensor, names: list[str]):
    """For each (architecture, activation) group of a canonically ordered batch: the networks' positions,
    their first node's row in ``x``, and every layer's values (:func:`_evaluate_layers`)."""
    specs = graph_specs(data)
    widths = data.layer_widths
    edge_start = torch.cumsum((widths[:, :-1] * widths[:, 1:]).sum(1), 0) - (widths[:, :-1] * widths[:, 1:]).sum(1)
    node_start = torch.cumsum(widths.sum(1), 0) - widths.sum(1)
    groups: dict[tuple, list[int]] = {}
    for position, (spec, name) in enumerate(zip(specs, names)):
        groups.setdefault((spec, name), []).append(position)
    for (spec, name), members in groups.items():
        index = torch.tensor(members, device=widths.device)
        edges = data.edge_attr[edge_start[index].unsqueeze(1) + torch.arange(spec.num_edges, device=widths.device)]
        nodes = data.x[node_start[index].unsqueeze(1) + torch.arange(spec.num_nodes, device=widths.device)]
        weights = [
            edges[:, spec.edge_slice(layer), 0].reshape(-1, *spec.weight_shape(layer)) for layer in spec.weight_layers
        ]
        biases = [nodes[:, spec.node_slice(layer), 0] for layer in spec.weight_layers]
        yield (
            index,
            node_start[index],
            _evaluate_layers(weights, biases, coords[index] if coords.dim() == 3 else coords, name),
        )


def neuron_values(data: Data, coords: Tensor, activation: str | None = None) -> Tensor:
    r"""The value of every neuron of every network of a graph or batch at the given points.

    Row ``n`` holds neuron ``n``'s value at each point, in the rows of ``data.x``: the
    input coordinate itself for an input neuron, the value after the activation for a
    hidden neuron, the output (without any output offset) for an output neuron. These are
    the activations the rebuilt module (:func:`wsgraph.graph_to_mlp`) computes layer by
    layer. Gradients flow to the weights and biases and to ``coords`` (e.g. learned probe
    points); networks are evaluated as :func:`render_inr` evaluates them.

    Args:
        data: a :class:`~wsgraph.core.graph.WeightSpaceGraph` or a batch of them, with one
            feature channel, edges in any order.
        coords: ``[P, d_0]`` points shared by every network, or ``[B, P, d_0]``.
        activation: the hidden activation's name; by default the one each graph records.

    Returns:
        ``[N, P]``, one row per neuron (``N = data.num_nodes``).
    """
    data, names, uniform = _prepare(data, coords, activation, "neuron_values")
    if uniform is not None:
        weights, biases = uniform
        layers = _evaluate_layers(weights, biases, coords, names[0])
        # [B, P, N_g] with the neurons of a network in node order, then one row per neuron.
        return torch.cat(layers, dim=2).transpose(1, 2).reshape(-1, coords.size(-2))
    values = data.x.new_zeros(data.num_nodes, coords.size(-2))
    for _, first_node, layers in _evaluate_groups(data, coords, names):
        per_network = torch.cat(layers, dim=2).transpose(1, 2)
        rows = first_node.unsqueeze(1) + torch.arange(per_network.size(1), device=first_node.device)
        values = values.index_put((rows.reshape(-1),), per_network.reshape(-1, per_network.size(-1)))
    return values
