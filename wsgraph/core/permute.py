"""Hidden-neuron permutations: the symmetry of MLP weight spaces, as augmentation and test tool."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.core.graph import canonical_positions, graph_specs, inverse_permutation

Permutations = Sequence[Tensor]


def permute_hidden(
    data: Data,
    perms: Permutations | Sequence[Permutations] | None = None,
    generator: torch.Generator | None = None,
) -> Data:
    r"""Permute the hidden neurons of every network in a graph or batch.

    Permuting hidden layer :math:`k` by :math:`\pi` maps :math:`W_k \mapsto W_k P_\pi`,
    :math:`b_k \mapsto b_k P_\pi` and :math:`W_{k+1} \mapsto P_\pi^\top W_{k+1}`, which
    leaves the network's function unchanged. The result keeps the layout of ``data``
    (canonical or not): values move, the structure (``edge_index``, ...) stays.

    Args:
        data: a graph or batch from :func:`wsgraph.mlp_to_graph`.
        perms: for a graph, one permutation per hidden layer (``perms[k-1]`` has
            ``d_k`` entries; new neuron ``j`` is old neuron ``perms[k-1][j]``); for a
            batch, one such list per network. ``None`` draws them uniformly at random.
        generator: the random generator for ``perms=None``.

    Returns:
        A shallow copy of ``data`` with permuted ``x`` and ``edge_attr``.
    """
    check_generator(generator, "permute_hidden")
    if perms is None:
        source = _random_sources(data, generator)
    else:
        source = _given_sources(data, perms)
    return apply_node_permutation(data, source)


def apply_node_permutation(data: Data, source: Tensor) -> Data:
    """Move node ``source[n]``'s values to node ``n`` and every weight along with its endpoints.

    ``source`` must map each node to a node of the same graph and layer.
    """
    src, dst = data.edge_index
    node_index = data.node_index
    graph = _node_graph(data)
    out_width = data.layer_widths[graph[dst], data.node_layer[dst]]
    positions = canonical_positions(data)
    edge_ids = torch.arange(src.numel(), device=src.device) if positions is None else positions
    # Moving the endpoints of W_l[i, j] moves it by a fixed offset in canonical order.
    moved_from = (
        edge_ids + (node_index[source[src]] - node_index[src]) * out_width + (node_index[source[dst]] - node_index[dst])
    )
    if positions is not None:
        moved_from = inverse_permutation(positions)[moved_from]
    out = copy.copy(data)
    out.x = data.x[source]
    out.edge_attr = data.edge_attr[moved_from]
    return out


def _node_graph(data: Data) -> Tensor:
    batch = getattr(data, "batch", None)
    if batch is None:
        return data.node_layer.new_zeros(data.num_nodes)
    return batch


def _hidden_mask(data: Data) -> Tensor:
    last_layer = data.layer_widths.size(1) - 1
    return (data.node_layer > 0) & (data.node_layer < last_layer)


def _random_sources(data: Data, generator: torch.Generator | None) -> Tensor:
    device = data.x.device
    num_nodes = data.num_nodes
    groups = _node_graph(data) * data.layer_widths.size(1) + data.node_layer
    keys = torch.rand(num_nodes, generator=generator, device=generator.device if generator else device)
    order = torch.argsort(keys.to(device))
    # Nodes of one (graph, layer) group are contiguous and groups ascend in canonical
    # order, so sorting by group after a random shuffle lists each group's nodes in
    # random order exactly at that group's positions.
    order = order[torch.argsort(groups[order], stable=True)]
    identity = torch.arange(num_nodes, device=device)
    return torch.where(_hidden_mask(data), order, identity)


def _given_sources(data: Data, perms: Permutations | Sequence[Permutations]) -> Tensor:
    specs = graph_specs(data)
    per_network = list(perms) if isinstance(data, Batch) else [perms]
    if len(per_network) != len(specs):
        raise ValueError(f"got permutations for {len(per_network)} networks, the batch has {len(specs)}")
    sources = []
    offset = 0
    for network, (spec, layer_perms) in enumerate(zip(specs, per_network)):
        layer_perms = list(layer_perms)
        if len(layer_perms) != spec.num_weight_layers - 1:
            raise ValueError(
                f"network {network} ({spec}) has {spec.num_weight_layers - 1} hidden layers, got {len(layer_perms)} permutations"
            )
        pieces = [torch.arange(spec.in_dim)]
        for k, perm in zip(spec.hidden_layers, layer_perms):
            given = torch.as_tensor(perm)
            # Casting 0.9, 1.5, 2.2 to integers would give the identity without a word.
            if given.is_floating_point() or given.is_complex() or given.dtype == torch.bool:
                raise ValueError(f"network {network}: perms[{k - 1}] holds {given.dtype} values, not integers")
            perm = given.to(dtype=torch.long, device="cpu")
            if perm.dim() != 1 or not torch.equal(perm.sort().values, torch.arange(spec.widths[k])):
                raise ValueError(f"network {network}: perms[{k - 1}] is not a permutation of range({spec.widths[k]})")
            pieces.append(perm + spec.node_offsets[k])
        pieces.append(torch.arange(spec.out_dim) + spec.node_offsets[-2])
        sources.append(torch.cat(pieces) + offset)
        offset += spec.num_nodes
    return torch.cat(sources).to(data.x.device)


def check_generator(generator: object, owner: str) -> None:
    """Raise a ``TypeError`` naming ``owner`` unless ``generator`` is ``None`` or a ``torch.Generator``
    (a seed given in its place failed inside torch, naming nothing)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{owner}: generator must be a torch.Generator (torch.Generator().manual_seed(seed)), got {generator!r}"
        )
