"""Index structure of a batch of weight-space graphs, computed once per forward pass.

The equivariant layers work on :class:`WeightSpaceFeatures`: one tensor per weight
layer ``[E_l, C]`` and one per bias layer ``[N_l, C]``, each listing the whole batch in
*layer-major* order (graph, then position inside the layer). For a batch of one
architecture this is exactly the dense layout, so ``weights[l-1].view(B, d_{l-1}, d_l, C)``
is free; for mixed widths the same tensors are addressed through the group indices of
:class:`WeightSpaceLayout`. Converting from and to PyG's graph-major ``x`` /
``edge_attr`` costs one gather each way, once per model rather than once per layer.

Nodes are in canonical order; edges may come in any order (PyG transforms reorder
them freely). The layout checks the order once per batch, with a single comparison
when it is canonical, and otherwise folds the reordering into those same gathers, so
outputs come back in the caller's edge order.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.core.graph import edge_positions, inverse_permutation
from wsgraph.deprecation import renamed_property
from wsgraph.layers.incidence import Incidence

_CACHE_ATTRIBUTE = "_wsgraph_layout"


class WeightSpaceFeatures(NamedTuple):
    """Per weight layer ``l = 1..M``: ``weights[l-1]`` ``[E_l, C]`` and ``biases[l-1]`` ``[N_l, C]``."""

    weights: list[Tensor]
    biases: list[Tensor]

    @property
    def channels(self) -> int:
        return self.weights[0].size(-1)

    def map(self, function) -> WeightSpaceFeatures:
        """Apply a pointwise ``function`` to every tensor."""
        return WeightSpaceFeatures([function(w) for w in self.weights], [function(b) for b in self.biases])


@dataclass
class WeightSpaceLayout:
    r"""Group indices of a batch of MLP graphs sharing the signature :math:`(M, d_0, d_M)`.

    Node table ``k`` lists the neurons of layer ``k`` of every network (graph-major);
    edge table ``l`` the weights of layer ``l``, ordered (graph, source, target).

    Attributes:
        num_graphs: ``B``.
        widths: the per-network widths ``[B, M+1]``.
        in_dim: the shared input width :math:`d_0`.
        out_dim: the shared output width :math:`d_M`.
        uniform_widths: the common widths when all networks share one architecture.
        node_counts: ``N_k`` for ``k = 0..M``.
        edge_counts: ``E_l`` for ``l = 1..M`` (index ``l-1``).
        node_graph: per ``k``, the graph of every row of node table ``k``.
        node_ptr: per ``k``, ``[B+1]`` offsets of each graph's rows in node table ``k``.
        source: per ``l``, the row in node table ``l-1`` of each edge's source.
        target: per ``l``, the row in node table ``l`` of each edge's target.
        source_ptr: per ``l``, ``[N_{l-1}+1]`` offsets of the contiguous groups of edges
            leaving each source row.
        by_source: per ``l``, sums over / gathers from the source rows of the edges.
        by_target: per ``l``, sums over / gathers from the target rows of the edges.
        by_graph: per ``k``, sums over / gathers from the networks of node table ``k``'s rows.
        first_fold: ``[E_1]`` position ``target * d_0 + a`` of each first-layer edge in
            the folded ``[N_1, d_0, C]`` view (input neuron ``a``).
        first_unfold: gathers the first-layer edges back from that folded view.
        edge_order: ``[E]`` the row of the caller's ``edge_attr`` behind each row of the
            concatenated edge tables, or ``None`` when the edges are in canonical order
            and the batch has one architecture (then :meth:`split` only reshapes).
        node_order: the same for nodes and ``x`` (``None`` for one architecture).
        edge_inverse: the inverse permutation of ``edge_order`` (where it is not ``None``),
            which :meth:`merge` reads; computed here so a forward pass only reads the layout.
        node_inverse: the same for ``node_order``.
    """

    widths: Tensor
    # Plain ints, read once from the host copy: reading them from `widths` on a GPU at
    # every use would wait for the device several times per layer.
    in_dim: int
    out_dim: int
    uniform_widths: tuple[int, ...] | None
    node_counts: list[int]
    edge_counts: list[int]
    node_graph: list[Tensor]
    node_ptr: list[Tensor]
    source: list[Tensor]
    target: list[Tensor]
    source_ptr: list[Tensor]
    by_source: list[Incidence]
    by_target: list[Incidence]
    by_graph: list[Incidence]
    first_fold: Tensor
    first_unfold: Incidence
    edge_order: Tensor | None
    node_order: Tensor | None
    edge_inverse: Tensor | None = None
    node_inverse: Tensor | None = None

    @property
    def num_graphs(self) -> int:
        # Read from `widths` rather than stored, so a compiled graph sees a tensor size it
        # can treat as symbolic (dynamic=True), not a constant to specialise on.
        return self.widths.size(0)

    @property
    def num_weight_layers(self) -> int:
        return self.widths.size(1) - 1

    num_layers = renamed_property("num_weight_layers", "WeightSpaceLayout.num_layers")

    @classmethod
    def of(cls, data: Data) -> WeightSpaceLayout:
        """The layout of a graph or batch, whose edges may come in any order (see :meth:`of_edges`)."""
        edge_index = getattr(data, "edge_index", None)
        if not isinstance(edge_index, Tensor):
            raise ValueError(f"{type(data).__name__} has no 'edge_index'; build graphs with wsgraph.mlp_to_graph")
        widths = getattr(data, "layer_widths", None)
        if not isinstance(widths, Tensor) or widths.dim() != 2:
            raise ValueError(
                f"{type(data).__name__} has no 'layer_widths' [B, M+1]; build graphs with wsgraph.mlp_to_graph"
            )
        return cls.of_edges(edge_index, widths, data.num_nodes)

    @classmethod
    def of_edges(cls, edge_index: Tensor, layer_widths: Tensor, num_nodes: int) -> WeightSpaceLayout:
        """The layout of a batch's ``edge_index``, built and checked once and kept on that tensor.

        Every layer of a model, and every model or :class:`~wsgraph.layers.DWSConv` that
        is handed the same ``edge_index``, gets this one object; shallow copies of a batch
        share it. It is rebuilt only for another ``edge_index`` or ``layer_widths`` tensor,
        or after either was modified in place.
        """
        key = (layer_widths, layer_widths._version, edge_index._version, num_nodes)
        cached = edge_index.__dict__.get(_CACHE_ATTRIBUTE)
        if cached is not None and cached[0][0] is layer_widths and cached[0][1:] == key[1:]:
            return cached[1]
        layout = cls.build(layer_widths, edge_index.device, edge_index=edge_index, num_nodes=num_nodes)
        edge_index.__dict__[_CACHE_ATTRIBUTE] = (key, layout)
        return layout

    @classmethod
    def build(
        cls,
        widths: Tensor,
        device: torch.device | str | None = None,
        edge_index: Tensor | None = None,
        num_nodes: int | None = None,
    ) -> WeightSpaceLayout:
        """The layout of networks with per-network widths ``[B, M+1]``.

        Nodes are in canonical order. Without ``edge_index`` the edges are taken to be
        in canonical order too; with it they may come in any order, which is checked
        (a ``ValueError`` names an edge that is not one of the networks' weights) and
        which :meth:`split` and :meth:`merge` then read and write.

        Args:
            widths: ``[B, M+1]`` the widths of every network.
            device: where the index tensors live.
            edge_index: ``[2, E]`` the batch's edges, in any order.
            num_nodes: the number of rows of ``x`` (checked against ``widths``; by
                default what ``widths`` describe).
        """
        layout = cls._build(widths, device)
        if edge_index is None:
            return layout
        if num_nodes is None:
            num_nodes = sum(layout.node_counts)
        return layout._reading_edges_at(edge_positions(edge_index, widths, num_nodes))

    @classmethod
    def _build(cls, widths: Tensor, device: torch.device | str | None = None) -> WeightSpaceLayout:
        widths = widths.to(device=device, dtype=torch.long)
        num_graphs, num_weight_layers = widths.size(0), widths.size(1) - 1
        if num_weight_layers < 1:
            raise ValueError("a weight space needs at least one weight layer")
        host = widths.cpu()
        uniform = bool((host == host[:1]).all())
        for column, name in ((0, "input"), (-1, "output")):
            if not bool((host[:, column] == host[0, column]).all()):
                raise ValueError(
                    f"networks of one batch must share their {name} width, got {sorted(set(host[:, column].tolist()))}"
                )
        edge_widths = widths[:, :-1] * widths[:, 1:]
        graph_nodes, graph_edges = widths.sum(1), edge_widths.sum(1)
        node_start = _exclusive_cumsum(graph_nodes)
        edge_start = _exclusive_cumsum(graph_edges)
        node_offset = _exclusive_cumsum(widths, dim=1)
        edge_offset = _exclusive_cumsum(edge_widths, dim=1)
        node_counts = host.sum(0).tolist()
        edge_counts = (host[:, :-1] * host[:, 1:]).sum(0).tolist()

        graph_ids = torch.arange(num_graphs, device=widths.device)
        node_graph, node_ptr, node_local = [], [], []
        for k in range(num_weight_layers + 1):
            rows_graph = graph_ids.repeat_interleave(widths[:, k], output_size=node_counts[k])
            ptr = _inclusive_ptr(widths[:, k])
            node_graph.append(rows_graph)
            node_ptr.append(ptr)
            node_local.append(torch.arange(node_counts[k], device=widths.device) - ptr[:-1][rows_graph])

        sources, targets, source_ptr, edge_local_graph = [], [], [], []
        by_source, by_target = [], []
        for layer in range(1, num_weight_layers + 1):
            count = edge_counts[layer - 1]
            layer_ptr = _inclusive_ptr(edge_widths[:, layer - 1])
            edge_graph = graph_ids.repeat_interleave(edge_widths[:, layer - 1], output_size=count)
            local = torch.arange(count, device=widths.device) - layer_ptr[:-1][edge_graph]
            out_width = widths[edge_graph, layer]
            sources.append(node_ptr[layer - 1][:-1][edge_graph] + torch.div(local, out_width, rounding_mode="floor"))
            targets.append(node_ptr[layer][:-1][edge_graph] + local % out_width)
            source_ptr.append(_inclusive_ptr(widths[node_graph[layer - 1], layer]))
            edge_local_graph.append((edge_graph, local))
            by_source.append(Incidence(sources[-1], node_counts[layer - 1], source_ptr[-1]))
            by_target.append(
                _target_incidence(targets[-1], widths, layer, node_graph[layer], node_local[layer], layer_ptr)
            )

        in_dim = int(host[0, 0])
        first_fold = targets[0] * in_dim + node_local[0][sources[0]]
        # Reading edges back from the folded table: a permutation, so each row has one edge.
        first_slots = in_dim * node_counts[1]
        edge_of_slot = torch.empty_like(first_fold)
        edge_of_slot[first_fold] = torch.arange(first_fold.numel(), device=widths.device)
        first_unfold = Incidence(
            first_fold, first_slots, torch.arange(first_slots + 1, device=widths.device), edge_of_slot
        )
        by_graph = [Incidence(node_graph[k], num_graphs, node_ptr[k]) for k in range(num_weight_layers + 1)]

        edge_order = node_order = None
        if not uniform:
            edge_order = torch.cat(
                [
                    edge_start[graph] + edge_offset[graph, layer - 1] + local
                    for layer, (graph, local) in enumerate(edge_local_graph, start=1)
                ]
            )
            node_order = torch.cat(
                [
                    node_start[node_graph[k]] + node_offset[node_graph[k], k] + node_local[k]
                    for k in range(num_weight_layers + 1)
                ]
            )
        return cls(
            widths=widths,
            in_dim=in_dim,
            out_dim=int(host[0, -1]),
            uniform_widths=tuple(host[0].tolist()) if uniform else None,
            node_counts=node_counts,
            edge_counts=edge_counts,
            node_graph=node_graph,
            node_ptr=node_ptr,
            source=sources,
            target=targets,
            source_ptr=source_ptr,
            by_source=by_source,
            by_graph=by_graph,
            by_target=by_target,
            first_fold=first_fold,
            first_unfold=first_unfold,
            edge_order=edge_order,
            node_order=node_order,
            edge_inverse=None if edge_order is None else inverse_permutation(edge_order),
            node_inverse=None if node_order is None else inverse_permutation(node_order),
        )

    def _reading_edges_at(self, positions: Tensor | None) -> WeightSpaceLayout:
        """This layout for edges listed in another order: edge ``e`` of the caller is canonical edge ``positions[e]``."""
        if positions is None:
            return self
        canonical = self.edge_order
        if canonical is None:
            # One architecture: layer l of every network, network after network.
            per_network = torch.arange(positions.numel(), device=positions.device).view(self.num_graphs, -1)
            sizes = [count // self.num_graphs for count in self.edge_counts]
            canonical = torch.cat([part.reshape(-1) for part in per_network.split(sizes, dim=1)])
        edge_order = inverse_permutation(positions).index_select(0, canonical)
        return dataclasses.replace(self, edge_order=edge_order, edge_inverse=inverse_permutation(edge_order))

    def split(self, x: Tensor, edge_attr: Tensor) -> WeightSpaceFeatures:
        """Graph-major ``x`` ``[N, C]`` / ``edge_attr`` ``[E, C]`` -> layer-major features."""
        if self.node_order is None:
            nodes = x.reshape(self.num_graphs, -1, x.size(-1))
            parts = nodes.split(list(self.uniform_widths), dim=1)[1:]
            biases = [part.reshape(-1, x.size(-1)) for part in parts]
        else:
            biases = list(x[self.node_order].split(self.node_counts))[1:]
        if self.edge_order is None:
            edges = edge_attr.reshape(self.num_graphs, -1, edge_attr.size(-1))
            sizes = [count // self.num_graphs for count in self.edge_counts]
            weights = [part.reshape(-1, edge_attr.size(-1)) for part in edges.split(sizes, dim=1)]
        else:
            weights = list(edge_attr[self.edge_order].split(self.edge_counts))
        return WeightSpaceFeatures(weights, biases)

    def merge(self, features: WeightSpaceFeatures) -> tuple[Tensor, Tensor]:
        """Layer-major features -> graph-major ``(x, edge_attr)`` in the caller's order; input neurons get zeros."""
        reference = features.biases[0]
        inputs = reference.new_zeros(self.node_counts[0], features.biases[0].size(-1))
        batch = self.num_graphs
        if self.node_order is None:
            nodes = torch.cat([b.view(batch, -1, b.size(-1)) for b in (inputs, *features.biases)], dim=1)
            x = nodes.reshape(-1, nodes.size(-1))
        else:
            x = torch.cat([inputs, *features.biases])[self.node_inverse]
        if self.edge_order is None:
            edges = torch.cat([w.view(batch, -1, w.size(-1)) for w in features.weights], dim=1)
            edge_attr = edges.reshape(-1, edges.size(-1))
        else:
            edge_attr = torch.cat(features.weights)[self.edge_inverse]
        return x, edge_attr

    def dense_weight(self, features: WeightSpaceFeatures, layer: int) -> Tensor:
        """``[B, d_{l-1}, d_l, C]`` view of weight layer ``layer`` (one-architecture batches)."""
        widths = self._require_uniform()
        weight = features.weights[layer - 1]
        return weight.view(self.num_graphs, widths[layer - 1], widths[layer], weight.size(-1))

    def dense_bias(self, features: WeightSpaceFeatures, layer: int) -> Tensor:
        """``[B, d_l, C]`` view of bias layer ``layer`` (one-architecture batches)."""
        widths = self._require_uniform()
        bias = features.biases[layer - 1]
        return bias.view(self.num_graphs, widths[layer], bias.size(-1))

    def _require_uniform(self) -> tuple[int, ...]:
        if self.uniform_widths is None:
            distinct = sorted({"-".join(map(str, row)) for row in self.widths.tolist()})
            raise ValueError(
                f"the dense backend needs networks of one architecture, this batch mixes {', '.join(distinct[:4])}"
                f"{', ...' if len(distinct) > 4 else ''}; use backend='scatter'"
            )
        return self.uniform_widths


@torch.compiler.disable
def supply_layout(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook of the modules that take a graph or batch: hand ``forward`` its layout.

    A hook runs before ``forward`` and, being disabled for the compiler, outside what
    ``torch.compile(module)`` traces: the layout needs host values (counts, the edge
    check) that would break a compiled graph, and ``forward`` only reads it.
    """
    data = args[0] if args else kwargs.get("data")
    if kwargs.get("layout") is not None or not isinstance(data, Data):
        return None
    return args, {**kwargs, "layout": WeightSpaceLayout.of(data)}


def _target_incidence(
    targets: Tensor, widths: Tensor, layer: int, row_graph: Tensor, row_local: Tensor, layer_ptr: Tensor
) -> Incidence:
    """Edges grouped by target neuron: row ``(g, j)`` holds edges ``start_g + i * d_l + j`` for every ``i``."""
    in_degree = widths[row_graph, layer - 1]
    row_ptr = _inclusive_ptr(in_degree)
    row_of = torch.arange(row_ptr.numel() - 1, device=widths.device).repeat_interleave(
        in_degree, output_size=targets.numel()
    )
    position = torch.arange(targets.numel(), device=widths.device) - row_ptr[:-1][row_of]
    graph = row_graph[row_of]
    col_indices = layer_ptr[:-1][graph] + position * widths[graph, layer] + row_local[row_of]
    return Incidence(targets, row_ptr.numel() - 1, row_ptr, col_indices)


def _exclusive_cumsum(values: Tensor, dim: int = 0) -> Tensor:
    return values.cumsum(dim) - values


def _inclusive_ptr(counts: Tensor) -> Tensor:
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)])
