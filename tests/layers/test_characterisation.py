"""The characterisation of equivariant affine maps (docs/layers.md), checked numerically (no layer needed).

Three independent sources must agree: the numerical null space of the permutation
constraints, the formula evaluated on objects computed from the widths, and the
values in the dimension table of docs/layers.md.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from wsgraph import mlp_to_graph, permute_hidden

from .weight_space_numerics import (
    FlatLayout,
    commutant_dimension,
    commutant_dimension_full,
    design_constant_dimension,
    design_linear_dimension,
    flat_from_graph,
    flats_from_graph,
    graph_from_flat,
    hidden_generators,
    invariant_dimension,
    orbit_linear_dimension,
    permutation_source,
    single_threaded,
    weight_space_objects,
)

# docs/layers.md, "What it computes": widths, linear dimension, constant dimension.
PUBLISHED_TABLE = [
    ((2, 3, 4, 2), 114, 9),
    ((1, 2, 1), 25, 4),
    ((3, 2, 2), 100, 8),
    ((2, 3, 1), 41, 5),
    ((2, 2, 2, 2, 1), 117, 9),
    ((2, 3), 81, 9),
    ((3, 4, 5, 2), 142, 10),
]
# Some hidden d_k = 1: "equal" and "different" indices coincide in that layer.
WIDTH_ONE_ARCHITECTURES = [(2, 1, 3), (2, 1, 1, 2), (1, 1, 2, 1), (3, 1, 2, 2), (2, 2, 1, 3, 1)]
# A rank decision is trusted only when the smallest kept singular value exceeds the
# tolerance by this factor (it is ~1e11 or more in practice).
MIN_RANK_GAP = 1e6


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


@pytest.mark.parametrize(("widths", "linear", "constant"), PUBLISHED_TABLE)
def test_null_space_matches_formula_and_table(widths, linear, constant):
    size = FlatLayout(widths).size
    generators = hidden_generators(widths)
    null_space = commutant_dimension(generators, size)
    invariants = invariant_dimension(generators, size)
    assert null_space.min_gap > MIN_RANK_GAP
    assert invariants.min_gap > MIN_RANK_GAP
    assert null_space.dim == design_linear_dimension(widths) == linear
    assert invariants.dim == design_constant_dimension(widths) == constant


@pytest.mark.parametrize("widths", [w for w, _, _ in PUBLISHED_TABLE if FlatLayout(w).size <= 25])
def test_blocked_null_space_equals_full_kronecker_null_space(widths):
    size = FlatLayout(widths).size
    generators = hidden_generators(widths)
    full = commutant_dimension_full(generators, size)
    assert full.min_gap > MIN_RANK_GAP
    assert full.dim == commutant_dimension(generators, size).dim


@pytest.mark.parametrize("widths", WIDTH_ONE_ARCHITECTURES)
def test_hidden_width_one_drops_below_design_formula(widths):
    size = FlatLayout(widths).size
    generators = hidden_generators(widths)
    null_space = commutant_dimension(generators, size)
    full = commutant_dimension_full(generators, size)
    assert null_space.dim == full.dim == orbit_linear_dimension(widths)
    assert null_space.dim < design_linear_dimension(widths)
    assert invariant_dimension(generators, size).dim == design_constant_dimension(widths)


def test_objects_fold_non_permuted_indices():
    objects = {obj.name: obj for obj in weight_space_objects((3, 4, 5, 2))}
    assert (objects["W1"].permuted, objects["W1"].fold) == ((1,), 3)
    assert (objects["W2"].permuted, objects["W2"].fold) == ((1, 2), 1)
    assert (objects["W3"].permuted, objects["W3"].fold) == ((2,), 2)
    assert (objects["b2"].permuted, objects["b2"].fold) == ((2,), 1)
    assert (objects["b3"].permuted, objects["b3"].fold) == ((), 2)
    single_layer = {obj.name: obj for obj in weight_space_objects((2, 3))}
    assert (single_layer["W1"].permuted, single_layer["W1"].fold) == ((), 6)
    assert (single_layer["b1"].permuted, single_layer["b1"].fold) == ((), 3)


def _mlp(widths, seed=0):
    torch.manual_seed(seed)
    layers = []
    for position, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out, dtype=torch.float64))
        if position < len(widths) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def _run_flat(flat, widths, inputs):
    """The MLP (tanh between layers) whose parameters are ``flat`` ``[D]``, in wsgraph's layout."""
    layout = FlatLayout(widths)
    hidden = inputs
    batched = flat.view(1, -1, 1)
    for layer in range(1, layout.num_weight_layers + 1):
        hidden = hidden @ layout.weight(batched, layer)[0, ..., 0] + layout.bias(batched, layer)[0, :, 0]
        if layer < layout.num_weight_layers:
            hidden = torch.tanh(hidden)
    return hidden


@pytest.mark.parametrize("widths", [(2, 3, 4, 2), (3, 1, 2), (2, 5)])
def test_flat_layout_matches_nn_linear(widths):
    mlp = _mlp(widths)
    flat = flat_from_graph(mlp_to_graph(mlp))[0, :, 0]
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    expected = torch.cat([m.weight.T.reshape(-1) for m in linears] + [m.bias for m in linears])
    assert torch.equal(flat, expected)
    inputs = torch.randn(7, widths[0], dtype=torch.float64)
    torch.testing.assert_close(_run_flat(flat, widths, inputs), mlp(inputs), rtol=1e-13, atol=1e-13)


def test_flat_graph_round_trip_and_label_based_reading():
    widths = (2, 3, 4, 2)
    flat = torch.randn(3, FlatLayout(widths).size, 2, dtype=torch.float64)
    batch = graph_from_flat(flat, widths)
    assert torch.equal(flat_from_graph(batch), flat)
    shuffled = batch.clone()
    order = torch.randperm(batch.num_edges)
    shuffled.edge_index, shuffled.edge_attr = batch.edge_index[:, order], batch.edge_attr[order]
    shuffled.edge_layer = batch.edge_layer[order]
    assert torch.equal(flat_from_graph(shuffled), flat)
    broken = batch.clone()
    broken.edge_index = batch.edge_index[:, 1:]
    broken.edge_attr, broken.edge_layer = batch.edge_attr[1:], batch.edge_layer[1:]
    with pytest.raises(ValueError, match="exactly once"):
        flat_from_graph(broken)


def test_flats_from_mixed_width_batch():
    from torch_geometric.data import Batch

    specs = [(2, 3, 1), (2, 1, 1), (2, 4, 1)]
    flats = [torch.randn(FlatLayout(w).size, 1, dtype=torch.float64) for w in specs]
    graphs = [graph_from_flat(f.unsqueeze(0), w).to_data_list()[0] for f, w in zip(flats, specs)]
    read = flats_from_graph(Batch.from_data_list(graphs))
    assert all(torch.equal(a, b) for a, b in zip(read, flats))


def _random_hidden_perms(widths, generator):
    return [torch.randperm(widths[k], generator=generator) for k in range(1, len(widths) - 1)]


@pytest.mark.parametrize("widths", [(2, 3, 4, 2), (1, 5, 1), (2, 3, 1, 4, 2)])
def test_permutation_representation_is_the_network_symmetry(widths):
    generator = torch.Generator().manual_seed(1)
    mlp = _mlp(widths, seed=2)
    graph = mlp_to_graph(mlp)
    perms = _random_hidden_perms(widths, generator)
    source = permutation_source(widths, {k: p.tolist() for k, p in enumerate(perms, start=1)})
    flat = flat_from_graph(graph)[0, :, 0]
    assert torch.equal(flat_from_graph(permute_hidden(graph, perms=perms))[0, :, 0], flat[source])
    assert not torch.equal(flat[source], flat)
    inputs = torch.randn(11, widths[0], dtype=torch.float64)
    torch.testing.assert_close(_run_flat(flat[source], widths, inputs), mlp(inputs), rtol=1e-13, atol=1e-13)


def test_half_applied_permutation_is_not_a_symmetry():
    widths = (2, 3, 4, 2)
    mlp = _mlp(widths, seed=3)
    flat = flat_from_graph(mlp_to_graph(mlp))[0, :, 0]
    broken = permutation_source(widths, {1: [1, 2, 0]}, objects={"W1", "b1"})
    inputs = torch.randn(11, widths[0], dtype=torch.float64)
    assert (_run_flat(flat[broken], widths, inputs) - mlp(inputs)).abs().max() > 1e-3
