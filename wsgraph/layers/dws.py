"""The DWSNets layer: the complete permutation-equivariant affine map of an MLP weight space."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.checks import require_positive_counts
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.objects import WeightSpaceObject, weight_space_objects
from wsgraph.layers.ops import make_ops, network_pools
from wsgraph.layers.signature import check_features, check_signature
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout, supply_layout

BACKENDS = ("scatter", "dense")
# Share of an output's initial variance given to the term mapping each object to itself.
SELF_VARIANCE = 0.75


@renamed_kwargs(num_layers="num_weight_layers")
class DWSLayer(nn.Module):
    r"""The equivariant linear layer of DWSNets (Navon et al., "Equivariant Architectures
    for Learning in Deep Weight Spaces", ICML 2023), as message passing on weight-space
    graphs, for any number of weight layers :math:`M \ge 1` and any hidden widths.

    Fold the input neurons of :math:`W_1` and the output neurons of :math:`W_M` and
    :math:`b_M` into channels. For every ordered pair of objects :math:`X \to Y` with
    shared permuted layers :math:`S = I(X) \cap I(Y)`, the layer has one term per subset
    :math:`T \subseteq S`:

    .. math::
        Y' = \sum_{X} \sum_{T \subseteq S} \mathrm{bcast}^{Y}_{T}\Big(
             \mathrm{mean}^{X}_{\bar T}(X)\Big) \, \Theta_{X \to Y, T} + \beta_Y,

    where :math:`\mathrm{mean}^{X}_{\bar T}` averages :math:`X` over its permuted
    indices outside :math:`T` and :math:`\mathrm{bcast}^{Y}_{T}` copies the result along
    :math:`Y`'s indices outside :math:`T`. Grouped by what they pool, the terms are

    * :math:`|T| = 2` -- the weight itself: one ``edge_lins[l]`` per weight layer whose
      two neuron layers are both hidden;
    * :math:`|T| = 1` -- per hidden neuron :math:`k`: its bias, the mean of its incoming
      and of its outgoing weights (folded where they touch the input/output), mixed by
      ``node_lins[k]`` and broadcast to the neuron, its incoming and its outgoing edges;
    * :math:`T = \emptyset` -- per network, the mean of every weight and bias layer,
      mixed between all pairs of layers by ``graph_lin`` (whose bias is
      :math:`\beta`) and broadcast to every object.

    Channels are mixed at neuron and network level before anything is broadcast to
    edges, so each edge costs one :math:`C_{in} \times C_{out}` product and two gathers.
    The span of these maps is exactly the space of equivariant affine maps (checked in
    the tests by null-space dimension).

    Initialisation: each output object is a sum of terms. The term that maps an object
    to itself entry by entry (the edge term of a middle weight, the node term of a bias
    or of a folded first/last weight) gets weights of variance :math:`\tfrac34 / \text{fan-in}`;
    all pooled terms share the remaining :math:`\tfrac14`. A pooled mean has at most the
    second moment of the entries it averages, so each output's second moment stays
    between :math:`\tfrac34` and :math:`1` times its input's (times ``gain``\ :sup:`2`;
    use :math:`\sqrt 2` before a ReLU), and a deep stack keeps the scale of its
    activations (shown in the tests).

    Args:
        in_channels (int): channels :math:`C_{in}` of the input weights and biases.
        out_channels (int): channels :math:`C_{out}` of the output.
        num_weight_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the input width :math:`d_0` of the networks.
        out_dim (int): the output width :math:`d_M` of the networks.
        backend (str): ``"scatter"`` (message passing, any batch) or ``"dense"``
            (tensor reductions, one-architecture batches); both use the same parameters.

    Shapes:
        - **input:** a :class:`~wsgraph.WeightSpaceGraph` or batch with ``x`` :math:`(N, C_{in})`,
          ``edge_attr`` :math:`(E, C_{in})`
        - **output:** the same graph (a shallow copy) with ``x`` :math:`(N, C_{out})`
          (zero rows for input neurons) and ``edge_attr`` :math:`(E, C_{out})`
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        backend: str = "scatter",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        require_positive_counts(
            "DWSLayer",
            in_channels=in_channels,
            out_channels=out_channels,
            num_weight_layers=num_weight_layers,
            in_dim=in_dim,
            out_dim=out_dim,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_weight_layers = num_weight_layers
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.backend = backend
        self.objects = weight_space_objects(num_weight_layers, in_dim, out_dim)
        total_fold = sum(obj.fold for obj in self.objects)
        self.graph_lin = nn.Linear(in_channels * total_fold, out_channels * total_fold)
        self.node_lins = nn.ModuleList(
            nn.Linear(in_channels * sum(self._node_folds(k)), out_channels * sum(self._node_folds(k)), bias=False)
            for k in range(1, num_weight_layers)
        )
        self.edge_lins = nn.ModuleList(
            nn.Linear(in_channels, out_channels, bias=False) for _ in range(2, num_weight_layers)
        )
        self.reset_parameters()
        self.register_forward_pre_hook(supply_layout, with_kwargs=True)

    def _node_folds(self, layer: int) -> tuple[int, int, int]:
        """Folds of a hidden neuron's bias, incoming-weight and outgoing-weight features."""
        incoming = self.in_dim if layer == 1 else 1
        outgoing = self.out_dim if layer + 1 == self.num_weight_layers else 1
        return (1, incoming, outgoing)

    def reset_parameters(self, gain: float = 1.0) -> None:
        """Re-draw the parameters (see the class docstring for the scheme)."""
        self._init_graph_lin(gain)
        for k, lin in enumerate(self.node_lins, start=1):
            self._init_node_lin(lin, k, gain)
        for lin in self.edge_lins:
            nn.init.normal_(lin.weight, std=gain * math.sqrt(SELF_VARIANCE / self.in_channels))

    def _init_graph_lin(self, gain: float) -> None:
        folds = [obj.fold for obj in self.objects]
        is_self = [[x is y and not y.permuted for x in self.objects] for y in self.objects]
        sharers = [_pooled_term_sources(obj) for obj in self.objects]
        _init_blocks(self.graph_lin.weight, folds, is_self, sharers, self.in_channels, self.out_channels, gain)
        nn.init.zeros_(self.graph_lin.bias)

    def _init_node_lin(self, lin: nn.Linear, layer: int, gain: float) -> None:
        # Rows/columns: the bias b_k, then W_k (incoming), then W_{k+1} (outgoing). The
        # incoming block copies W_1 to itself when it is folded (layer 1), the outgoing
        # block W_M when it is folded (layer M-1); middle weights' self term is an edge term.
        by_name = {obj.name: obj for obj in self.objects}
        row_objects = [by_name[f"b{layer}"], by_name[f"W{layer}"], by_name[f"W{layer + 1}"]]
        self_pairs = {(0, 0)}
        if layer == 1:
            self_pairs.add((1, 1))
        if layer + 1 == self.num_weight_layers:
            self_pairs.add((2, 2))
        is_self = [[(row, col) in self_pairs for col in range(3)] for row in range(3)]
        sharers = [_pooled_term_sources(obj) for obj in row_objects]
        folds = list(self._node_folds(layer))
        _init_blocks(lin.weight, folds, is_self, sharers, self.in_channels, self.out_channels, gain)

    def forward(self, data: Data, layout: WeightSpaceLayout | None = None) -> Data:
        """Apply the layer to a graph or batch; returns a shallow copy with new features.

        ``layout`` is the batch's :class:`WeightSpaceLayout`; calling the module supplies it.
        """
        layout = layout if layout is not None else WeightSpaceLayout.of(data)
        self._check_signature(layout)
        check_features(self, data.x, data.edge_attr, self.in_channels)
        features = self.forward_features(layout.split(data.x, data.edge_attr), layout)
        out = copy.copy(data)
        out.x, out.edge_attr = layout.merge(features)
        return out

    def forward_features(self, features: WeightSpaceFeatures, layout: WeightSpaceLayout) -> WeightSpaceFeatures:
        """The tensor-level layer on layer-major features (see :mod:`wsgraph.layers.structure`)."""
        ops = make_ops(self.backend, features, layout)
        num_weight_layers, channels = self.num_weight_layers, self.out_channels
        hidden = range(1, num_weight_layers)
        incoming = {k: ops.pooled_in(k) for k in hidden}
        outgoing = {k: ops.pooled_out(k) for k in hidden}
        pooled = network_pools(ops, "mean", incoming, outgoing)
        sizes = [obj.fold * channels for obj in self.objects]
        per_graph = self.graph_lin(torch.cat(pooled, dim=-1)).split(sizes, dim=-1)
        graph_weight, graph_bias = per_graph[:num_weight_layers], per_graph[num_weight_layers:]
        last_bias = graph_bias[-1].reshape(-1, channels)
        if num_weight_layers == 1:
            return WeightSpaceFeatures([graph_weight[0].reshape(-1, channels)], [last_bias])

        biases, at_target, at_source = [], {}, {}
        for k in hidden:
            node_features = torch.cat([ops.bias(k), incoming[k], outgoing[k]], dim=-1)
            node_sizes = [fold * channels for fold in self._node_folds(k)]
            bias, at_target[k], at_source[k] = self.node_lins[k - 1](node_features).split(node_sizes, dim=-1)
            biases.append(ops.rows(bias + ops.broadcast(graph_bias[k - 1], k), channels))
            # The network-level term of W_k rides on its targets' table (W_M: on its sources').
            at_target[k] = at_target[k] + ops.broadcast(graph_weight[k - 1], k)
        last = num_weight_layers - 1
        at_source[last] = at_source[last] + ops.broadcast(graph_weight[num_weight_layers - 1], last)
        weights = [ops.unfold_first(at_target[1])]
        for layer in range(2, num_weight_layers):
            own = self.edge_lins[layer - 2](ops.weight(layer))
            weights.append(ops.combine_edges(layer, own, at_source[layer - 1], at_target[layer]))
        weights.append(ops.unfold_last(at_source[last]))
        biases.append(last_bias)
        return WeightSpaceFeatures(weights, biases)

    def _check_signature(self, layout: WeightSpaceLayout) -> None:
        check_signature(self, layout)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, num_weight_layers={self.num_weight_layers}, "
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, backend={self.backend!r}"
        )


def _pooled_term_sources(obj: WeightSpaceObject) -> int:
    """How many linear maps feed pooled terms into ``obj``: one per permuted layer indexing
    it (the neuron-level maps) plus the network-level map."""
    return 1 + len(obj.permuted)


def _init_blocks(
    weight: Tensor,
    folds: list[int],
    is_self: list[list[bool]],
    sharers: list[int],
    in_channels: int,
    out_channels: int,
    gain: float,
) -> None:
    """Initialise a square block matrix over objects with the given folds.

    A "self" block gets variance ``SELF_VARIANCE / fan_in``; the pooled blocks of a row
    split the remaining budget with the ``sharers[row]`` maps that feed the same object.
    """
    cross_budget = 1.0 - SELF_VARIANCE
    with torch.no_grad():
        row = 0
        for row_index, row_fold in enumerate(folds):
            rows = row_fold * out_channels
            cross_fan_in = sum(fold * in_channels for fold, own in zip(folds, is_self[row_index]) if not own)
            cross_std = gain * math.sqrt(cross_budget / (sharers[row_index] * max(cross_fan_in, 1)))
            col = 0
            for col_index, col_fold in enumerate(folds):
                cols = col_fold * in_channels
                block = weight[row : row + rows, col : col + cols]
                if is_self[row_index][col_index]:
                    block.normal_(0.0, gain * math.sqrt(SELF_VARIANCE / cols))
                else:
                    block.normal_(0.0, cross_std)
                col += cols
            row += rows
