"""Message-passing GNN baselines from :mod:`torch_geometric.nn` on weight-space graphs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import GATv2Conv, GINEConv, PNAConv, TransformerConv
from torch_geometric.nn.pool import global_add_pool, global_max_pool, global_mean_pool

from wsgraph.checks import is_size
from wsgraph.core.graph import graph_specs
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets.transforms import LayerStatistics
from wsgraph.deprecation import renamed_kwargs
from wsgraph.errors import short_repr
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS
from wsgraph.layers.positional import EdgePositionalEncoding, NeuronPositionalEncoding, check_signature
from wsgraph.layers.probe import ProbeFeatures

ConvName = Literal["gine", "pna", "gatv2", "transformer"]
Readout = Literal["mean", "sum", "max"]

CONVS: tuple[str, ...] = get_args(ConvName)
READOUTS: tuple[str, ...] = get_args(Readout)
PNA_AGGREGATORS = ["mean", "min", "max", "std"]
PNA_SCALERS = ["identity", "amplification", "attenuation"]
# Attention heads of the attention convolutions (gatv2, transformer); the others have none.
ATTENTION_HEADS = 4
_POOLS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


def pna_degree_histogram(
    architectures: Iterable[WeightSpaceSpec | Sequence[int]] | Data, both_directions: bool = True
) -> Tensor:
    r"""The in-degree histogram :class:`~torch_geometric.nn.conv.PNAConv` needs, computed from layer widths.

    :class:`WeightSpaceGNN` passes messages along every weight in both directions, so
    a neuron of layer :math:`k` receives :math:`d_{k-1} + d_{k+1}` messages (a missing
    neighbour layer counts 0); along the weights only, :math:`d_{k-1}`. The histogram
    depends on the architectures only, never on the weights: list one architecture per
    training network to weight them as the data does (PNA uses the mean degree and mean
    log-degree).

    Args:
        architectures: layer widths ``(d_0, ..., d_M)`` or :class:`WeightSpaceSpec`\ s,
            e.g. ``wsgraph.graph_specs(batch)``, or a graph or batch itself (its networks'
            architectures).
        both_directions: count the messages against the weights too. (The released
            Neural Graphs code counts only those along them, though its graphs have both;
            :class:`~wsgraph.layers.NeuralGraphGNN` follows it with ``False``.)

    Returns:
        A ``long`` tensor whose entry ``n`` counts the neurons with ``n`` incoming messages.
    """
    if isinstance(architectures, Data):
        architectures = graph_specs(architectures)
    counts: dict[int, int] = {}
    for architecture in architectures:
        if not isinstance(architecture, (WeightSpaceSpec, Sequence, Tensor)) or isinstance(architecture, str):
            raise TypeError(
                "pna_degree_histogram takes layer widths or WeightSpaceSpecs (e.g. wsgraph.graph_specs(batch)) or a "
                f"graph, got an item {short_repr(architecture)}"
            )
        spec = architecture if isinstance(architecture, WeightSpaceSpec) else WeightSpaceSpec(tuple(architecture))
        # padded[k + 1] is d_k; the zeros stand for the missing neighbours of the input and output layers.
        padded = (0, *spec.widths, 0)
        for layer, width in enumerate(spec.widths):
            degree = padded[layer] + (padded[layer + 2] if both_directions else 0)
            counts[degree] = counts.get(degree, 0) + width
    if not counts:
        raise ValueError("pna_degree_histogram needs at least one architecture")
    histogram = torch.zeros(max(counts) + 1, dtype=torch.long)
    for degree, count in counts.items():
        histogram[degree] = count
    return histogram


class EdgeUpdate(nn.Module):
    r"""Updates weight (edge) features from themselves and their two endpoint neurons.

    The edge model of `"Graph Neural Networks for Learning Equivariant Representations
    of Neural Networks" <https://arxiv.org/abs/2403.12143>`_ (Kofinas et al., 2024),
    with a residual connection:

    .. math::
        \mathbf{e}'_{ij} = \mathbf{e}_{ij} + \sigma\left(\operatorname{LN}\left(
        \mathbf{\Theta}_e \mathbf{e}_{ij} + \mathbf{\Theta}_s \mathbf{x}_i
        + \mathbf{\Theta}_t \mathbf{x}_j\right)\right)

    for the edge from neuron :math:`i` to neuron :math:`j`. It is equivariant to any
    relabelling of nodes that moves edges along with their endpoints.

    Args:
        channels (int): the size of node and edge features.
        dropout (float, optional): dropout probability on the update. (default: ``0.0``)

    Shapes:
        - **input:** node features :math:`(N, F)`, edge indices :math:`(2, E)`, edge
          features :math:`(E, F)`
        - **output:** edge features :math:`(E, F)`
    """

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.channels = channels
        self.lin_edge = nn.Linear(channels, channels)
        self.lin_source = nn.Linear(channels, channels, bias=False)
        self.lin_target = nn.Linear(channels, channels, bias=False)
        self.norm = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.lin_edge, self.lin_source, self.lin_target, self.norm):
            module.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        source, target = edge_index
        update = self.lin_edge(edge_attr) + self.lin_source(x)[source] + self.lin_target(x)[target]
        return edge_attr + self.dropout(torch.relu(self.norm(update)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


@renamed_kwargs(num_layers="num_weight_layers", num_rounds="depth")
class WeightSpaceGNN(nn.Module):
    r"""A message-passing GNN from :mod:`torch_geometric.nn` on the graphs of MLPs.

    The baseline of the "neural graphs" line of work (`Kofinas et al., 2024
    <https://arxiv.org/abs/2403.12143>`_; `Lim et al., 2024
    <https://arxiv.org/abs/2312.04501>`_) with a choice of PyG convolution that reads
    edge features: :class:`~torch_geometric.nn.conv.GINEConv` (``"gine"``),
    :class:`~torch_geometric.nn.conv.PNAConv` (``"pna"``),
    :class:`~torch_geometric.nn.conv.GATv2Conv` (``"gatv2"``) or
    :class:`~torch_geometric.nn.conv.TransformerConv` (``"transformer"``).

    Neurons start from their bias and a positional embedding
    (:class:`~wsgraph.layers.positional.NeuronPositionalEncoding`), weights from their
    value and a per-layer embedding
    (:class:`~wsgraph.layers.positional.EdgePositionalEncoding`). Each of :math:`T`
    rounds passes messages along every weight in both directions (forward and reversed
    edges, told apart by a learned direction embedding added to the edge features),
    then updates the edges (:class:`EdgeUpdate`):

    .. math::
        \mathbf{x}_v^{(0)} = \mathbf{\Theta}_x b_v + \mathbf{p}_v, \quad
        \mathbf{e}_{uv}^{(0)} = \mathbf{\Theta}_e w_{uv} + \mathbf{q}_{l(uv)}

        \mathbf{x}^{(t)} = \mathbf{x}^{(t-1)} + \sigma\left(\operatorname{LN}\left(
        \operatorname{conv}_t\left(\mathbf{x}^{(t-1)}, \mathcal{E} \cup \mathcal{E}^{\top},
        [\mathbf{e}^{(t-1)} + \mathbf{r}_{\rightarrow}; \mathbf{e}^{(t-1)} + \mathbf{r}_{\leftarrow}]
        \right)\right)\right), \quad
        \mathbf{e}^{(t)} = \operatorname{EdgeUpdate}_t(\mathbf{x}^{(t)}, \mathbf{e}^{(t-1)})

        \mathbf{y} = \operatorname{MLP}\left(\left[\operatorname{pool}_v \mathbf{x}_v^{(T)};
        \operatorname{pool}_{uv} \mathbf{e}_{uv}^{(T)}\right]\right)

    **Symmetry.** The model is invariant to permutations of hidden neurons (and its node
    and edge states are equivariant): a hidden-neuron permutation maps the graph to an
    isomorphic one whose node labels (layer, shared hidden embedding) and edge labels
    (weight layer) are unchanged, and every convolution above aggregates messages
    with permutation-invariant reductions (sum, mean, min, max, std, and attention
    softmax-weighted sums), so node states are permuted along and the pooled readout is
    unchanged. Input and output neurons keep their identity on purpose: permuting them
    is not a symmetry of an MLP, and the model is sensitive to it. It is not invariant
    to the scaling and sign symmetries of ReLU or sine networks.

    The model takes the networks' signature :math:`(M, d_0, d_M)`; hidden widths may
    differ within a batch.

    Args:
        conv (str): the convolution, one of ``"gine"``, ``"pna"``, ``"gatv2"``,
            ``"transformer"``.
        num_weight_layers (int): the number of weight layers :math:`M` of the networks.
        in_dim (int): the input width :math:`d_0`.
        out_dim (int): the output width :math:`d_M`.
        out_features (int): the size of each output.
        in_channels (int, optional): the channels ``C`` of the graphs' ``x`` and
            ``edge_attr``. (default: ``1``)
        hidden_channels (int, optional): the size of node and edge states.
            (default: ``64``)
        depth (int, optional): the number :math:`T` of message-passing rounds.
            (default: ``4``)
        readout (str, optional): the pooling of node (and edge) states, ``"mean"``,
            ``"sum"`` or ``"max"``. (default: ``"mean"``)
        edge_readout (bool, optional): concatenate pooled edge states to pooled node
            states. (default: ``True``)
        dropout (float, optional): dropout probability on node and edge updates and in
            the head. (default: ``0.0``)
        heads (int, optional): attention heads of ``"gatv2"`` and ``"transformer"``;
            must divide ``hidden_channels``; the other convs have none and refuse
            another value. (default: ``4``)
        pna_degree (Tensor, optional): for ``"pna"`` only and required there: the
            in-degree histogram of the training graphs, from
            :func:`pna_degree_histogram` (it depends on the layer widths only).
            (default: ``None``)
        probe_features (int, optional): learned input points at which the networks
            are run; every neuron's values there are added to its initial state
            (:class:`~wsgraph.layers.probe.ProbeFeatures`). ``0`` for none; needs
            ``in_channels=1``. (default: ``0``)
        probe_statistics (LayerStatistics, optional): the normalisation the inputs
            carry, which the probe features undo to run the networks. (default:
            :obj:`None`, raw weights)

    Shapes:
        - **input:** a batch of :math:`B` :class:`~wsgraph.core.graph.WeightSpaceGraph`\ s
          with signature :math:`(M, d_0, d_M)`
        - **output:** :math:`(B, \text{out\_features})`
    """

    def __init__(
        self,
        conv: ConvName,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        out_features: int,
        in_channels: int = 1,
        hidden_channels: int = HIDDEN_CHANNELS["gnn"],
        depth: int = DEPTH["gnn"],
        readout: Readout = "mean",
        edge_readout: bool = True,
        dropout: float = 0.0,
        heads: int = ATTENTION_HEADS,
        pna_degree: Tensor | None = None,
        probe_features: int = 0,
        probe_statistics: LayerStatistics | None = None,
    ) -> None:
        super().__init__()
        _check_arguments(conv, readout, out_features, in_channels, hidden_channels, depth, dropout, heads)
        if not is_size(probe_features) or (probe_features and in_channels != 1):
            raise ValueError(
                f"probe_features must be an integer >= 0 and needs in_channels=1, got {probe_features!r} and {in_channels}"
            )
        if conv == "pna":
            if pna_degree is None:
                raise ValueError(
                    "conv='pna' needs pna_degree: pass pna_degree_histogram(<architectures of the training set>)"
                )
            check_degree_histogram("pna_degree", pna_degree)
        self.conv = conv
        self.num_weight_layers = num_weight_layers
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.out_features = out_features
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.depth = depth
        self.readout = readout
        self.edge_readout = edge_readout
        self.dropout = dropout
        self.heads = heads
        self.probe_features = probe_features

        self.node_encoder = nn.Linear(in_channels, hidden_channels)
        self.edge_encoder = nn.Linear(in_channels, hidden_channels)
        self.node_position = NeuronPositionalEncoding(num_weight_layers, in_dim, out_dim, hidden_channels)
        self.edge_position = EdgePositionalEncoding(num_weight_layers, hidden_channels)
        self.probe = (
            ProbeFeatures(num_weight_layers, in_dim, probe_features, hidden_channels, probe_statistics)
            if probe_features
            else None
        )
        # Row 0 marks messages along a weight (layer l-1 -> l), row 1 the reversed ones.
        self.direction = nn.Embedding(2, hidden_channels)
        self.convs = nn.ModuleList(_make_conv(conv, hidden_channels, heads, pna_degree) for _ in range(depth))
        self.node_norms = nn.ModuleList(nn.LayerNorm(hidden_channels) for _ in range(depth))
        # The last round's edge update only matters when edges are read out.
        num_edge_updates = depth if edge_readout else depth - 1
        self.edge_updates = nn.ModuleList(EdgeUpdate(hidden_channels, dropout) for _ in range(num_edge_updates))
        pooled_channels = hidden_channels * (2 if edge_readout else 1)
        self.head = nn.Sequential(
            nn.Linear(pooled_channels, hidden_channels),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_channels, out_features),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.node_encoder, self.edge_encoder, self.node_position, self.edge_position, self.direction):
            module.reset_parameters()
        for module in (*self.convs, *self.node_norms, *self.edge_updates):
            module.reset_parameters()
        if self.probe is not None:
            self.probe.reset_parameters()
        for module in self.head:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        check_signature(data, self.num_weight_layers, self.in_dim, self.out_dim, type(self).__name__)
        check_channels(data, self.in_channels, type(self).__name__, dtype=next(self.parameters()).dtype)
        num_graphs = data.layer_widths.size(0)
        edge_index = data.edge_index
        # A single graph (not a Batch) has no `batch` vector: all its nodes belong to graph 0.
        node_graph = data.batch if data.batch is not None else edge_index.new_zeros(data.num_nodes)
        both_ways = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        forward_flag, backward_flag = self.direction.weight

        x = self.node_encoder(data.x) + self.node_position(data)
        if self.probe is not None:
            x = x + self.probe(data)
        edge_attr = self.edge_encoder(data.edge_attr) + self.edge_position(data)
        for round_index, (conv, norm) in enumerate(zip(self.convs, self.node_norms)):
            messages = torch.cat([edge_attr + forward_flag, edge_attr + backward_flag], dim=0)
            update = norm(conv(x, both_ways, messages))
            x = x + nn.functional.dropout(torch.relu(update), self.dropout, self.training)
            if round_index < len(self.edge_updates):
                edge_attr = self.edge_updates[round_index](x, edge_index, edge_attr)

        pool = _POOLS[self.readout]
        pooled = pool(x, node_graph, size=num_graphs)
        if self.edge_readout:
            edge_graph = node_graph[edge_index[0]]
            pooled = torch.cat([pooled, pool(edge_attr, edge_graph, size=num_graphs)], dim=-1)
        return self.head(pooled)

    def extra_repr(self) -> str:
        return (
            f"conv={self.conv!r}, signature=({self.num_weight_layers}, {self.in_dim}, {self.out_dim}), "
            f"out_features={self.out_features}, in_channels={self.in_channels}, "
            f"hidden_channels={self.hidden_channels}, depth={self.depth}, readout={self.readout!r}, "
            f"edge_readout={self.edge_readout}, dropout={self.dropout}, heads={self.heads}, "
            f"probe_features={self.probe_features}"
        )


def _check_arguments(
    conv: str,
    readout: str,
    out_features: int,
    in_channels: int,
    hidden_channels: int,
    depth: int,
    dropout: float,
    heads: int,
) -> None:
    if conv not in CONVS:
        raise ValueError(f"unknown conv {conv!r}: expected one of {', '.join(CONVS)}")
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}: expected one of {', '.join(READOUTS)}")
    if min(out_features, in_channels, hidden_channels, depth, heads) < 1:
        raise ValueError(
            "out_features, in_channels, hidden_channels, depth and heads must be positive, got "
            f"{out_features}, {in_channels}, {hidden_channels}, {depth}, {heads}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if conv not in ("gatv2", "transformer") and heads != ATTENTION_HEADS:
        raise ValueError(f"heads={heads} applies to conv 'gatv2' and 'transformer', not to conv={conv!r}")
    if conv in ("gatv2", "transformer") and hidden_channels % heads:
        raise ValueError(f"heads={heads} must divide hidden_channels={hidden_channels} for conv={conv!r}")


def check_degree_histogram(name: str, histogram: object) -> None:
    """Raise a :class:`ValueError` naming ``name`` unless ``histogram`` is a 1-D tensor of finite,
    non-negative counts per in-degree with some neuron of positive in-degree: PNA's scalers divide by
    the mean degree and mean log-degree it gives, which are otherwise 0 or undefined."""
    if (
        not isinstance(histogram, Tensor)
        or histogram.dim() != 1
        or histogram.dtype == torch.bool
        or histogram.is_complex()
    ):
        raise ValueError(
            f"{name} must be a 1-D tensor of counts per in-degree (from pna_degree_histogram), got "
            f"{short_repr(histogram)}"
        )
    counts = histogram.detach().to("cpu", torch.float64)  # checked on the CPU: MPS has no float64
    if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise ValueError(f"{name} must hold finite counts >= 0, got {short_repr(histogram)}")
    if not counts[1:].sum() > 0:
        raise ValueError(
            f"{name} counts no neuron with incoming messages (in-degree >= 1), got {short_repr(histogram)}"
        )


def check_channels(
    data: Data, in_channels: int, model: str, edge_channels: int | None = None, dtype: torch.dtype | None = None
) -> None:
    """Raise a :class:`ValueError` naming ``model`` unless ``x`` has ``in_channels`` columns and
    ``edge_attr`` ``edge_channels`` (by default ``in_channels`` too), and, given ``dtype`` (the model's
    parameters') and outside autocast, both are of that dtype."""
    expected = {"x": in_channels, "edge_attr": in_channels if edge_channels is None else edge_channels}
    for key, channels in expected.items():
        value = getattr(data, key, None)
        if not isinstance(value, Tensor) or value.dim() != 2 or value.size(1) != channels:
            shape = tuple(value.shape) if isinstance(value, Tensor) else None
            raise ValueError(f"{model} expects '{key}' of shape [*, {channels}], got {shape}")
        # Otherwise the first product fails deep inside, with a message about its operands.
        if dtype is not None and value.dtype != dtype and not torch.is_autocast_enabled(value.device.type):
            raise ValueError(
                f"{model} expects '{key}' of dtype {dtype} (its parameters'), got {value.dtype}: convert the batch "
                f"or the model with .to({dtype})"
            )


def _make_conv(conv: str, channels: int, heads: int, pna_degree: Tensor | None) -> nn.Module:
    if conv == "gine":
        mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels))
        return GINEConv(mlp, train_eps=True)
    if conv == "pna":
        return PNAConv(channels, channels, PNA_AGGREGATORS, PNA_SCALERS, deg=pna_degree, edge_dim=channels)
    if conv == "gatv2":
        # Self-loops would add nothing: the residual connection already keeps each node's state.
        return GATv2Conv(channels, channels // heads, heads=heads, edge_dim=channels, add_self_loops=False)
    return TransformerConv(channels, channels // heads, heads=heads, edge_dim=channels)
