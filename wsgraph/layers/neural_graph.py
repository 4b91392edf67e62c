"""The Neural Graphs GNN (Kofinas et al., ICLR 2024): PNA with edge-modulated messages on the graphs of MLPs."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from functools import partial
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import DegreeScalerAggregation
from torch_geometric.nn.norm import LayerNorm as GraphLayerNorm
from torch_geometric.nn.pool import global_add_pool, global_max_pool, global_mean_pool
from torch_geometric.nn.resolver import activation_resolver

from wsgraph.checks import is_size
from wsgraph.core.graph import sort_edges
from wsgraph.datasets.transforms import LayerStatistics
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS
from wsgraph.layers.gnn_baselines import check_channels, check_degree_histogram
from wsgraph.layers.neural_graph_dense import (
    DenseNetworks,
    NeighbourhoodStatistics,
    modulate,
    neighbourhood_statistics,
    pairwise_extreme,
)
from wsgraph.layers.neural_graph_fused import fused_fourier_linear, fused_messages, fused_update_messages
from wsgraph.layers.positional import NeuronPositionalEncoding, check_signature
from wsgraph.layers.probe import ProbeFeatures

Backend = Literal["fused", "dense", "scatter"]
Norm = Literal["graph", "node", "minibatch"]
Pooling = Literal["cat", "mean", "sum", "max"]
PoolingLayer = Literal["last", "all"]

BACKENDS: tuple[str, ...] = get_args(Backend)
NORMS: tuple[str, ...] = get_args(Norm)
# PNA's aggregators that the dense and fused backends compute (the scatter backend runs any of PyG's), and
# the degree scalers of PyG's DegreeScalerAggregation.
DENSE_AGGREGATORS = ("sum", "mean", "min", "max", "var", "std")
SCALERS = ("identity", "amplification", "attenuation", "linear", "inverse_linear")
POOLINGS: tuple[str, ...] = get_args(Pooling)
POOLING_LAYERS: tuple[str, ...] = get_args(PoolingLayer)
_POOLS = {"mean": global_mean_pool, "sum": global_add_pool, "max": global_max_pool}


class FourierFeatures(nn.Module):
    r"""Random Fourier features of each input vector (Tancik et al., 2020):

    .. math::
        \gamma(\mathbf{v}) = \left[\cos(2\pi \mathbf{B}\mathbf{v}); \sin(2\pi \mathbf{B}\mathbf{v})\right],
        \qquad \mathbf{B} \in \mathbb{R}^{K \times F},\ B_{kf} \sim \mathcal{N}(0, \sigma^2)

    :math:`\mathbf{B}` is drawn once and never trained (a buffer, saved with the model).
    A scalar weight becomes a vector of :math:`2K` smooth features at many frequencies,
    which a linear layer can read far more easily than the raw number.

    Args:
        in_features (int): the size :math:`F` of each input.
        num_frequencies (int): :math:`K`; the output has :math:`2K` features.
        sigma (float): the standard deviation :math:`\sigma` of the frequencies.

    Shapes:
        - **input:** :math:`(*, F)`
        - **output:** :math:`(*, 2K)`
    """

    def __init__(self, in_features: int, num_frequencies: int, sigma: float) -> None:
        super().__init__()
        if min(in_features, num_frequencies) < 1 or not sigma > 0:
            raise ValueError(
                f"in_features and num_frequencies must be positive and sigma > 0, got {in_features}, "
                f"{num_frequencies}, {sigma}"
            )
        self.in_features = in_features
        self.num_frequencies = num_frequencies
        self.sigma = float(sigma)
        self.register_buffer("frequencies", torch.empty(num_frequencies, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.frequencies.normal_(0.0, self.sigma)

    def forward(self, v: Tensor) -> Tensor:
        angles = self.angles(v)
        return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)

    def angles(self, v: Tensor) -> Tensor:
        r""":math:`2\pi \mathbf{B}\mathbf{v}`, ``(*, K)``."""
        return v @ ((2 * math.pi) * self.frequencies).t()

    def extra_repr(self) -> str:
        return f"{self.in_features}, num_frequencies={self.num_frequencies}, sigma={self.sigma}"


class NeuralGraphConv(MessagePassing):
    r"""PNA convolution whose messages are modulated by the edge state (FiLM), as the
    Neural Graphs code builds it on PyG's :class:`~torch_geometric.nn.aggr.DegreeScalerAggregation`:

    .. math::
        [\boldsymbol{\gamma}_{ij}; \boldsymbol{\beta}_{ij}] = \mathbf{\Theta}_e \mathbf{e}_{ij}, \qquad
        \mathbf{m}_{ij} = \boldsymbol{\gamma}_{ij} \odot \mathbf{\Theta}_m [\mathbf{x}_j; \mathbf{x}_i]
        + \boldsymbol{\beta}_{ij}

        \mathbf{x}'_j = \mathbf{\Theta}_o \mathbf{\Theta}_p \left[\mathbf{x}_j;
        \bigoplus_{i \to j} \mathbf{m}_{ij}\right]

    for messages from neuron :math:`i` to neuron :math:`j`, with :math:`\bigoplus` the
    aggregators (mean, min, max, std) times the degree scalers (identity,
    amplification) of PNA. With ``gating=True`` the scale is
    :math:`\sigma(\boldsymbol{\gamma})` and there is no shift; with ``modulate=False``
    the encoded edge state is a third input of :math:`\mathbf{\Theta}_m` instead.

    :math:`\mathbf{\Theta}_m` is linear, so it is applied to the :math:`N` node states
    and the results gathered, instead of to the :math:`E` concatenated pairs (the same
    numbers, with a fraction of the work).

    Args:
        channels (int): node state size :math:`F`.
        edge_channels (int): edge state size.
        aggregators (sequence of str): PNA aggregators.
        scalers (sequence of str): PNA degree scalers.
        degree_histogram (Tensor): in-degree histogram that normalises the scalers.
        modulate (bool): FiLM modulation of messages by the edge state. (default: ``True``)
        gating (bool): sigmoid gate instead of scale and shift. (default: ``False``)
    """

    def __init__(
        self,
        channels: int,
        edge_channels: int,
        aggregators: Sequence[str],
        scalers: Sequence[str],
        degree_histogram: Tensor,
        modulate: bool = True,
        gating: bool = False,
    ) -> None:
        _check_names("aggregators", aggregators)
        _check_names("scalers", scalers, SCALERS)
        check_degree_histogram("degree_histogram", degree_histogram)
        try:
            aggregation = DegreeScalerAggregation(list(aggregators), list(scalers), degree_histogram)
        except ValueError as error:  # PyG's "Could not resolve 'x'" names no argument
            raise ValueError(f"aggregators {list(aggregators)}: {error}") from error
        super().__init__(aggr=aggregation, node_dim=0)
        self.channels = channels
        self.edge_channels = edge_channels
        self.aggregators = list(aggregators)
        self.scalers = list(scalers)
        self.modulate = modulate
        self.gating = gating
        self.edge_encoder = nn.Linear(edge_channels, 2 * channels if modulate else channels)
        self.pre = nn.Linear((2 if modulate else 3) * channels, channels)
        self.post = nn.Linear((len(aggregators) * len(scalers) + 1) * channels, channels)
        self.lin = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for module in (self.edge_encoder, self.pre, self.post, self.lin):
            module.reset_parameters()

    def endpoint_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``pre``'s maps of the node states ``x`` as a message's target and as its source.

        ``pre`` acts on ``[x_target; x_source(; edge)]``, so a message's pre-activation is the
        sum of the two per-node products (and the edge's part): they are computed once per
        node, not once per edge.
        """
        blocks = self.pre.weight.split(self.channels, dim=1)
        return nn.functional.linear(x, blocks[0], self.pre.bias), nn.functional.linear(x, blocks[1])

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        target_part, source_part = self.endpoint_parts(x)
        aggregated = self.propagate(
            edge_index, target_part=target_part, source_part=source_part, edge_attr=edge_attr, size=None
        )
        return self.lin(self.post(torch.cat([x, aggregated], dim=-1)))

    def message(self, target_part_i: Tensor, source_part_j: Tensor, edge_attr: Tensor) -> Tensor:
        return self._modulate(edge_attr, target_part_i + source_part_j)

    def _modulate(self, edge_attr: Tensor, hidden: Tensor) -> Tensor:
        weight, bias = self.edge_encoder.weight, self.edge_encoder.bias
        if not self.modulate:
            encoded = nn.functional.linear(edge_attr, weight, bias)
            return hidden + nn.functional.linear(encoded, self.pre.weight[:, 2 * self.channels :])
        # The encoder's two halves as two products: contiguous scale and shift, and no concatenated gradient.
        scale = nn.functional.linear(edge_attr, weight[: self.channels], bias[: self.channels])
        if self.gating:
            return torch.sigmoid(scale) * hidden
        shift = nn.functional.linear(edge_attr, weight[self.channels :], bias[self.channels :])
        return modulate(shift, scale, hidden)

    def forward_dense(self, x: Tensor, edges: list[list[Tensor]], layout: DenseNetworks) -> Tensor:
        """The same convolution on networks of one architecture: ``x`` ``[B, N_g, F]``, ``edges[l - 1][d]``
        ``[B, d_{l-1}, d_l, F_e]`` per weight layer and direction (see :class:`DenseNetworks`); returns
        ``[B, N_g, F]``."""
        target_part, source_part = (layout.split(part) for part in self.endpoint_parts(x))
        moments, extremes = self.aggregator_needs
        incoming: list[list[NeighbourhoodStatistics]] = [[] for _ in layout.widths]
        for layer, states in enumerate(edges, start=1):
            for direction, state in enumerate(states):
                hidden = layout.endpoints(source_part, target_part, layer, direction)
                messages = self._modulate(state, hidden)
                receiver, axis = layout.receivers(layer, direction)
                incoming[receiver].append(neighbourhood_statistics(messages, axis, moments, extremes))
        return self.update_dense(x, incoming, layout)

    def update_dense(
        self,
        x: Tensor,
        incoming: list[list[NeighbourhoodStatistics]],
        layout: DenseNetworks,
        only_layer: int | None = None,
    ) -> Tensor:
        """The new node states ``[B, N_g, F]`` from ``x`` and, per node layer, the statistics of its incoming
        messages; with ``only_layer``, those of that node layer alone, ``[B, d_k, F]`` (each neuron's new state
        depends on its own state and messages only).

        The neurons of a layer share their in-degree, so each degree scaler is one number per layer, and
        ``post`` of the scaled copies of the aggregates is ``post``'s blocks, scaled and summed, of the
        aggregates once: per layer, one product with a third of the columns and no concatenation.
        """
        channels = self.channels
        node_weight, aggregate_weight = self.post.weight.split([channels, self.post.in_features - channels], dim=1)
        scaler_blocks = aggregate_weight.split(len(self.aggregators) * channels, dim=1)
        if only_layer is None:
            updated = nn.functional.linear(x, node_weight, self.post.bias)
            groups = list(zip(incoming, layout.split(updated)))
        else:
            groups = [
                (incoming[only_layer], nn.functional.linear(layout.nodes(x, only_layer), node_weight, self.post.bias))
            ]
        layers = []
        for parts, nodes in groups:
            degree = sum(part.count for part in parts)
            if degree:
                folded = _combine(
                    torch.add, [block * self._scale(name, degree) for name, block in zip(self.scalers, scaler_blocks)]
                )
                nodes = nodes + nn.functional.linear(self._aggregate_dense(parts, degree), folded)
            layers.append(nodes)
        return self.lin(torch.cat(layers, dim=1) if len(layers) > 1 else layers[0])

    @property
    def aggregator_needs(self) -> tuple[bool, bool]:
        """Whether the aggregators need the messages' sums and sums of squares, and their extremes."""
        needs = set(self.aggregators)
        return bool(needs & {"sum", "mean", "var", "std"}), bool(needs & {"min", "max"})

    def _aggregate_dense(self, parts: list[NeighbourhoodStatistics], degree: int) -> Tensor:
        """PNA's aggregators, concatenated, ``[B, d_k, A * F]``, for the neurons of one layer from the statistics
        of the ``degree`` messages each receives, as ``DegreeScalerAggregation`` computes them by scatter."""
        outs = []
        for name in self.aggregators:
            if name == "sum":
                outs.append(_combine(torch.add, [part.total for part in parts]))
            elif name == "mean":
                outs.append(_combine(torch.add, [part.total for part in parts]) / degree)
            elif name == "min":
                outs.append(_combine(partial(pairwise_extreme, largest=False), [part.minimum for part in parts]))
            elif name == "max":
                outs.append(_combine(partial(pairwise_extreme, largest=True), [part.maximum for part in parts]))
            else:
                mean = _combine(torch.add, [part.total for part in parts]) / degree
                variance = _combine(torch.add, [part.squares for part in parts]) / degree - mean * mean
                if name == "var":
                    outs.append(variance)
                else:
                    # StdAggregation's guard: no gradient through sqrt near 0. Its mask as floats, a product: a
                    # boolean mask and masked_fill take several times as long on CPU.
                    std = variance.clamp(min=1e-5).sqrt()
                    outs.append(std * torch.gt(std.detach(), math.sqrt(1e-5), out=torch.empty_like(std)))
        return torch.cat(outs, dim=-1)

    def _scale(self, scaler: str, degree: int) -> Tensor | float:
        """DegreeScalerAggregation's factor for neurons of in-degree ``degree``."""
        aggr = self.aggr_module
        if scaler == "identity":
            return 1.0
        if scaler == "amplification":
            return math.log(degree + 1) / aggr.avg_deg_log
        if scaler == "attenuation":
            return aggr.avg_deg_log / math.log(max(degree, 1) + 1)
        if scaler == "linear":
            return degree / aggr.avg_deg_lin
        if scaler == "inverse_linear":
            return aggr.avg_deg_lin / max(degree, 1)
        raise ValueError(f"unknown scaler {scaler!r}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.channels}, edge_channels={self.edge_channels}, modulate={self.modulate}, "
            f"gating={self.gating})"
        )


class NeuralGraphEdgeUpdate(nn.Module):
    r"""The edge model of the Neural Graphs code: each edge state from itself and its two endpoints,

    .. math::
        \mathbf{e}'_{ij} = \mathbf{\Theta}_o\, \phi\left(\mathbf{\Theta}_e \mathbf{e}_{ij}
        + \mathbf{\Theta}_s \mathbf{x}_i + \mathbf{\Theta}_t \mathbf{x}_j\right)

    (no residual connection, no normalisation). Equivariant to any relabelling of nodes
    that moves edges along with their endpoints.

    Args:
        node_channels (int): node state size.
        edge_channels (int): edge state size.
        act (str): the activation :math:`\phi`, resolved by PyG. (default: ``"silu"``)
    """

    def __init__(self, node_channels: int, edge_channels: int, act: str = "silu") -> None:
        super().__init__()
        self.lin_edge = nn.Linear(edge_channels, edge_channels)
        self.lin_source = nn.Linear(node_channels, edge_channels)
        self.lin_target = nn.Linear(node_channels, edge_channels)
        self.lin_out = nn.Linear(edge_channels, edge_channels)
        self.act = activation_resolver(act)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.lin_edge, self.lin_source, self.lin_target, self.lin_out):
            module.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        source, target = edge_index
        update = self.lin_edge(edge_attr) + self.lin_source(x)[source] + self.lin_target(x)[target]
        return self.lin_out(self.act(update))

    def forward_dense(self, x: Tensor, edges: list[list[Tensor]], layout: DenseNetworks) -> list[list[Tensor]]:
        """The same update on networks of one architecture: ``x`` ``[B, N_g, F]``, ``edges[l - 1][d]``
        ``[B, d_{l-1}, d_l, F_e]`` per weight layer and direction (see :class:`DenseNetworks`)."""
        source = layout.split(self.lin_source(x))
        target = layout.split(self.lin_target(x))
        return [
            [
                self.lin_out(self.act(self.lin_edge(state) + layout.endpoints(source, target, layer, direction)))
                for direction, state in enumerate(states)
            ]
            for layer, states in enumerate(edges, start=1)
        ]


@renamed_kwargs(num_layers="num_weight_layers")
class NeuralGraphInputs(nn.Module):
    r"""What the Neural Graphs models share: the encoding of a network's weights and
    biases into edge and node states, and the readout head.

    - every bias (``x``, ``C`` channels) and every raw edge feature (``edge_features``
      columns) goes through random Fourier features (:class:`FourierFeatures`) and a
      linear map (or a linear map alone with ``fourier_features=0``), ``encoder_layers``
      deep, then one more linear map, as their graph constructor does;
    - neurons add a learned positional embedding
      (:class:`~wsgraph.layers.positional.NeuronPositionalEncoding`) and, with
      ``probe_features`` :math:`K > 0`, their values at :math:`K` learned input points
      (:class:`~wsgraph.layers.probe.ProbeFeatures`).

    The models subclass it, so the encoders are their own attributes and checkpoints
    name them ``node_encoder``, ``edge_encoder``, ``node_in``, ``edge_in``,
    ``position`` and ``probe``.
    """

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        in_channels: int,
        edge_features: int,
        node_channels: int,
        edge_channels: int,
        fourier_features: int,
        fourier_sigma: float,
        encoder_layers: int,
        positional: bool,
        probe_features: int,
        probe_statistics: LayerStatistics | None,
        act: str,
    ) -> None:
        super().__init__()
        self.edge_encoder = _encoder(edge_features, edge_channels, fourier_features, fourier_sigma, encoder_layers, act)
        self.node_encoder = _encoder(in_channels, node_channels, fourier_features, fourier_sigma, encoder_layers, act)
        self.edge_in = nn.Linear(edge_channels, edge_channels)
        self.node_in = nn.Linear(node_channels, node_channels)
        self.position = (
            NeuronPositionalEncoding(num_weight_layers, in_dim, out_dim, node_channels) if positional else None
        )
        self.probe = (
            ProbeFeatures(num_weight_layers, in_dim, probe_features, node_channels, probe_statistics)
            if probe_features
            else None
        )

    def encode_nodes(self, data: Data) -> Tensor:
        """The initial state of every neuron of the batch, ``[N, node_channels]``."""
        nodes = self.node_encoder(data.x)
        if self.probe is not None:
            nodes = nodes + self.probe(data)
        nodes = self.node_in(nodes)
        if self.position is not None:
            nodes = nodes + self.position(data)
        return nodes

    def encode_edges(self, raw: Tensor) -> Tensor:
        """``edge_in(edge_encoder(raw))`` for raw edge features ``[*, edge_features]``, of which there are millions
        in a batch. (NeuralGraphGNN's fused backend computes the Fourier encoder in one chunked kernel instead,
        :func:`~wsgraph.layers.neural_graph_fused.fused_fourier_linear`.)"""
        parts = self._fourier_edge_encoder()
        if parts is None:
            return self.edge_in(self.edge_encoder(raw))
        features, weight, bias = parts
        angles = features.angles(raw)
        cosines, sines = weight.split(features.num_frequencies, dim=1)
        return (
            torch.addmm(bias, torch.cos(angles).flatten(0, -2), cosines.t())
            .addmm_(torch.sin(angles).flatten(0, -2), sines.t())
            .view(*raw.shape[:-1], -1)
        )

    def _fourier_edge_encoder(self) -> tuple[FourierFeatures, Tensor, Tensor] | None:
        """The Fourier features of the edge encoder and the one linear map that follows them (``None`` unless
        the encoder is Fourier features and one linear map)."""
        if len(self.edge_encoder) != 2 or not isinstance(self.edge_encoder[0], FourierFeatures):
            return None
        features, encoder = self.edge_encoder
        # Two linear maps in a row are one: compose them on their 32 x 256 weights, not on every edge, and
        # apply the product to the cosines and sines apart rather than to their concatenation.
        weight = self.edge_in.weight @ encoder.weight
        bias = self.edge_in.weight @ encoder.bias + self.edge_in.bias
        return features, weight, bias


def readout_head(in_features: int, hidden: int, out_features: int, hidden_layers: int) -> nn.Sequential:
    """The MLP after the pooling: ``hidden_layers`` layers of ``hidden`` units with ReLU, then ``out_features``."""
    sizes = [in_features, *[hidden] * hidden_layers]
    modules: list[nn.Module] = []
    for size_in, size_out in itertools.pairwise(sizes):
        modules += [nn.Linear(size_in, size_out), nn.ReLU()]
    return nn.Sequential(*modules, nn.Linear(sizes[-1], out_features))


def pool_neurons(nodes: Tensor, pooling: str, mask: Tensor | None = None) -> Tensor:
    """``[B, K * F]`` (``"cat"``) or ``[B, F]`` from the states ``[B, K, F]`` of ``K`` neurons of each network;
    ``mask`` ``[B, K]`` marks the neurons that exist (all by default) for ``"mean"``, ``"sum"`` and ``"max"``."""
    if pooling == "cat":
        return nodes.flatten(1)
    if mask is None:
        if pooling == "max":
            return nodes.amax(dim=1)
        return nodes.mean(dim=1) if pooling == "mean" else nodes.sum(dim=1)
    mask = mask.unsqueeze(-1)
    if pooling == "max":
        return nodes.masked_fill(~mask, -math.inf).amax(dim=1)
    total = (nodes * mask).sum(dim=1)
    return total / mask.sum(dim=1) if pooling == "mean" else total


@renamed_kwargs(num_layers="num_weight_layers", num_rounds="depth")
class NeuralGraphGNN(NeuralGraphInputs):
    r"""The GNN of `"Graph Neural Networks for Learning Equivariant Representations of
    Neural Networks" <https://arxiv.org/abs/2403.12143>`_ (Kofinas et al., ICLR 2024),
    with the defaults of their released INR-classification configuration
    (``configs/model/pna.yaml`` and the ``mnist_cls_pna.sh`` script).

    - **Inputs.** Every weight and bias (normalised per layer, as ``wsgraph train``
      feeds every model) is encoded with random Fourier features
      (:class:`FourierFeatures`, ``fourier_features`` frequencies of scale
      ``fourier_sigma``) and a linear map to ``hidden_channels``, then another linear
      map. With ``bidirectional``, every weight :math:`w` of an edge :math:`i \to j`
      gives two directed edges whose raw features are :math:`[w, 0, w]` (along the
      weight) and :math:`[0, w, w]` (against it), so a message knows its direction.
      Neurons add a learned positional embedding
      (:class:`~wsgraph.layers.positional.NeuronPositionalEncoding`: one per input
      neuron, one per output neuron, one shared by each hidden layer) and, with
      ``probe_features`` :math:`K > 0`, their values at :math:`K` learned input points
      (:class:`~wsgraph.layers.probe.ProbeFeatures`).
    - **Message passing.** ``depth`` :class:`NeuralGraphConv` layers (PNA with
      FiLM-modulated messages); after each but the last: normalisation, activation,
      dropout, and an edge update (:class:`NeuralGraphEdgeUpdate`).
    - **Readout.** ``pooling="cat"`` concatenates the final states of the
      :math:`d_M` output neurons; ``"mean"``, ``"sum"`` or ``"max"`` pool the output
      neurons (``pooling_layer="last"``) or all neurons (``"all"``). Then an MLP with
      two hidden layers of ``hidden_channels``.

    The output is invariant to hidden-neuron permutations (every node and edge label is
    unchanged by them and every aggregation is a function of a multiset) and sensitive
    to permutations of input or output neurons, which are not symmetries of an MLP.
    Hidden widths may differ within a batch; each network gets the output it gets alone
    (with ``norm="minibatch"`` it does not: see below).

    Args:
        num_weight_layers (int): the number of weight layers :math:`M` of the networks.
        in_dim (int): the input width :math:`d_0`.
        out_dim (int): the output width :math:`d_M`.
        out_features (int): the size of each output.
        degree_histogram (Tensor): the in-degree histogram that normalises PNA's
            amplification scaler, e.g. :func:`~wsgraph.layers.pna_degree_histogram`
            of the training architectures with ``both_directions=False``, as the
            released code computes it.
        in_channels (int, optional): channels ``C`` of the graphs' ``x`` and
            ``edge_attr``. (default: ``1``)
        hidden_channels (int, optional): node and edge state size. (default: ``32``)
        depth (int, optional): message-passing layers. (default: ``4``)
        aggregators (sequence of str, optional): PNA aggregators.
            (default: ``("mean", "min", "max", "std")``)
        scalers (sequence of str, optional): PNA scalers.
            (default: ``("identity", "amplification")``)
        fourier_features (int, optional): frequencies :math:`K` of the input encoding;
            ``0`` encodes the raw values with a linear map. (default: ``128``)
        fourier_sigma (float, optional): scale of the frequencies. (default: ``3.0``)
        encoder_layers (int, optional): linear layers of each input encoder, with the
            activation between them. (default: ``1``)
        positional (bool, optional): add the neurons' positional embeddings.
            (default: ``True``)
        bidirectional (bool, optional): pass messages against the weights too.
            (default: ``True``)
        modulate_edges (bool, optional): FiLM modulation of messages by the edge
            states. (default: ``True``)
        gating_edges (bool, optional): sigmoid gating instead of FiLM.
            (default: ``False``)
        update_edges (bool, optional): update edge states between rounds.
            (default: ``True``)
        norm (str, optional): the normalisation of node states after each round:
            ``"graph"`` (layer norm over all neurons and channels of each network),
            ``"node"`` (over the channels of each neuron), ``"minibatch"`` (over the
            whole batch at once, as the released code's call without a batch vector
            does) or :obj:`None` (none; the string ``"none"`` is read the same).
            (default: ``"graph"``)
        act (str, optional): the activation, resolved by PyG. (default: ``"silu"``)
        dropout (float, optional): dropout on node states after each round but the
            last. (default: ``0.2``)
        pooling (str, optional): ``"cat"``, ``"mean"``, ``"sum"`` or ``"max"``.
            (default: ``"cat"``)
        pooling_layer (str, optional): ``"last"`` (output neurons) or ``"all"``;
            ``"cat"`` needs ``"last"``. (default: ``"last"``)
        probe_features (int, optional): learned input points :math:`K` of the probe
            features; ``0`` for none. Needs ``in_channels=1``. (default: ``0``)
        probe_statistics (LayerStatistics, optional): the normalisation the inputs
            carry, which the probe features undo to run the networks. (default:
            :obj:`None`, raw weights)
        backend (str, optional): ``"fused"`` runs each architecture of the batch on
            dense views with the edge encoder and the per-edge work of each round
            in fused, chunked kernels (:mod:`wsgraph.layers.neural_graph_fused`; FiLM modulation and
            SiLU on the CPU only, other settings and devices run ``"dense"``); ``"dense"`` composes torch
            operations on the same views (:class:`DenseNetworks`); ``"scatter"`` runs
            PyG's message passing on the batch's edge list. The same numbers up to
            rounding (tested in float64, outputs and gradients), but for the gradient
            of a minimum or maximum reached by several messages at once (zero or
            pruned weights, say): ``"dense"`` gives it to one of them, the others
            share it, each a valid subgradient. (default: ``"fused"``)

    Shapes:
        - **input:** a batch of :math:`B` :class:`~wsgraph.core.graph.WeightSpaceGraph`\ s
          with signature :math:`(M, d_0, d_M)`
        - **output:** :math:`(B, \text{out\_features})`
    """

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        out_features: int,
        degree_histogram: Tensor,
        in_channels: int = 1,
        hidden_channels: int = HIDDEN_CHANNELS["ng-gnn"],
        depth: int = DEPTH["ng-gnn"],
        aggregators: Sequence[str] = ("mean", "min", "max", "std"),
        scalers: Sequence[str] = ("identity", "amplification"),
        fourier_features: int = 128,
        fourier_sigma: float = 3.0,
        encoder_layers: int = 1,
        positional: bool = True,
        bidirectional: bool = True,
        modulate_edges: bool = True,
        gating_edges: bool = False,
        update_edges: bool = True,
        norm: Norm | None = "graph",
        act: str = "silu",
        dropout: float = 0.2,
        pooling: Pooling = "cat",
        pooling_layer: PoolingLayer = "last",
        probe_features: int = 0,
        probe_statistics: LayerStatistics | None = None,
        backend: Backend = "fused",
        edge_channels: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        norm = None if norm == "none" else norm
        _check_names("aggregators", aggregators)
        _check_backend_aggregators(backend, aggregators)
        edge_channels = in_channels if edge_channels is None else edge_channels
        _check_arguments(
            out_features, in_channels, edge_channels, hidden_channels, depth, fourier_features, fourier_sigma,
            encoder_layers, norm, dropout, pooling, pooling_layer, probe_features,
        )  # fmt: skip
        super().__init__(
            num_weight_layers, in_dim, out_dim, in_channels, 3 * edge_channels if bidirectional else edge_channels,
            hidden_channels, hidden_channels, fourier_features, fourier_sigma, encoder_layers, positional,
            probe_features, probe_statistics, act,
        )  # fmt: skip
        self.backend = backend
        self.num_weight_layers, self.in_dim, self.out_dim = num_weight_layers, in_dim, out_dim
        self.out_features = out_features
        self.in_channels = in_channels
        self.edge_channels = edge_channels
        self.hidden_channels = hidden_channels
        self.depth = depth
        self.bidirectional = bidirectional
        self.norm = norm
        self.dropout = dropout
        self.pooling = pooling
        self.pooling_layer = pooling_layer
        self.probe_features = probe_features

        self.convs = nn.ModuleList(
            NeuralGraphConv(
                hidden_channels,
                hidden_channels,
                aggregators,
                scalers,
                degree_histogram,
                modulate=modulate_edges,
                gating=gating_edges,
            )
            for _ in range(depth)
        )
        self.norms = nn.ModuleList(_make_norm(norm, hidden_channels) for _ in range(depth - 1))
        self.act = activation_resolver(act)
        # The fused kernels implement FiLM and the SiLU edge update; other settings run the dense backend.
        self.fusable = modulate_edges and not gating_edges and isinstance(self.act, nn.SiLU)
        # The last round's edge states would reach nothing: the readout reads neurons only.
        self.edge_updates = nn.ModuleList(
            NeuralGraphEdgeUpdate(hidden_channels, hidden_channels, act)
            for _ in range(depth - 1 if update_edges else 0)
        )
        pooled = hidden_channels * (out_dim if pooling == "cat" else 1)
        self.head = readout_head(pooled, hidden_channels, out_features, hidden_layers=2)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        check_signature(data, self.num_weight_layers, self.in_dim, self.out_dim, type(self).__name__)
        check_channels(
            data, self.in_channels, type(self).__name__, self.edge_channels, dtype=next(self.parameters()).dtype
        )
        nodes = self.encode_nodes(data)
        widths = data.layer_widths
        uniform = bool((widths == widths[:1]).all())
        # Minibatch statistics span all networks, which the per-architecture dense groups do not see at once.
        if self.backend == "scatter" or (self.norm == "minibatch" and not uniform):
            return self.head(self._forward_scatter(data, nodes))
        _check_backend_aggregators(self.backend, self.convs[0].aggregators)
        return self.head(self._forward_dense(data, nodes, uniform))

    def _edge_inputs(self, weights: Tensor) -> list[Tensor]:
        """The raw features of the directed edges of ``weights`` ``[*, C]``: along the weights, then against them."""
        if not self.bidirectional:
            return [weights]
        zeros = torch.zeros_like(weights)
        return [torch.cat([weights, zeros, weights], -1), torch.cat([zeros, weights, weights], -1)]

    def _encode_dense_edges(self, per_layer: list[Tensor]) -> list[list[Tensor]]:
        """The encoded states of each weight layer's directed edges, from its weights ``[B, d_{l-1}, d_l, C]``."""
        return [[self.encode_edges(raw) for raw in self._edge_inputs(weights)] for weights in per_layer]

    def _direction_frequencies(self, frequencies: Tensor) -> list[Tensor]:
        """The frequencies ``[K, C]`` that give each direction's angles from the weights themselves: the raw
        features of :meth:`_edge_inputs` are ``[w, 0, w]`` and ``[0, w, w]``, so their angles are ``w`` times the
        sum of two of the three ``[K, C]`` blocks of the ``[K, 3C]`` frequencies (a third of the product, and
        for scalar weights an outer product)."""
        if not self.bidirectional:
            return [frequencies]
        along, against, shared = frequencies.chunk(3, dim=1)
        return [along + shared, against + shared]

    def _forward_scatter(self, data: Data, nodes: Tensor) -> Tensor:
        num_graphs = data.layer_widths.size(0)
        node_graph = data.batch if data.batch is not None else data.edge_index.new_zeros(data.num_nodes)
        edge_index = data.edge_index
        if self.bidirectional:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        edges = self.encode_edges(torch.cat(self._edge_inputs(data.edge_attr)))
        for index, conv in enumerate(self.convs):
            nodes = conv(nodes, edge_index, edges)
            if index == self.depth - 1:
                break
            norm = self.norms[index]
            nodes = norm(nodes, node_graph, num_graphs) if self.norm == "graph" else norm(nodes)
            nodes = nn.functional.dropout(self.act(nodes), self.dropout, self.training)
            if index < len(self.edge_updates):
                edges = self.edge_updates[index](nodes, edge_index, edges)
        if self.pooling_layer == "last":
            outputs = data.node_layer == self.num_weight_layers
            nodes, node_graph = nodes[outputs], node_graph[outputs]
        if self.pooling == "cat":
            # Nodes are in canonical order: each network's output neurons in index order.
            return nodes.reshape(num_graphs, self.out_dim * self.hidden_channels)
        return _POOLS[self.pooling](nodes, node_graph, size=num_graphs)

    def _forward_dense(self, data: Data, nodes: Tensor, uniform: bool) -> Tensor:
        data = sort_edges(data)
        widths = data.layer_widths
        if uniform:
            layout = DenseNetworks(widths[0].tolist())
            return self._dense_group(layout, nodes.view(widths.size(0), layout.num_nodes, -1), data.edge_attr)
        # Every network's output depends on that network alone, so each architecture runs as its own group.
        node_counts, edge_counts = widths.sum(1), (widths[:, :-1] * widths[:, 1:]).sum(1)
        node_start = torch.cumsum(node_counts, 0) - node_counts
        edge_start = torch.cumsum(edge_counts, 0) - edge_counts
        architectures, group_of = torch.unique(widths, dim=0, return_inverse=True)
        pooled, order = [], []
        for group, architecture in enumerate(architectures.tolist()):
            members = (group_of == group).nonzero().view(-1)
            layout = DenseNetworks(architecture)
            node_rows = node_start[members].unsqueeze(1) + torch.arange(layout.num_nodes, device=widths.device)
            edge_rows = edge_start[members].unsqueeze(1) + torch.arange(layout.num_edges, device=widths.device)
            pooled.append(self._dense_group(layout, nodes[node_rows], data.edge_attr[edge_rows.view(-1)]))
            order.append(members)
        return torch.cat(pooled)[torch.argsort(torch.cat(order))]

    def _dense_group(self, layout: DenseNetworks, nodes: Tensor, weights: Tensor) -> Tensor:
        """``[B, pooled]`` for ``nodes`` ``[B, N_g, F]`` (encoded) and ``weights`` ``[B * E_g, C]`` (raw, canonical
        order) of ``B`` networks of one architecture."""
        num_graphs = nodes.size(0)
        per_layer = layout.weights(weights, num_graphs)
        if self._runs_fused_kernels(nodes):
            encoder = self._fourier_edge_encoder()
            if encoder is None or weights.requires_grad:
                edges, shift = self._encode_dense_edges(per_layer), None
            else:
                # The encoder's bias is left to the first round, which folds it into the maps that read the
                # edges: adding it to every edge would be a pass over them.
                features, weight, shift = encoder
                per_direction = self._direction_frequencies((2 * math.pi) * features.frequencies)
                edges = [
                    [fused_fourier_linear(raw, frequencies, weight) for frequencies in per_direction]
                    for raw in per_layer
                ]
            return pool_neurons(self._fused_rounds(layout, nodes, edges, shift), self.pooling)
        edges = self._encode_dense_edges(per_layer)
        for index, conv in enumerate(self.convs):
            nodes = conv.forward_dense(nodes, edges, layout)
            if index == self.depth - 1:
                break
            nodes = nn.functional.dropout(self.act(self._normalise_dense(index, nodes)), self.dropout, self.training)
            if index < len(self.edge_updates):
                edges = self.edge_updates[index].forward_dense(nodes, edges, layout)
        return self._pool_dense(layout, nodes)

    def _runs_fused_kernels(self, nodes: Tensor) -> bool:
        """Whether the fused kernels run ``nodes``' group; else the dense composition does.

        They are chunked for a CPU's caches and threads: on a GPU their many small operations were 39 times
        slower than the dense composition (one H200, 512 networks 2-32-32-1: 3.05 s per training step against
        0.078 s). Under autocast the torch operations pick each product's precision, while the fused kernels
        write into buffers of one dtype."""
        return (
            self.backend == "fused"
            and self.fusable
            and nodes.device.type == "cpu"
            and not torch.is_autocast_enabled(nodes.device.type)
        )

    def _fused_rounds(
        self, layout: DenseNetworks, nodes: Tensor, edges: list[list[Tensor]], edge_shift: Tensor | None
    ) -> Tensor:
        """The final states of the neurons the pooling reads (``[B, d_M, F]`` with ``pooling_layer="last"``,
        else ``[B, N_g, F]``) after the rounds of :meth:`_dense_group`, with the per-edge work of each round in
        two fused kernels (:mod:`wsgraph.layers.neural_graph_fused`).

        With ``pooling_layer="last"`` the last round computes only what the output neurons' states read: the
        messages into them (along the last weight layer) and the edge update of those edges. No normalisation
        follows that round, so no other neuron's state is read again; the output is the same, and the largest
        weight layers' last messages and edge updates, forward and backward, are not computed.

        An edge update ends in ``lin_out``, and everything that reads its result (the next round's FiLM
        encoder and edge update's ``lin_edge``) is linear: the edges carry ``SiLU(...)`` instead, and
        ``lin_out`` is folded into those maps' 32 x 32 weights, which saves one product per edge and round.
        In the same way the first round folds ``edge_shift``, a bias still to be added to the encoded ``edges``.
        """
        before: tuple[Tensor | None, Tensor | None] = (None, edge_shift)
        # An edge update needs the nodes of the round after it, as do that round's messages: the two share
        # one kernel, which reads the edges once (fused_update_messages), so an update waits for that round.
        pending: tuple[Tensor, list[Tensor], list[Tensor]] | None = None
        for index, conv in enumerate(self.convs):
            film_weight, film_bias = _fold(conv.edge_encoder, *before)
            target_part, source_part = (layout.split(part) for part in conv.endpoint_parts(nodes))
            moments, extremes = conv.aggregator_needs
            updates_after = index < self.depth - 1 and index < len(self.edge_updates)
            read_later = index < self.depth - 1
            # The node layer whose new states alone are read after this round, or None: all of them.
            only_layer = layout.num_weight_layers if not read_later and self.pooling_layer == "last" else None
            incoming: list[list[NeighbourhoodStatistics]] = [[] for _ in layout.widths]
            updated: list[list[Tensor]] = []
            for layer, states in enumerate(edges, start=1):
                updated.append([])
                for direction, state in enumerate(states):
                    rows, cols = _axis_parts(source_part, target_part, layer, direction)
                    receiver, axis = layout.receivers(layer, direction)
                    if only_layer is not None and receiver != only_layer:
                        continue
                    messages_per_receiver = state.size(axis)
                    if pending is None:
                        statistics = fused_messages(state, film_weight, film_bias, rows, cols, axis, moments, extremes)
                    else:
                        edge_weight, source, target = pending
                        # The updated edges are kept only for a later round to read.
                        state, *statistics = fused_update_messages(
                            state, edge_weight, *_axis_parts(source, target, layer, direction), film_weight,
                            film_bias, rows, cols, axis, moments, extremes, keep_updated=read_later,
                        )  # fmt: skip
                    updated[-1].append(state)
                    incoming[receiver].append(NeighbourhoodStatistics(messages_per_receiver, *statistics))
            edges, pending = updated, None
            nodes = conv.update_dense(nodes, incoming, layout, only_layer)
            if index == self.depth - 1:
                break
            nodes = nn.functional.dropout(self.act(self._normalise_dense(index, nodes)), self.dropout, self.training)
            if updates_after:
                update = self.edge_updates[index]
                edge_weight, edge_bias = _fold(update.lin_edge, *before)
                # The update's three biases are one, added once per edge through its source neuron.
                source = layout.split(update.lin_source(nodes) + edge_bias)
                target = layout.split(update.lin_target(nodes))
                pending = (edge_weight, source, target)
                before = (update.lin_out.weight, update.lin_out.bias)
        return nodes

    def _pool_dense(self, layout: DenseNetworks, nodes: Tensor) -> Tensor:
        if self.pooling_layer == "last":
            nodes = layout.nodes(nodes, self.num_weight_layers)
        return pool_neurons(nodes, self.pooling)

    def _normalise_dense(self, index: int, nodes: Tensor) -> Tensor:
        norm = self.norms[index]
        if self.norm == "graph":
            # PyG's LayerNorm(mode="graph") given a batch vector, with each network's neurons on one axis.
            centered = nodes - nodes.mean(dim=(1, 2), keepdim=True)
            variance = (centered * centered).mean(dim=(1, 2), keepdim=True)
            return centered / (variance + norm.eps).sqrt() * norm.weight + norm.bias
        if self.norm == "minibatch":
            return norm(nodes.reshape(-1, nodes.size(-1))).view_as(nodes)
        return norm(nodes)

    def extra_repr(self) -> str:
        return (
            f"signature=({self.num_weight_layers}, {self.in_dim}, {self.out_dim}), out_features={self.out_features}, "
            f"hidden_channels={self.hidden_channels}, depth={self.depth}, norm={self.norm!r}, "
            f"dropout={self.dropout}, pooling={self.pooling!r}, pooling_layer={self.pooling_layer!r}, "
            f"probe_features={self.probe_features}, backend={self.backend!r}"
        )


def _fold(linear: nn.Linear, weight: Tensor | None, bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """Weight and bias of ``linear`` applied after ``x ↦ x weightᵀ + bias`` (no ``weight``: the identity; no
    ``bias``: none)."""
    folded_weight = linear.weight if weight is None else linear.weight @ weight
    folded_bias = linear.bias if bias is None else torch.addmv(linear.bias, linear.weight, bias)
    return folded_weight, folded_bias


def _axis_parts(source: list[Tensor], target: list[Tensor], layer: int, direction: int) -> tuple[Tensor, Tensor]:
    """The node terms on axes 1 and 2 of weight layer ``layer``'s ``[B, d_{l-1}, d_l, F]`` edges in
    ``direction``, as :meth:`DenseNetworks.endpoints` adds them: the sender's ``source`` and the receiver's
    ``target``."""
    if direction == 0:
        return source[layer - 1], target[layer]
    return target[layer - 1], source[layer]


def _combine(function, tensors: list[Tensor]) -> Tensor:
    result = tensors[0]
    for tensor in tensors[1:]:
        result = function(result, tensor)
    return result


def _encoder(in_features: int, channels: int, frequencies: int, sigma: float, layers: int, act: str) -> nn.Sequential:
    modules: list[nn.Module] = (
        [FourierFeatures(in_features, frequencies, sigma), nn.Linear(2 * frequencies, channels)]
        if frequencies
        else [nn.Linear(in_features, channels)]
    )
    for _ in range(layers - 1):
        modules += [activation_resolver(act), nn.Linear(channels, channels)]
    return nn.Sequential(*modules)


def _check_names(argument: str, names: object, known: tuple[str, ...] | None = None) -> None:
    """Raise a ``ValueError`` naming ``argument`` unless ``names`` is a non-empty sequence of names (a plain
    string would be read letter by letter), each of ``known`` if given."""
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        some = f" from {', '.join(known)}" if known else ""
        raise ValueError(f"{argument} must be a non-empty sequence of names{some}, got {names!r}")
    expected = f"; expected names from {', '.join(known)}" if known else ""
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{argument}: {name!r} is not a name{expected}")
        if known and name not in known:
            raise ValueError(f"{argument}: unknown name {name!r}{expected}")


def _check_backend_aggregators(backend: str, aggregators: Sequence[str]) -> None:
    """Refuse aggregators the dense and fused backends do not compute, pointing to the scatter backend."""
    other = next((name for name in aggregators if name not in DENSE_AGGREGATORS), None)
    if backend != "scatter" and other is not None:
        raise ValueError(
            f"backend {backend!r} computes the aggregators {', '.join(DENSE_AGGREGATORS)}, not {other!r}; "
            "use backend='scatter' for the others of PyG"
        )


def _make_norm(norm: str | None, channels: int) -> nn.Module:
    if norm in ("graph", "minibatch"):
        return GraphLayerNorm(channels, mode="graph")
    if norm == "node":
        return nn.LayerNorm(channels)
    return nn.Identity()


def _check_arguments(
    out_features: int,
    in_channels: int,
    edge_channels: int,
    hidden_channels: int,
    depth: int,
    fourier_features: int,
    fourier_sigma: float,
    encoder_layers: int,
    norm: str | None,
    dropout: float,
    pooling: str,
    pooling_layer: str,
    probe_features: int,
) -> None:
    if min(out_features, in_channels, hidden_channels, depth, encoder_layers) < 1:
        raise ValueError(
            "out_features, in_channels, hidden_channels, depth and encoder_layers must be positive, got "
            f"{out_features}, {in_channels}, {hidden_channels}, {depth}, {encoder_layers}"
        )
    if not is_size(edge_channels, minimum=1):
        raise ValueError(f"edge_channels must be a positive integer, got {edge_channels!r}")
    if not (is_size(fourier_features) and is_size(probe_features)):
        raise ValueError(
            f"fourier_features and probe_features must be integers >= 0, got {fourier_features!r}, {probe_features!r}"
        )
    # An infinite sigma draws infinite frequencies, and every output is NaN.
    if isinstance(fourier_sigma, bool) or not (
        isinstance(fourier_sigma, numbers.Real) and 0 < fourier_sigma < math.inf
    ):
        raise ValueError(f"fourier_sigma must be a finite number > 0, got {fourier_sigma!r}")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}: expected one of {', '.join(NORMS)} or None")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")
    if pooling_layer not in POOLING_LAYERS:
        raise ValueError(f"unknown pooling_layer {pooling_layer!r}: expected one of {', '.join(POOLING_LAYERS)}")
    if pooling == "cat" and pooling_layer != "last":
        raise ValueError("pooling='cat' concatenates the output neurons: it needs pooling_layer='last'")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if probe_features and in_channels != 1:
        raise ValueError(f"probe features run the networks, whose weights are one channel; in_channels={in_channels}")
