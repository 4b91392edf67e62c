"""Look at small networks: a networkx view of a weight-space graph, and a layered drawing.

Both read one network; for a :class:`~torch_geometric.data.Batch` pass ``index=`` to
pick it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import networkx as nx
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.core.graph import graph_specs
from wsgraph.io import save_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Beyond this many edges a drawing is a solid smear of lines; `force=True` draws anyway.
MAX_DRAWN_EDGES = 2000


def to_networkx(data: Data, index: int | None = None) -> nx.DiGraph:
    r"""The directed graph of one network: a node per neuron, an edge per weight.

    Nodes are numbered ``0..N-1`` in wsgraph's canonical order (by layer, then index
    within the layer) and carry ``layer`` (:math:`k`), ``index`` (position within the
    layer) and ``bias`` (input neurons: 0). Edges go from neuron :math:`i` of layer
    :math:`l-1` to neuron :math:`j` of layer :math:`l` and carry ``layer``
    (:math:`l`) and ``weight`` (:math:`W_l[i, j]`).

    ``bias`` and ``weight`` are Python floats for one-channel graphs (what
    :func:`wsgraph.mlp_to_graph` builds) and tuples of floats, one entry per channel,
    for multi-channel graphs. The graph attributes hold ``widths`` and ``activation``.

    Args:
        data: a graph, or a batch together with ``index``.
        index: which network of a batch to convert (``None`` for a single graph or a
            one-network batch).

    Raises:
        ValueError: for a batch of several networks without ``index``, or an index out
            of range.
    """
    graph = _one_network(data, index)
    spec = graph_specs(graph)[0]
    activation = getattr(graph, "activation", "unknown")
    out = nx.DiGraph(widths=spec.widths, activation=activation[0] if isinstance(activation, list) else activation)
    biases = _values(graph.x)
    layers, positions = graph.node_layer.tolist(), graph.node_index.tolist()
    out.add_nodes_from(
        (node, {"layer": layer, "index": position, "bias": bias})
        for node, (layer, position, bias) in enumerate(zip(layers, positions, biases))
    )
    sources, targets = graph.edge_index.tolist()
    out.add_edges_from(
        (src, dst, {"layer": layer, "weight": weight})
        for src, dst, layer, weight in zip(sources, targets, graph.edge_layer.tolist(), _values(graph.edge_attr))
    )
    return out


def draw_network(
    data: Data,
    ax: Axes | None = None,
    path: str | os.PathLike | None = None,
    *,
    index: int | None = None,
    channel: int = 0,
    weight_cmap: str = "RdBu_r",
    bias_cmap: str = "PiYG",
    title: str | None = None,
    max_edges: int = MAX_DRAWN_EDGES,
    force: bool = False,
) -> Figure:
    r"""Draw one small network in layers: neuron :math:`(k, i)` sits at ``x = k``, ``y`` centred.

    Edges are coloured by weight and nodes by bias, each on a diverging colour map
    centred at zero, with a colour bar for each. Input neurons (which have no bias)
    are drawn grey. Drawing needs no display: without ``ax`` the figure is made
    directly, outside :mod:`matplotlib.pyplot`, with the Agg canvas.

    Args:
        data: a graph, or a batch together with ``index``.
        ax: the axes to draw into; a new figure is made when ``None``.
        path: where to save the figure (PNG, SVG, PDF... by extension), written to a
            temporary file first and then moved into place.
        index: which network of a batch to draw.
        channel: which feature channel of a multi-channel graph gives the colours.
        weight_cmap: colour map of the edges.
        bias_cmap: colour map of the nodes.
        title: the axes title; by default the widths and the activation.
        max_edges: refuse networks with more edges than this ...
        force: ... unless ``force`` is set.

    Returns:
        The figure drawn into.

    Raises:
        ValueError: for a network with more than ``max_edges`` edges (without
            ``force``), a batch without ``index``, or a channel out of range.
    """
    from matplotlib import colors
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    graph = _one_network(data, index)
    spec = graph_specs(graph)[0]
    if spec.num_edges > max_edges and not force:
        raise ValueError(
            f"network {spec} has {spec.num_edges} edges, more than max_edges={max_edges} that can be drawn legibly; "
            "pass force=True to draw it anyway"
        )
    num_channels = graph.edge_attr.size(-1)
    if not -num_channels <= channel < num_channels:
        raise ValueError(f"channel {channel} is out of range for a graph with {num_channels} channels")
    weights = graph.edge_attr[:, channel].detach().double().cpu()
    biases = graph.x[:, channel].detach().double().cpu()
    widths = torch.tensor(spec.widths, dtype=torch.float64)
    node_x = graph.node_layer.cpu().double()
    node_y = (widths[graph.node_layer.cpu()] - 1) / 2 - graph.node_index.cpu().double()
    src, dst = graph.edge_index.cpu()
    segments = torch.stack([torch.stack([node_x[src], node_y[src]], 1), torch.stack([node_x[dst], node_y[dst]], 1)], 1)

    if ax is None:
        figure = Figure(
            figsize=(2.0 + 1.6 * len(spec.widths), min(8.0, 1.5 + 0.28 * max(spec.widths))), layout="constrained"
        )
        ax = figure.add_subplot()
    figure = ax.get_figure()
    weight_norm = colors.CenteredNorm(vcenter=0.0, halfrange=_half_range(weights))
    edges = LineCollection(segments.numpy(), cmap=weight_cmap, norm=weight_norm, linewidths=_line_width(spec.num_edges))
    edges.set_array(weights.numpy())
    edges.set_zorder(1)
    ax.add_collection(edges)

    is_input = graph.node_layer.cpu() == 0
    hidden_and_output = ~is_input
    node_size = 220.0 if max(spec.widths) <= 16 else 60.0
    ax.scatter(node_x[is_input], node_y[is_input], s=node_size, c="0.75", edgecolors="0.2", linewidths=0.6, zorder=2)
    nodes = ax.scatter(
        node_x[hidden_and_output],
        node_y[hidden_and_output],
        s=node_size,
        c=biases[hidden_and_output].numpy(),
        cmap=bias_cmap,
        norm=colors.CenteredNorm(vcenter=0.0, halfrange=_half_range(biases[hidden_and_output])),
        edgecolors="0.2",
        linewidths=0.6,
        zorder=2,
    )
    figure.colorbar(edges, ax=ax, label="weight", shrink=0.8, aspect=25, pad=0.01)
    figure.colorbar(nodes, ax=ax, label="bias", shrink=0.8, aspect=25, pad=0.01)
    ax.set_xticks(range(len(spec.widths)), _layer_labels(len(spec.widths)))
    ax.set_yticks([])
    ax.set_xlim(-0.4, len(spec.widths) - 0.6)
    ax.set_ylim(-(max(spec.widths) + 1) / 2, (max(spec.widths) + 1) / 2)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    activation = getattr(graph, "activation", "unknown")
    activation = activation[0] if isinstance(activation, list) else activation
    ax.set_title(title if title is not None else f"MLP {spec}, activation {activation}")
    if path is not None:
        save_figure(figure, path, dpi=150)
    return figure


def _one_network(data: Data, index: int | None) -> Data:
    if not isinstance(data, Batch):
        if index not in (None, 0):
            raise ValueError(f"index={index} given for a single graph; index= picks a network of a Batch")
        return data
    if index is None:
        if data.num_graphs != 1:
            raise ValueError(f"got a batch of {data.num_graphs} networks; pass index= to pick one")
        index = 0
    if not -data.num_graphs <= index < data.num_graphs:
        raise ValueError(f"index {index} is out of range for a batch of {data.num_graphs} networks")
    return data.get_example(index % data.num_graphs)


def _values(features: Tensor) -> list:
    rows = features.detach().cpu()
    if rows.size(-1) == 1:
        return rows.squeeze(-1).tolist()
    return [tuple(row) for row in rows.tolist()]


def _half_range(values: Tensor) -> float:
    # A network of all-zero values still needs a non-degenerate colour scale.
    largest = float(values.abs().max()) if values.numel() else 0.0
    return largest if largest > 0 else 1.0


def _line_width(num_edges: int) -> float:
    return 1.6 if num_edges <= 100 else 0.9 if num_edges <= 600 else 0.5


def _layer_labels(num_neuron_layers: int) -> list[str]:
    return ["input", *[f"hidden {k}" for k in range(1, num_neuron_layers - 1)], "output"]
