"""The PyG graph of an MLP: schema, construction from dense weights, and batching.

See :mod:`wsgraph.core.spec` for the canonical node and edge order.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.core.activations import UNKNOWN
from wsgraph.core.spec import WeightSpaceSpec

# What a CNN's graph records besides an MLP's, one row per graph (see WeightSpaceGraph).
CONV_KEYS = ("conv_layers", "kernel_size", "kernel_grid", "conv_stride", "conv_padding", "conv_dilation")
# Per-graph attributes stored as one row per graph, concatenated along dim 0 by `Batch`.
PER_GRAPH_KEYS = frozenset({"layer_widths", "has_bias", *CONV_KEYS})
# Position/layer labels: never shifted by the number of nodes when batching (PyG would
# shift `node_index` because its name contains "index").
UNSHIFTED_KEYS = frozenset({"node_index", "node_layer", "edge_layer"})
_POSITIONS_CACHE = "_wsgraph_edge_positions"


class WeightSpaceGraph(Data):
    r"""The graph of one MLP: a node per neuron, an edge per weight.

    Attributes:
        x (Tensor): ``[N, C]`` node features, the neuron's bias (input neurons: 0).
        edge_index (Tensor): ``[2, E]`` edges, neuron ``i`` of layer ``l-1`` to neuron
            ``j`` of layer ``l``, in the canonical order of :mod:`wsgraph.core.spec`.
        edge_attr (Tensor): ``[E, C]`` edge features, the weight :math:`W_l[i, j]`.
        node_layer (Tensor): ``[N]`` layer ``k`` of each neuron (``0..M``).
        node_index (Tensor): ``[N]`` position of each neuron within its layer.
        edge_layer (Tensor): ``[E]`` weight layer ``l`` of each edge (``1..M``).
        layer_widths (Tensor): ``[1, M+1]`` widths ``d_0..d_M`` (``[B, M+1]`` in a batch).
        has_bias (Tensor): ``[1, M]`` whether layer ``l`` had a bias (a missing bias is
            stored as zeros).
        activation (str): the hidden activation, e.g. ``"relu"`` or ``"sine(30.0)"``,
            or ``"unknown"`` where it could not be read.

    The graph of a CNN (see :mod:`wsgraph.core.convert_cnn`) has a node per channel and an edge per
    (input channel, output channel) pair; ``edge_attr`` is ``[E, H*W]``, the kernel
    zero-padded into an ``H x W`` grid (linear layers: a 1x1 kernel at its centre), and
    it also has

    Attributes:
        conv_layers (Tensor): ``[1]`` how many leading weight layers are convolutions.
        kernel_size (Tensor): ``[1, M, 2]`` each weight layer's kernel ``(height, width)``.
        kernel_grid (Tensor): ``[1, 2]`` the padded grid ``(H, W)`` of ``edge_attr``.
        conv_stride, conv_padding, conv_dilation (Tensor): ``[1, M, 2]`` each layer's
            convolution geometry (linear layers: 1, 0, 1; ``-1`` where it is unknown,
            as for a state_dict).
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
    if not is_conv_graph(data):
        return [WeightSpaceSpec(tuple(row)) for row in widths.tolist()]
    return [
        WeightSpaceSpec(tuple(row), kernel_sizes=tuple(map(tuple, kernels)), conv_layers=int(convs))
        for row, kernels, convs in zip(
            widths.tolist(), data.kernel_size.tolist(), data.conv_layers.reshape(-1).tolist()
        )
    ]


def is_conv_graph(data: Data) -> bool:
    """Whether ``data`` is the graph (or batch of graphs) of CNNs: it records kernel sizes."""
    return isinstance(getattr(data, "kernel_size", None), Tensor)


def require_float_parameters(data: Data) -> None:
    """Refuse a graph whose weights (``edge_attr``) or biases (``x``) are not floating point, or not
    ``[rows, channels]`` (a 1-D one failed in a reshape that named nothing)."""
    for name in ("edge_attr", "x"):
        values = data[name]
        if not values.is_floating_point():
            raise ValueError(
                f"the graph's {name} is {values.dtype}; network parameters are read from floating-point graphs"
            )
        if values.dim() != 2:
            raise ValueError(f"the graph's {name} has shape {tuple(values.shape)}; expected [rows, channels]")


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


def check_channels_match(weights: Sequence[Tensor], biases: Sequence[Tensor], bias_channels: int | None = None) -> None:
    """Raise unless every dense weight ``[B, d_{l-1}, d_l, C]`` and bias ``[B, d_l, C]`` chain.

    ``bias_channels``: the biases' channels where they differ from the weights' (a CNN's
    edges carry a kernel, its nodes one bias).
    """
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"expected as many bias layers as weight layers, got {len(weights)} and {len(biases)}")
    batch, _, _, channels = weights[0].shape
    node_channels = channels if bias_channels is None else bias_channels
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
        if tuple(bias.shape) != (batch, weight.shape[2], node_channels):
            raise ValueError(
                f"bias layer {layer} has shape {tuple(bias.shape)}, "
                f"expected ({batch}, {weight.shape[2]}, {node_channels})"
            )


def assemble(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    has_bias: Sequence[bool] | Tensor | None = None,
    activation: str | Sequence[str] = UNKNOWN,
    y: Tensor | None = None,
    conv: dict[str, Tensor] | None = None,
) -> Batch:
    """Build a batch of ``B`` graphs of one architecture from dense tensors, vectorised.

    Args:
        weights: per weight layer ``[B, d_{l-1}, d_l, C]`` (wsgraph's layout).
        biases: per weight layer ``[B, d_l, C]``.
        has_bias: per layer (``[M]``) or per network and layer (``[B, M]``).
        activation: the hidden activation's name, stored on every graph (a list in a batch), or one name
            per network.
        y: optional per-network targets, ``[B, ...]``.
        conv: for CNNs, the per-network rows ``[B, ...]`` of :data:`CONV_KEYS`; the
            weights then carry ``H*W`` padded kernel entries and the biases one channel.
    """
    if not weights or len(weights) != len(biases):
        raise ValueError(f"got {len(weights)} weight and {len(biases)} bias tensors; expected one of each per layer")
    for layer, (weight, bias) in enumerate(zip(weights, biases), start=1):
        if weight.dim() != 4 or bias.dim() != 3:
            raise ValueError(
                f"layer {layer}: weights of shape {tuple(weight.shape)} and biases of shape {tuple(bias.shape)}; "
                "expected [B, d_in, d_out, C] and [B, d_out, C]"
            )
    if weights[0].size(0) == 0:
        raise ValueError("no networks to assemble: the weights hold B = 0 networks")
    bias_channels = None if conv is None else biases[0].size(-1)
    check_channels_match(weights, biases, bias_channels)
    batch_size, _, _, channels = weights[0].shape
    node_channels = channels if bias_channels is None else bias_channels
    spec = WeightSpaceSpec((weights[0].shape[1], *(w.shape[2] for w in weights)))
    device = weights[0].device
    num_nodes, num_edges = spec.num_nodes, spec.num_edges

    input_bias = weights[0].new_zeros(batch_size, spec.in_dim, node_channels)
    x = torch.cat([input_bias, *biases], dim=1).reshape(batch_size * num_nodes, node_channels)
    edge_attr = torch.cat([w.reshape(batch_size, -1, channels) for w in weights], dim=1)
    edge_attr = edge_attr.reshape(batch_size * num_edges, channels)

    template = spec.index_tensors(device)
    node_shift = torch.arange(batch_size, device=device) * num_nodes
    edge_index = (template["edge_index"].unsqueeze(1) + node_shift.view(1, -1, 1)).reshape(2, -1)

    if has_bias is None:
        has_bias = torch.ones(spec.num_weight_layers, dtype=torch.bool)
    has_bias = torch.as_tensor(has_bias, dtype=torch.bool, device=device)
    if has_bias.dim() == 1:
        has_bias = has_bias.expand(batch_size, -1)
    if tuple(has_bias.shape) != (batch_size, spec.num_weight_layers):
        raise ValueError(
            f"has_bias of shape {tuple(has_bias.shape)}: expected [{spec.num_weight_layers}] or "
            f"[{batch_size}, {spec.num_weight_layers}] for {batch_size} networks of {spec.num_weight_layers} layers"
        )
    activations = [activation] * batch_size if isinstance(activation, str) else list(activation)
    if len(activations) != batch_size:
        raise ValueError(f"got {len(activations)} activation names for {batch_size} networks")

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
    for key, rows in (conv or {}).items():
        if key not in CONV_KEYS or rows.size(0) != batch_size:
            raise ValueError(
                f"conv metadata {key!r} of shape {tuple(rows.shape)}: expected one of {CONV_KEYS}, [B, ...]"
            )
        batch[key] = rows.to(device)
        slices[key] = per_graph
    increments: dict[str, Any] = {key: None for key in slices}
    increments["edge_index"] = per_graph[:-1] * num_nodes
    batch.activation = activations
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
    _mark_canonical(batch)
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
    _mark_canonical(data)
    return data


def edge_positions(edge_index: Tensor, layer_widths: Tensor, num_nodes: int) -> Tensor | None:
    """The canonical position of every edge of a batch, or ``None`` when the edges are in canonical order.

    Nodes are taken in canonical order (network, layer, index), as ``x`` stores them;
    the edges may come in any order. ``positions[e]`` is where edge ``e`` sits in the
    canonical order of :mod:`wsgraph.core.spec`, so ``edge_attr[positions.argsort()]`` lists
    the weights canonically.

    Raises:
        ValueError: if the counts disagree with ``layer_widths``, or ``edge_index`` is not
            exactly the edges of the networks (an edge joining neurons that no weight
            joins, or a weight listed twice), naming the first such edge.
    """
    widths = layer_widths.to(device=edge_index.device, dtype=torch.long)
    num_graphs, columns = widths.shape
    edge_widths = widths[:, :-1] * widths[:, 1:]
    expected = (int(widths.sum()), int(edge_widths.sum()))
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(f"edge_index has shape {tuple(edge_index.shape)}, expected [2, E]")
    if expected != (num_nodes, edge_index.size(1)):
        raise ValueError(
            f"layer_widths describe {expected[0]} nodes and {expected[1]} edges, the graph has "
            f"{num_nodes} and {edge_index.size(1)}: not a wsgraph graph"
        )
    num_edges = expected[1]
    if num_edges == 0 or _is_canonical(edge_index, widths):
        return None
    low, high = torch.aminmax(edge_index)
    if int(low) < 0 or int(high) >= num_nodes:
        bad = int(((edge_index < 0) | (edge_index >= num_nodes)).any(0).nonzero()[0])
        raise ValueError(f"edge {bad} joins nodes {edge_index[:, bad].tolist()}, outside 0..{num_nodes - 1}")
    device = edge_index.device
    # Graph-major nodes come in (network, layer) groups. Group ids leave a gap after each
    # network's output layer, so "target group = source group + 1" means same network,
    # next layer.
    group_sizes = widths.reshape(-1)
    group_ids = torch.arange(num_graphs, device=device).unsqueeze(1) * (columns + 1) + torch.arange(
        columns, device=device
    )
    group_start = group_sizes.cumsum(0) - group_sizes
    network_edge_start = edge_widths.sum(1).cumsum(0) - edge_widths.sum(1)
    layer_edge_start = network_edge_start.unsqueeze(1) + edge_widths.cumsum(1) - edge_widths
    # The output layer starts no edges: its start and fan-out are never read for a valid edge.
    padding = widths.new_zeros(num_graphs, 1)
    group_edge_start = torch.cat([layer_edge_start, padding], dim=1).reshape(-1)
    group_fan_out = torch.cat([widths[:, 1:], padding], dim=1).reshape(-1)

    def per_node(values: Tensor) -> Tensor:
        return values.repeat_interleave(group_sizes, output_size=num_nodes)

    node_group = per_node(group_ids.reshape(-1))
    node_local = torch.arange(num_nodes, device=device) - per_node(group_start)
    # Canonical position of the first weight leaving each neuron: W_l[i, 0] of its network.
    node_first_edge = per_node(group_edge_start) + node_local * per_node(group_fan_out)

    source, target = edge_index
    joins_next_layer = node_group.index_select(0, target) == node_group.index_select(0, source) + 1
    if not bool(joins_next_layer.all()):
        bad = int((~joins_next_layer).nonzero()[0])
        ends = []
        for node in edge_index[:, bad].tolist():
            network, layer = divmod(int(node_group[node]), columns + 1)
            ends.append(f"node {node} (layer {layer} of network {network})")
        raise ValueError(f"edge {bad} joins {ends[0]} to {ends[1]}: no weight of the networks joins them")
    positions = node_first_edge.index_select(0, source) + node_local.index_select(0, target)
    if torch.equal(positions, torch.arange(num_edges, device=device)):
        return None
    counts = torch.bincount(positions, minlength=num_edges)
    if bool((counts != 1).any()):
        repeated = (counts[positions] > 1).nonzero().view(-1)[:2].tolist()
        raise ValueError(
            f"edges {repeated[0]} and {repeated[1]} both join node {int(source[repeated[0]])} to node "
            f"{int(target[repeated[0]])}: edge_index must list each weight once"
        )
    return positions


def _is_canonical(edge_index: Tensor, widths: Tensor) -> bool:
    """Whether a one-architecture batch lists its edges exactly in canonical order (mixed batches: ``False``)."""
    if not bool((widths == widths[:1]).all()):
        return False
    spec = WeightSpaceSpec(tuple(widths[0].tolist()))
    template = _edge_index_template(spec, edge_index.device)
    node_shift = torch.arange(widths.size(0), device=edge_index.device) * spec.num_nodes
    canonical = (template.unsqueeze(1) + node_shift.view(1, -1, 1)).reshape(2, -1)
    return torch.equal(edge_index, canonical)


def canonical_positions(data: Data) -> Tensor | None:
    """:func:`edge_positions` of a graph or batch, cached on it (and on shallow copies of it)."""
    edge_index, widths = data.edge_index, _layer_widths(data)
    if not isinstance(edge_index, Tensor):
        raise ValueError(f"{type(data).__name__} has no 'edge_index'; build graphs with wsgraph.mlp_to_graph")
    key = _positions_key(data)
    cached = data.__dict__.get(_POSITIONS_CACHE)
    if cached is not None and cached[0] == key:
        return cached[1]
    positions = edge_positions(edge_index, widths, data.num_nodes)
    data.__dict__[_POSITIONS_CACHE] = (key, positions)
    return positions


def inverse_permutation(permutation: Tensor) -> Tensor:
    """``inverse`` with ``inverse[permutation[i]] = i``."""
    inverse = torch.empty_like(permutation)
    inverse[permutation] = torch.arange(permutation.numel(), device=permutation.device)
    return inverse


def sort_edges(data: Data) -> Data:
    """A graph or batch with its edges in the canonical order of :mod:`wsgraph.core.spec`.

    PyG transforms and hand-made graphs may list the edges in any order; functions that
    read the weights as dense views (:func:`wsgraph.to_dense_weights`) need them in
    canonical order. Returns ``data`` itself when its edges already are, else a shallow
    copy with ``edge_index`` and every per-edge attribute reordered.

    Raises:
        ValueError: if ``edge_index`` is not exactly the edges of the networks that
            ``layer_widths`` describe (see :func:`edge_positions`).
    """
    positions = canonical_positions(data)
    if positions is None:
        return data
    order = inverse_permutation(positions)
    out = copy.copy(data)
    for key in _edge_keys(data):
        value = data[key]
        if isinstance(value, Tensor):
            out[key] = value.index_select(data.__cat_dim__(key, value), order)
        else:
            out[key] = [value[position] for position in order.tolist()]
    _mark_canonical(out)
    return out


def _positions_key(data: Data) -> tuple:
    # Identity and in-place version of the tensors the positions are computed from: a
    # replaced or modified `edge_index`/`layer_widths` invalidates the cache.
    edge_index, widths = data.edge_index, data.layer_widths
    return (id(edge_index), edge_index._version, id(widths), widths._version, data.num_nodes)


def _mark_canonical(data: Data) -> None:
    """Record that ``data``'s edges are in canonical order (it was built so), sparing the check."""
    data.__dict__[_POSITIONS_CACHE] = (_positions_key(data), None)


def _edge_keys(data: Data) -> list[str]:
    """``edge_index`` and the attributes with one entry per edge."""
    # With one edge per network, per-network rows also have one entry per edge: only
    # attributes named after edges are taken for per-edge ones then.
    ambiguous = data.num_edges == _layer_widths(data).size(0)
    return [
        key
        for key, _ in data
        if key == "edge_index"
        or (key not in PER_GRAPH_KEYS and data.is_edge_attr(key) and not (ambiguous and "edge" not in key))
    ]


@functools.lru_cache(maxsize=64)
def _edge_index_template(spec: WeightSpaceSpec, device: torch.device) -> Tensor:
    """The canonical ``edge_index`` of one network (read-only), kept for the next batches."""
    return spec.index_tensors(device)["edge_index"]


def carried_biases(has_bias: Tensor, biases: list[Tensor]) -> Tensor:
    """``[B, L]``: which layers' biases a graph's networks carry: those the networks had, and those where
    the graph holds values written since (by an input translation, weight noise or an editing model), so
    that reading a graph back does not drop them. Written means beyond the square root of the dtype's
    machine epsilon (3.5e-4 in float32) from zero: normalising a graph and undoing it leaves round-off
    of about 1e-8 in a missing bias, which must not give the network one."""
    written = [
        bias.reshape(bias.size(0), -1).abs().gt(torch.finfo(bias.dtype).eps ** 0.5).any(dim=1) for bias in biases
    ]
    stacked = torch.stack(written, dim=1)
    return has_bias.view(stacked.shape).to(stacked.device) | stacked
