"""Numerical reference for the hidden-neuron symmetry of MLP weight spaces (test helper).

Everything here is computed from the layer widths alone, independently of
:mod:`wsgraph.layers`, so tests can hold the DWS layer against it:

* a flat layout of the weight space, all weights ``W_1..W_M`` (row-major over
  wsgraph's ``[d_{l-1}, d_l]``) then all biases ``b_1..b_M``, with ``C`` channels
  (``[B, D, C]``), and conversion to and from graphs;
* the permutation representation of the symmetry group on that layout;
* the dimension of the space of equivariant linear maps (the commutant), as the
  numerical null space of the stacked constraints ``(P_g ⊗ P_g - I) vec(A) = 0``;
* the dimension of the invariant vectors (``P_g c = c``);
* the dimension formula of docs/layers.md, from the list of weight-space objects.

Rank decisions use :func:`numerical_rank`, which also reports the gap between the
kept and the discarded singular values so a test can assert that the decision is
unambiguous.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import Tensor
from torch_geometric.data import Batch, Data

from wsgraph.core.graph import assemble

Widths = tuple[int, ...]


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread each.

    The tensors of these tests are tiny, so extra threads only add synchronisation; on a
    small machine shared with other jobs they oversubscribe the cores and make the
    operator extraction 10-25x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class WeightSpaceObject:
    """One weight matrix or bias vector after folding its non-permuted indices into channels.

    Attributes:
        name: ``"W<l>"`` or ``"b<l>"``.
        layer: the weight layer ``l`` (``1..M``).
        permuted: the hidden layers (``1..M-1``) whose neuron index this object carries.
        fold: the product of the widths of its non-permuted indices (input/output layers).
    """

    name: str
    layer: int
    permuted: tuple[int, ...]
    fold: int


def weight_space_objects(widths: Sequence[int]) -> list[WeightSpaceObject]:
    """The objects ``W_1..W_M, b_1..b_M`` of docs/layers.md, with their permuted layers and fold factors."""
    widths = tuple(widths)
    num_weight_layers = len(widths) - 1
    hidden = set(range(1, num_weight_layers))
    objects = []
    for layer in range(1, num_weight_layers + 1):
        indices = (layer - 1, layer)
        permuted = tuple(k for k in indices if k in hidden)
        fold = int(np.prod([widths[k] for k in indices if k not in hidden]))
        objects.append(WeightSpaceObject(f"W{layer}", layer, permuted, fold))
    for layer in range(1, num_weight_layers + 1):
        permuted = (layer,) if layer in hidden else ()
        fold = 1 if layer in hidden else widths[layer]
        objects.append(WeightSpaceObject(f"b{layer}", layer, permuted, fold))
    return objects


def design_linear_dimension(widths: Sequence[int]) -> int:
    r"""The count of docs/layers.md: :math:`\sum_{X, Y} 2^{|S|} f(X) f(Y)` with :math:`S = I(X) \cap I(Y)`."""
    objects = weight_space_objects(widths)
    return sum(
        2 ** len(set(x.permuted) & set(y.permuted)) * x.fold * y.fold for x, y in itertools.product(objects, objects)
    )


def orbit_linear_dimension(widths: Sequence[int]) -> int:
    r"""The same count with each shared layer ``k`` contributing its number of index-pair orbits.

    :math:`S_{d_k}` has two orbits on :math:`[d_k]^2` (equal / different indices) when
    :math:`d_k \ge 2` and one when :math:`d_k = 1`; the formula's :math:`2^{|S|}` assumes two.
    """
    widths = tuple(widths)
    objects = weight_space_objects(widths)
    return sum(
        int(np.prod([min(widths[k], 2) for k in set(x.permuted) & set(y.permuted)], dtype=np.int64)) * x.fold * y.fold
        for x, y in itertools.product(objects, objects)
    )


def design_constant_dimension(widths: Sequence[int]) -> int:
    r"""The count of invariant constants (docs/layers.md): :math:`\sum_Y f(Y)`."""
    return sum(obj.fold for obj in weight_space_objects(widths))


@dataclass(frozen=True)
class FlatLayout:
    """Positions of every weight and bias in the flat vector: weights ``W_1..W_M``, then biases ``b_1..b_M``.

    ``W_l[i, j]`` (neuron ``i`` of layer ``l-1`` to neuron ``j`` of layer ``l``) sits at
    ``weight_offsets[l] + i * d_l + j``; ``b_l[j]`` at ``bias_offsets[l] + j``.
    """

    widths: Widths

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))

    @property
    def num_weight_layers(self) -> int:
        return len(self.widths) - 1

    @cached_property
    def weight_offsets(self) -> dict[int, int]:
        offsets, position = {}, 0
        for layer in range(1, self.num_weight_layers + 1):
            offsets[layer] = position
            position += self.widths[layer - 1] * self.widths[layer]
        return offsets

    @cached_property
    def bias_offsets(self) -> dict[int, int]:
        offsets, position = {}, self.num_weights
        for layer in range(1, self.num_weight_layers + 1):
            offsets[layer] = position
            position += self.widths[layer]
        return offsets

    @property
    def num_weights(self) -> int:
        return sum(self.widths[layer - 1] * self.widths[layer] for layer in range(1, self.num_weight_layers + 1))

    @property
    def size(self) -> int:
        """``D``, the number of weights plus biases."""
        return self.num_weights + sum(self.widths[1:])

    def weight(self, flat: Tensor, layer: int) -> Tensor:
        """``W_l`` as ``[B, d_{l-1}, d_l, C]`` from ``flat`` ``[B, D, C]``."""
        rows, cols = self.widths[layer - 1], self.widths[layer]
        start = self.weight_offsets[layer]
        return flat[:, start : start + rows * cols].reshape(flat.size(0), rows, cols, flat.size(2))

    def bias(self, flat: Tensor, layer: int) -> Tensor:
        """``b_l`` as ``[B, d_l, C]`` from ``flat`` ``[B, D, C]``."""
        start = self.bias_offsets[layer]
        return flat[:, start : start + self.widths[layer]]

    def coordinates(self) -> list[tuple[str, int, tuple[int, ...]]]:
        """Per flat position: ``("W" | "b", l, neuron indices)`` (``(i, j)`` for a weight, ``(j,)`` for a bias)."""
        coords: list[tuple[str, int, tuple[int, ...]]] = []
        for layer in range(1, self.num_weight_layers + 1):
            for i, j in itertools.product(range(self.widths[layer - 1]), range(self.widths[layer])):
                coords.append(("W", layer, (i, j)))
        for layer in range(1, self.num_weight_layers + 1):
            coords.extend(("b", layer, (j,)) for j in range(self.widths[layer]))
        return coords

    def position(self, kind: str, layer: int, neurons: tuple[int, ...]) -> int:
        if kind == "W":
            i, j = neurons
            return self.weight_offsets[layer] + i * self.widths[layer] + j
        return self.bias_offsets[layer] + neurons[0]


def permutation_source(
    widths: Sequence[int],
    layer_perms: Mapping[int, Sequence[int]],
    objects: Iterable[str] | None = None,
) -> np.ndarray:
    """The flat positions a neuron permutation reads from: ``permuted[p] = flat[source[p]]``.

    Args:
        widths: ``d_0..d_M``.
        layer_perms: for some layers ``k`` (``0..M``; hidden ones for a symmetry), a
            permutation of ``range(d_k)``: new neuron ``j`` is old neuron ``perm[j]``, the
            convention of :func:`wsgraph.permute_hidden`.
        objects: restrict the permutation to these objects (``"W2"``, ``"b1"``, ...); the
            others keep their values. ``None`` (all objects) gives a symmetry when only
            hidden layers are permuted; anything else builds permutations that are not.
    """
    layout = FlatLayout(tuple(widths))
    perms = {k: np.asarray(p, dtype=np.int64) for k, p in layer_perms.items()}
    for k, perm in perms.items():
        if sorted(perm.tolist()) != list(range(layout.widths[k])):
            raise ValueError(f"layer {k}: {perm.tolist()} is not a permutation of range({layout.widths[k]})")
    selected = None if objects is None else set(objects)
    source = np.empty(layout.size, dtype=np.int64)
    for position, (kind, layer, neurons) in enumerate(layout.coordinates()):
        if selected is not None and f"{kind}{layer}" not in selected:
            source[position] = position
            continue
        layers = (layer - 1, layer) if kind == "W" else (layer,)
        moved = tuple(int(perms[k][n]) if k in perms else n for k, n in zip(layers, neurons))
        source[position] = layout.position(kind, layer, moved)
    return source


def hidden_generators(widths: Sequence[int]) -> list[np.ndarray]:
    """Sources of the adjacent transpositions ``(a, a+1)`` of every hidden layer: they generate the group."""
    widths = tuple(widths)
    generators = []
    for k in range(1, len(widths) - 1):
        for a in range(widths[k] - 1):
            perm = list(range(widths[k]))
            perm[a], perm[a + 1] = perm[a + 1], perm[a]
            generators.append(permutation_source(widths, {k: perm}))
    return generators


def permutation_matrix(source: np.ndarray) -> np.ndarray:
    """``P`` with ``(P v)[p] = v[source[p]]``."""
    matrix = np.zeros((source.size, source.size))
    matrix[np.arange(source.size), source] = 1.0
    return matrix


@dataclass(frozen=True)
class RankResult:
    """A numerical rank and the evidence for it.

    Attributes:
        rank: the number of singular values above ``tol``.
        tol: ``max(m, n) * eps * sigma_max``, LAPACK's backward-error scale for the SVD.
        smallest_kept: the smallest singular value counted (``inf`` when the rank is 0).
        largest_dropped: the largest one not counted (``0`` when the rank is full).
    """

    rank: int
    tol: float
    smallest_kept: float
    largest_dropped: float

    @property
    def gap(self) -> float:
        """How far the decision is from ambiguous: ``smallest_kept / tol``."""
        return self.smallest_kept / self.tol if self.tol > 0 else float("inf")


def numerical_rank(matrix: np.ndarray) -> RankResult:
    """The rank of ``matrix`` from its float64 singular values.

    The computed singular values differ from the exact ones by at most a small multiple
    of ``eps * ||matrix||_2``, so values below ``max(m, n) * eps * sigma_max`` are
    indistinguishable from zero; callers assert that :attr:`RankResult.gap` is large,
    i.e. that no singular value lies near that threshold.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.size == 0:
        return RankResult(0, 0.0, float("inf"), 0.0)
    singular = np.linalg.svd(matrix, compute_uv=False)
    tol = max(matrix.shape) * np.finfo(np.float64).eps * float(singular[0])
    rank = int((singular > tol).sum())
    smallest_kept = float(singular[rank - 1]) if rank > 0 else float("inf")
    largest_dropped = float(singular[rank]) if rank < singular.size else 0.0
    return RankResult(rank, tol, smallest_kept, largest_dropped)


@dataclass(frozen=True)
class NullSpaceResult:
    """``dim``: the null-space dimension; ``min_gap``: the smallest :attr:`RankResult.gap` of the rank decisions."""

    dim: int
    min_gap: float


def commutant_dimension_full(generators: Sequence[np.ndarray], size: int) -> NullSpaceResult:
    r"""Null space of :math:`\operatorname{vstack}_g (P_g \otimes P_g - I)` acting on row-major :math:`\operatorname{vec}(A)`.

    :math:`(P \otimes P)\operatorname{vec}(A) = \operatorname{vec}(P A P^\top)`, so the
    null space is :math:`\{A : P_g A = A P_g\ \forall g\}`. Dense, ``size**2`` unknowns:
    for small weight spaces only; :func:`commutant_dimension` is the blocked version.
    """
    return _constraint_null_space(generators, generators, size, size)


def commutant_dimension(generators: Sequence[np.ndarray], size: int) -> NullSpaceResult:
    r"""The same null space, block by block over the orbits of the generated group.

    Every :math:`P_g` maps each orbit :math:`U_a` of coordinates onto itself, so
    :math:`P_g = \bigoplus_a P_g|_{U_a}` and :math:`A P_g = P_g A` splits into the
    independent constraints :math:`P_g|_{U_a} A_{ab} = A_{ab} P_g|_{U_b}` on the blocks
    :math:`A_{ab}`; the null space is their direct sum. Exact, and small enough for
    weight spaces of a few hundred coordinates.
    """
    orbits = coordinate_orbits(generators, size)
    local = []
    for orbit in orbits:
        position = {int(p): n for n, p in enumerate(orbit)}
        local.append([np.array([position[int(s)] for s in g[orbit]], dtype=np.int64) for g in generators])
    dim, min_gap = 0, float("inf")
    for a, b in itertools.product(range(len(orbits)), repeat=2):
        block = _constraint_null_space(local[a], local[b], orbits[a].size, orbits[b].size)
        dim += block.dim
        min_gap = min(min_gap, block.min_gap)
    return NullSpaceResult(dim, min_gap)


def _constraint_null_space(
    row_generators: Sequence[np.ndarray], col_generators: Sequence[np.ndarray], rows: int, cols: int
) -> NullSpaceResult:
    # Why the rank decision is safe: with K the stacked constraints, K^T K = sum_g (2I - Q_g - Q_g^T)
    # is the Laplacian of the graph joining each unknown to its images under the generators.
    # On a connected component of m vertices its smallest nonzero eigenvalue is at least
    # 4 / (m * diameter) >= 4 / m^2 (Mohar 1991), so every nonzero singular value of K is
    # >= 2 / m >= 2 / unknowns (>= 7e-4 here), while rounding moves singular values by
    # ~eps * ||K||_2 <= eps * 2 * sqrt(#generators): a gap of more than ten orders of magnitude.
    unknowns = rows * cols
    if not row_generators:
        return NullSpaceResult(unknowns, float("inf"))
    identity = np.eye(unknowns)
    constraints = np.concatenate(
        [
            np.kron(permutation_matrix(g_row), permutation_matrix(g_col)) - identity
            for g_row, g_col in zip(row_generators, col_generators)
        ]
    )
    result = numerical_rank(constraints)
    return NullSpaceResult(unknowns - result.rank, result.gap)


def coordinate_orbits(generators: Sequence[np.ndarray], size: int) -> list[np.ndarray]:
    """The orbits of the group generated by ``generators`` on ``range(size)``, each sorted."""
    parent = list(range(size))

    def root(p: int) -> int:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for generator in generators:
        for p, q in enumerate(generator.tolist()):
            parent[root(p)] = root(q)
    groups: dict[int, list[int]] = {}
    for p in range(size):
        groups.setdefault(root(p), []).append(p)
    return [np.array(members, dtype=np.int64) for members in groups.values()]


def invariant_dimension(generators: Sequence[np.ndarray], size: int) -> NullSpaceResult:
    """Null space of ``vstack_g (P_g - I)``: the constant vectors an equivariant affine map may add."""
    if not generators:
        return NullSpaceResult(size, float("inf"))
    constraints = np.concatenate([permutation_matrix(g) - np.eye(size) for g in generators])
    result = numerical_rank(constraints)
    return NullSpaceResult(size - result.rank, result.gap)


def graph_from_flat(flat: Tensor, widths: Sequence[int]) -> Batch:
    """The batch of graphs (built by :func:`wsgraph.core.graph.assemble`) of ``flat`` ``[B, D, C]``."""
    layout = FlatLayout(tuple(widths))
    if flat.dim() != 3 or flat.size(1) != layout.size:
        raise ValueError(f"expected [B, {layout.size}, C] for widths {layout.widths}, got {tuple(flat.shape)}")
    layers = range(1, layout.num_weight_layers + 1)
    return assemble([layout.weight(flat, layer) for layer in layers], [layout.bias(flat, layer) for layer in layers])


def flat_from_graph(data: Data) -> Tensor:
    """``[B, D, C]`` from a graph or a one-architecture batch; see :func:`flats_from_graph`."""
    flats = flats_from_graph(data)
    if len({flat.size(0) for flat in flats}) != 1 or not bool((data.layer_widths == data.layer_widths[:1]).all()):
        raise ValueError("flat_from_graph needs networks of one architecture; use flats_from_graph")
    return torch.stack(flats)


def flats_from_graph(data: Data) -> list[Tensor]:
    """One ``[D_b, C]`` flat vector per network of a graph or batch (hidden widths may differ).

    Read through the labels, not the order: every weight is placed by ``edge_layer`` and
    the ``node_index`` of its endpoints, every bias by ``node_layer``/``node_index``, so
    the result does not depend on the canonical node and edge order (nor on
    ``to_data_list``). Raises unless each position is written exactly once.
    """
    widths = data.layer_widths
    node_graph = data.batch if getattr(data, "batch", None) is not None else torch.zeros_like(data.node_layer)
    src, dst = data.edge_index
    edge_layer, node_layer, node_index = data.edge_layer, data.node_layer, data.node_index
    if not (bool((node_layer[src] == edge_layer - 1).all()) and bool((node_layer[dst] == edge_layer).all())):
        raise ValueError("an edge does not join layer l-1 to layer l of its edge_layer l")
    if not bool((node_graph[src] == node_graph[dst]).all()):
        raise ValueError("an edge joins two networks")

    weight_sizes = widths[:, :-1] * widths[:, 1:]
    weight_start = _starts_by_layer(weight_sizes)
    bias_start = weight_sizes.sum(1, keepdim=True) + _starts_by_layer(widths[:, 1:])
    sizes = weight_sizes.sum(1) + widths[:, 1:].sum(1)
    network_start = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])

    edge_graph = node_graph[src]
    edge_slot = (
        network_start[edge_graph]
        + weight_start[edge_graph, edge_layer]
        + node_index[src] * widths[edge_graph, edge_layer]
        + node_index[dst]
    )
    is_bias = node_layer > 0
    bias_graph = node_graph[is_bias]
    bias_slot = network_start[bias_graph] + bias_start[bias_graph, node_layer[is_bias]] + node_index[is_bias]

    slots = torch.cat([edge_slot, bias_slot])
    total = int(sizes.sum())
    counts = torch.bincount(slots, minlength=total)
    if counts.numel() != total or not bool((counts == 1).all()):
        raise ValueError("the graph does not hold every weight and bias exactly once")
    values = torch.cat([data.edge_attr, data.x[is_bias]])
    flat = values.new_zeros(total, values.size(1))
    flat[slots] = values
    return list(flat.split(sizes.tolist()))


def _starts_by_layer(sizes: Tensor) -> Tensor:
    """Per-layer sizes ``[B, M]`` (layers ``1..M``) -> ``[B, M + 1]`` start of layer ``l`` in column ``l``."""
    return torch.cat([sizes.new_zeros(sizes.size(0), 2), sizes.cumsum(1)[:, :-1]], dim=1)


def input_node_features(data: Data) -> Tensor:
    """The rows of ``x`` of the input neurons (layer 0), which are not part of the weight space."""
    return data.x[data.node_layer == 0]


def random_hidden_perms(widths: Sequence[int], generator: torch.Generator) -> list[Tensor]:
    """One random permutation per hidden layer (``perms[k-1]`` of ``d_k``), never the identity where ``d_k >= 2``."""
    perms = []
    for width in widths[1:-1]:
        perm = torch.randperm(width, generator=generator)
        while width > 1 and torch.equal(perm, torch.arange(width)):
            perm = torch.randperm(width, generator=generator)
        perms.append(perm)
    return perms


def hidden_source(widths: Sequence[int], perms: Sequence[Tensor]) -> np.ndarray:
    """:func:`permutation_source` of the hidden permutations ``perms`` (as passed to :func:`wsgraph.permute_hidden`)."""
    return permutation_source(widths, {k: perm.tolist() for k, perm in enumerate(perms, start=1)})


def random_flat(num_networks: int, widths: Sequence[int], channels: int, generator: torch.Generator) -> Tensor:
    """Standard normal weight spaces ``[B, D, C]`` in float64."""
    size = FlatLayout(tuple(widths)).size
    return torch.randn(num_networks, size, channels, generator=generator, dtype=torch.float64)
