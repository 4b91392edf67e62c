"""The relational transformer of Neural Graphs (Kofinas et al., ICLR 2024): attention among a network's neurons
whose queries, keys and values are modulated by the states of the neuron pairs."""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import to_dense_adj, to_dense_batch

from wsgraph.datasets.transforms import LayerStatistics
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS
from wsgraph.layers.gnn_baselines import check_channels
from wsgraph.layers.neural_graph import NeuralGraphInputs, pool_neurons, readout_head
from wsgraph.layers.positional import check_signature

TransformerPooling = Literal["cat", "mean", "sum", "max", "cls"]
TRANSFORMER_POOLINGS: tuple[str, ...] = get_args(TransformerPooling)


def _xavier_linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    linear = nn.Linear(in_features, out_features, bias)
    _xavier(linear)
    return linear


def _xavier(linear: nn.Linear) -> None:
    # The released code initialises the transformer's own maps this way (not the encoders').
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class RelationalAttention(nn.Module):
    r"""Multi-head attention of every neuron :math:`i` over the neurons :math:`j` of its
    network, with the pair's state :math:`\mathbf{e}_{ij}` in the query, key and value:

    .. math::
        \mathbf{q}_{ij} = \mathbf{W}_q \mathbf{x}_i + \mathbf{E}_q \mathbf{e}_{ij}, \quad
        \mathbf{k}_{ij} = \mathbf{W}_k \mathbf{x}_j + \mathbf{E}_k \mathbf{e}_{ij}, \quad
        \mathbf{v}_{ij} = (\mathbf{W}_v \mathbf{x}_j) \odot (\mathbf{E}_m \mathbf{e}_{ij})
        + \mathbf{E}_v \mathbf{e}_{ij}

        \mathbf{y}_i = \mathbf{W}_o \sum_j \operatorname{softmax}_j\!\left(
        \frac{\mathbf{q}_{ij}^\top \mathbf{k}_{ij}}{\sqrt{D}}\right) \mathbf{v}_{ij}

    per head (``modulate_values=False`` drops :math:`\mathbf{E}_m`: :math:`\mathbf{v}_{ij}
    = \mathbf{W}_v \mathbf{x}_j + \mathbf{E}_v \mathbf{e}_{ij}`). :math:`D` is the total
    ``attention_channels``, not a head's share, as in the released code. Neurons that
    ``mask`` marks as padding are no key of any query.
    """

    def __init__(
        self, node_channels: int, edge_channels: int, attention_channels: int, heads: int, modulate_values: bool
    ) -> None:
        super().__init__()
        self.heads = heads
        self.attention_channels = attention_channels
        self.modulate_values = modulate_values
        self.scale = 1.0 / math.sqrt(attention_channels)
        self.node_qkv = _xavier_linear(node_channels, 3 * attention_channels, bias=False)
        self.edge_qkv = _xavier_linear(edge_channels, (4 if modulate_values else 3) * attention_channels, bias=False)
        self.out = _xavier_linear(attention_channels, node_channels)

    def reset_parameters(self) -> None:
        for linear in (self.node_qkv, self.edge_qkv, self.out):
            _xavier(linear)

    def forward(self, nodes: Tensor, edges: Tensor, mask: Tensor) -> Tensor:
        """``nodes`` ``[B, n, F]``, ``edges`` ``[B, n, n, F_e]`` (pair ``(i, j)`` at ``[:, i, j]``), ``mask``
        ``[B, n]`` (the neurons that exist); returns ``[B, n, F]``."""
        batch, n = nodes.shape[:2]
        head_channels = self.attention_channels // self.heads
        query, key, value = self.node_qkv(nodes).view(batch, n, 3, self.heads, head_channels).unbind(2)
        pair = self.edge_qkv(edges).view(batch, n, n, -1, self.heads, head_channels).unbind(3)
        queries = query.unsqueeze(2) + pair[0]
        keys = key.unsqueeze(1) + pair[1]
        values = value.unsqueeze(1) * pair[3] + pair[2] if self.modulate_values else value.unsqueeze(1) + pair[2]
        scores = (queries * keys).sum(-1) * self.scale  # [B, n (query), n (key), heads]
        scores = scores.masked_fill(~mask[:, None, :, None], -math.inf)
        weights = torch.softmax(scores, dim=2)
        attended = (weights.unsqueeze(-1) * values).sum(2)
        return self.out(attended.reshape(batch, n, self.attention_channels))


class RelationalEdgeUpdate(nn.Module):
    r"""The pair states' update of the relational transformer, with residuals and layer norms:

    .. math::
        \mathbf{e}_{ij} \leftarrow \mathrm{LN}\left(\mathbf{e}_{ij} + \mathbf{W}_1\,
        \phi\left(\mathbf{W}_e[\mathbf{e}_{ij}; \mathbf{e}_{ji}] + \mathbf{W}_s \mathbf{x}_i
        + \mathbf{W}_t \mathbf{x}_j\right)\right), \qquad
        \mathbf{e}_{ij} \leftarrow \mathrm{LN}\left(\mathbf{e}_{ij} + \mathrm{MLP}(\mathbf{e}_{ij})\right)
    """

    def __init__(
        self, node_channels: int, edge_channels: int, hidden: int, dropout: float, act: str, layer_norm: bool
    ) -> None:
        super().__init__()
        self.lin_pair = _xavier_linear(2 * edge_channels, hidden)
        self.lin_source = _xavier_linear(node_channels, hidden)
        self.lin_target = _xavier_linear(node_channels, hidden)
        self.lin_out = _xavier_linear(hidden, edge_channels)
        self.mlp = nn.Sequential(
            _xavier_linear(edge_channels, hidden, bias=False),
            activation_resolver(act),
            _xavier_linear(hidden, edge_channels),
            nn.Dropout(dropout),
        )
        self.act = activation_resolver(act)
        self.dropout = nn.Dropout(dropout)
        self.norm0 = nn.LayerNorm(edge_channels) if layer_norm else nn.Identity()
        self.norm1 = nn.LayerNorm(edge_channels) if layer_norm else nn.Identity()

    def reset_parameters(self) -> None:
        for linear in (self.lin_pair, self.lin_source, self.lin_target, self.lin_out, self.mlp[0], self.mlp[2]):
            _xavier(linear)
        for norm in (self.norm0, self.norm1):
            if isinstance(norm, nn.LayerNorm):
                norm.reset_parameters()

    def forward(self, nodes: Tensor, edges: Tensor) -> Tensor:
        update = (
            self.lin_pair(torch.cat([edges, edges.transpose(1, 2)], dim=-1))
            + self.lin_source(nodes).unsqueeze(2)
            + self.lin_target(nodes).unsqueeze(1)
        )
        edges = self.norm0(edges + self.dropout(self.lin_out(self.act(update))))
        return self.norm1(edges + self.mlp(edges))


class RelationalTransformerBlock(nn.Module):
    """One layer of the relational transformer: attention and a feed-forward network on the neurons, each with a
    residual connection and a layer norm, then (``update_edges``) :class:`RelationalEdgeUpdate` of the pairs."""

    def __init__(
        self,
        node_channels: int,
        edge_channels: int,
        attention_channels: int,
        node_hidden: int,
        edge_hidden: int,
        heads: int,
        dropout: float,
        act: str,
        modulate_values: bool,
        layer_norm: bool,
        update_edges: bool,
    ) -> None:
        super().__init__()
        self.attention = RelationalAttention(node_channels, edge_channels, attention_channels, heads, modulate_values)
        self.lin_attention = _xavier_linear(node_channels, node_channels)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            _xavier_linear(node_channels, node_hidden, bias=False),
            activation_resolver(act),
            _xavier_linear(node_hidden, node_channels),
            nn.Dropout(dropout),
        )
        self.norm0 = nn.LayerNorm(node_channels) if layer_norm else nn.Identity()
        self.norm1 = nn.LayerNorm(node_channels) if layer_norm else nn.Identity()
        self.edge_update = (
            RelationalEdgeUpdate(node_channels, edge_channels, edge_hidden, dropout, act, layer_norm)
            if update_edges
            else None
        )

    def reset_parameters(self) -> None:
        self.attention.reset_parameters()
        for linear in (self.lin_attention, self.mlp[0], self.mlp[2]):
            _xavier(linear)
        for norm in (self.norm0, self.norm1):
            if isinstance(norm, nn.LayerNorm):
                norm.reset_parameters()
        if self.edge_update is not None:
            self.edge_update.reset_parameters()

    def forward(self, nodes: Tensor, edges: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        nodes = self.norm0(nodes + self.dropout(self.lin_attention(self.attention(nodes, edges, mask))))
        nodes = self.norm1(nodes + self.mlp(nodes))
        if self.edge_update is not None:
            edges = self.edge_update(nodes, edges)
        return nodes, edges


@renamed_kwargs(num_layers="num_weight_layers", num_blocks="depth")
class NeuralGraphTransformer(NeuralGraphInputs):
    r"""The relational transformer of `"Graph Neural Networks for Learning Equivariant
    Representations of Neural Networks" <https://arxiv.org/abs/2403.12143>`_ (Kofinas et
    al., ICLR 2024), with the defaults of their INR-classification configuration
    (``configs/model/rtransformer.yaml`` and the ``mnist_cls_rt.sh`` script).

    - **Inputs.** The encoders of :class:`~wsgraph.layers.NeuralGraphGNN`
      (:class:`~wsgraph.layers.neural_graph.NeuralGraphInputs`): random Fourier features
      of every weight and bias, positional embeddings of the neurons, optional probe
      features. Every ordered pair of neurons :math:`(i, j)` of a network has a state:
      the encoding of the weight :math:`w_{ij}` where :math:`i \to j` is a weight, of
      :math:`0` where it is not. With ``bidirectional`` the raw feature of a pair is
      :math:`[w_{ij}, w_{ji}, w_{ij} + w_{ji}]`.
    - **Layers.** ``depth`` :class:`RelationalTransformerBlock`\ s: every neuron
      attends to every neuron of its network (:class:`RelationalAttention`), then a
      feed-forward network, then every pair's state is updated from itself, its
      reverse and its two neurons (not after the last block, whose pair states nothing
      would read).
    - **Readout.** ``pooling="cat"`` concatenates the final states of the output
      neurons; ``"mean"``, ``"sum"``, ``"max"`` pool the output neurons
      (``pooling_layer="last"``) or all neurons (``"all"``); ``"cls"`` prepends a learned
      token that attends and is attended to (its pairs start at zero) and reads it out.
      Then an MLP with ``head_layers`` hidden layers of ``head_channels``.

    Each network is one dense attention problem: its neurons ``[n, F]`` and its pairs
    ``[n, n, F_e]``; a batch stacks them, padding networks with fewer neurons and
    masking the padding out of the attention, so every network gets the output it gets
    alone. The cost grows with :math:`n^2` per network.

    The output is invariant to hidden-neuron permutations (the pairs' states are
    permuted with the neurons, every hidden neuron of a layer has the same positional
    embedding, and attention is a weighted sum over all neurons) and sensitive to
    permutations of input or output neurons.

    Args:
        num_weight_layers (int): the number of weight layers :math:`M` of the networks.
        in_dim (int): the input width :math:`d_0`.
        out_dim (int): the output width :math:`d_M`.
        out_features (int): the size of each output.
        in_channels (int, optional): channels ``C`` of ``x`` and ``edge_attr``. (default: ``1``)
        node_channels (int, optional): neuron state size (``d_node``). (default: ``64``)
        edge_channels (int, optional): pair state size (``d_edge``). (default: ``32``)
        attention_channels (int, optional): query, key and value size over all heads
            (``d_attn_hid``). (default: ``128``)
        node_hidden (int, optional): hidden units of the neurons' feed-forward network
            (``d_node_hid``). (default: ``128``)
        edge_hidden (int, optional): hidden units of the pair update (``d_edge_hid``).
            (default: ``64``)
        depth (int, optional): transformer layers (``n_layers``). (default: ``4``)
        heads (int, optional): attention heads (``n_heads``). (default: ``8``)
        dropout (float, optional): dropout after attention and in both feed-forward
            networks. (default: ``0.2``, the script's; the configuration says ``0``)
        act (str, optional): the activation of the blocks. (default: ``"gelu"``)
        modulate_values (bool, optional): ``modulate_v``. (default: ``True``)
        layer_norm (bool, optional): ``use_ln``. (default: ``True``)
        update_edges (bool, optional): ``not disable_edge_updates``. (default: ``True``)
        bidirectional (bool, optional): ``rev_edge_features``. (default: ``False``)
        fourier_features (int, optional): ``sin_emb_dim``; ``0`` for linear encoders.
            (default: ``128``)
        fourier_sigma (float, optional): ``inp_factor``. (default: ``1.0``)
        encoder_layers (int, optional): ``input_layers``. (default: ``1``)
        positional (bool, optional): ``use_pos_embed``. (default: ``True``)
        pooling (str, optional): ``"cat"``, ``"mean"``, ``"sum"``, ``"max"`` or
            ``"cls"`` (``use_cls_token``). (default: ``"cat"``)
        pooling_layer (str, optional): ``"last"`` or ``"all"``. (default: ``"last"``)
        head_channels (int, optional): ``d_out_hid``. (default: ``128``)
        head_layers (int, optional): hidden layers of the head. (default: ``1``)
        probe_features (int, optional): learned input points of the probe features.
            (default: ``0``)
        probe_statistics (LayerStatistics, optional): the inputs' normalisation, which
            the probe features undo. (default: :obj:`None`)

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
        in_channels: int = 1,
        node_channels: int = HIDDEN_CHANNELS["ng-transformer"],
        edge_channels: int = 32,
        attention_channels: int = 128,
        node_hidden: int = 128,
        edge_hidden: int = 64,
        depth: int = DEPTH["ng-transformer"],
        heads: int = 8,
        dropout: float = 0.2,
        act: str = "gelu",
        modulate_values: bool = True,
        layer_norm: bool = True,
        update_edges: bool = True,
        bidirectional: bool = False,
        fourier_features: int = 128,
        fourier_sigma: float = 1.0,
        encoder_layers: int = 1,
        positional: bool = True,
        pooling: TransformerPooling = "cat",
        pooling_layer: Literal["last", "all"] = "last",
        head_channels: int = 128,
        head_layers: int = 1,
        probe_features: int = 0,
        probe_statistics: LayerStatistics | None = None,
    ) -> None:
        _check_arguments(
            out_features, in_channels, node_channels, edge_channels, attention_channels, node_hidden, edge_hidden,
            depth, heads, dropout, fourier_features, encoder_layers, pooling, pooling_layer, head_channels,
            head_layers, probe_features,
        )  # fmt: skip
        # The released graph constructor's encoders use SiLU between their layers.
        super().__init__(
            num_weight_layers, in_dim, out_dim, in_channels, 3 * in_channels if bidirectional else in_channels,
            node_channels, edge_channels, fourier_features, fourier_sigma, encoder_layers, positional,
            probe_features, probe_statistics, "silu",
        )  # fmt: skip
        self.num_weight_layers, self.in_dim, self.out_dim = num_weight_layers, in_dim, out_dim
        self.out_features = out_features
        self.in_channels = in_channels
        self.node_channels = node_channels
        self.depth = depth
        self.heads = heads
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.pooling_layer = pooling_layer
        self.probe_features = probe_features
        self.cls_token = nn.Parameter(torch.empty(node_channels)) if pooling == "cls" else None
        self.blocks = nn.ModuleList(
            RelationalTransformerBlock(
                node_channels,
                edge_channels,
                attention_channels,
                node_hidden,
                edge_hidden,
                heads,
                dropout,
                act,
                modulate_values,
                layer_norm,
                update_edges=update_edges and index < depth - 1,
            )
            for index in range(depth)
        )
        pooled = node_channels * (out_dim if pooling == "cat" else 1)
        self.head = readout_head(pooled, head_channels, out_features, head_layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The blocks initialise their own maps (Xavier, zero biases), as the released code does.
        encoders = (*self.edge_encoder, *self.node_encoder, self.edge_in, self.node_in, self.position, self.probe)
        for module in (*encoders, *self.blocks, *self.head):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.cls_token is not None:
            with torch.no_grad():
                self.cls_token.normal_()

    def forward(self, data: Data) -> Tensor:
        check_signature(data, self.num_weight_layers, self.in_dim, self.out_dim, type(self).__name__)
        check_channels(data, self.in_channels, type(self).__name__, dtype=next(self.parameters()).dtype)
        batch = data.batch if data.batch is not None else data.edge_index.new_zeros(data.num_nodes)
        num_graphs = data.layer_widths.size(0)
        nodes, mask = to_dense_batch(self.encode_nodes(data), batch, batch_size=num_graphs)
        weights = to_dense_adj(data.edge_index, batch, data.edge_attr, max_num_nodes=nodes.size(1))
        if self.bidirectional:
            reverse = weights.transpose(1, 2)
            weights = torch.cat([weights, reverse, weights + reverse], dim=-1)
        edges = self.encode_edges(weights)
        if self.cls_token is not None:
            nodes = torch.cat([self.cls_token.expand(num_graphs, 1, -1), nodes], dim=1)
            edges = nn.functional.pad(edges, (0, 0, 1, 0, 1, 0))
            mask = nn.functional.pad(mask, (1, 0), value=True)
        for block in self.blocks:
            nodes, edges = block(nodes, edges, mask)
        return self.head(self._pool(nodes, mask))

    def _pool(self, nodes: Tensor, mask: Tensor) -> Tensor:
        if self.pooling == "cls":
            return nodes[:, 0]
        if self.pooling_layer == "all":
            return pool_neurons(nodes, self.pooling, mask)
        # Each network's neurons are in canonical order: its output neurons are its last d_M.
        counts = mask.sum(dim=1, keepdim=True)
        rows = counts - self.out_dim + torch.arange(self.out_dim, device=nodes.device)
        outputs = nodes.gather(1, rows.unsqueeze(-1).expand(-1, -1, nodes.size(-1)))
        return pool_neurons(outputs, self.pooling)

    def extra_repr(self) -> str:
        return (
            f"signature=({self.num_weight_layers}, {self.in_dim}, {self.out_dim}), out_features={self.out_features}, "
            f"node_channels={self.node_channels}, depth={self.depth}, heads={self.heads}, "
            f"dropout={self.dropout}, pooling={self.pooling!r}, pooling_layer={self.pooling_layer!r}, "
            f"probe_features={self.probe_features}"
        )


def _check_arguments(
    out_features: int,
    in_channels: int,
    node_channels: int,
    edge_channels: int,
    attention_channels: int,
    node_hidden: int,
    edge_hidden: int,
    depth: int,
    heads: int,
    dropout: float,
    fourier_features: int,
    encoder_layers: int,
    pooling: str,
    pooling_layer: str,
    head_channels: int,
    head_layers: int,
    probe_features: int,
) -> None:
    sizes = {
        "out_features": out_features,
        "in_channels": in_channels,
        "node_channels": node_channels,
        "edge_channels": edge_channels,
        "attention_channels": attention_channels,
        "node_hidden": node_hidden,
        "edge_hidden": edge_hidden,
        "depth": depth,
        "heads": heads,
        "encoder_layers": encoder_layers,
        "head_channels": head_channels,
    }
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be positive, got {value}")
    if min(fourier_features, probe_features, head_layers) < 0:
        raise ValueError(
            f"fourier_features, probe_features and head_layers must be >= 0, got {fourier_features}, "
            f"{probe_features}, {head_layers}"
        )
    if attention_channels % heads:
        raise ValueError(f"attention_channels={attention_channels} must be a multiple of heads={heads}")
    if pooling not in TRANSFORMER_POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}: expected one of {', '.join(TRANSFORMER_POOLINGS)}")
    if pooling_layer not in ("last", "all"):
        raise ValueError(f"unknown pooling_layer {pooling_layer!r}: expected 'last' or 'all'")
    if pooling == "cat" and pooling_layer != "last":
        raise ValueError("pooling='cat' concatenates the output neurons: it needs pooling_layer='last'")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if probe_features and in_channels != 1:
        raise ValueError(f"probe features run the networks, whose weights are one channel; in_channels={in_channels}")
