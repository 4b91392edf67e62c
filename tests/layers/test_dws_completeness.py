"""DWSLayer spans exactly the equivariant affine maps (docs/layers.md, "What the tests prove" 1).

With one input and one output channel the layer is affine in its input and linear in
its parameters. For each parameter coordinate (all others zero) its operator ``v -> A v + c``
is read off the layer in float64: ``c`` from the zero input, the columns of ``A`` from
the basis vectors of the flat weight space. Every operator must commute with the
permutation representation (``A P_g = P_g A``, ``P_g c = c``), and the operators must
span the whole space: the rank of the ``A``s equals the null-space dimension of the
permutation constraints and the rank of the ``c``s the dimension of the invariant vectors.
Both backends are held to this, and must produce the same operators.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from wsgraph.layers import DWSLayer

from .weight_space_numerics import (
    FlatLayout,
    commutant_dimension,
    flat_from_graph,
    graph_from_flat,
    hidden_generators,
    input_node_features,
    invariant_dimension,
    numerical_rank,
    permutation_matrix,
    single_threaded,
)

# The dimension table of docs/layers.md plus hidden widths of one; M = 1, 2, 3 and 4.
ARCHITECTURES = [
    (2, 3),
    (1, 2, 1),
    (3, 2, 2),
    (2, 3, 1),
    (2, 1, 3),
    (2, 3, 4, 2),
    (2, 1, 2, 1),
    (2, 2, 2, 2, 1),
    (3, 4, 5, 2),
]
MIN_RANK_GAP = 1e6
# Operators are sums of a few products of means of O(1) values: float64 rounding is ~1e-16.
EQUIVARIANCE_ATOL = 1e-12


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def layer_operators(layer: DWSLayer, widths: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter coordinate ``p``: ``A_p`` ``[P, D, D]`` and ``c_p`` ``[P, D]`` in the flat layout."""
    size = FlatLayout(widths).size
    inputs = torch.cat([torch.zeros(1, size), torch.eye(size)]).to(torch.float64).unsqueeze(-1)
    batch = graph_from_flat(inputs, widths)
    parameters = list(layer.parameters())
    num_parameters = parameters_to_vector(parameters).numel()
    linear = np.empty((num_parameters, size, size))
    constant = np.empty((num_parameters, size))
    with torch.no_grad():
        for p in range(num_parameters):
            coordinate = torch.zeros(num_parameters, dtype=torch.float64)
            coordinate[p] = 1.0
            vector_to_parameters(coordinate, parameters)
            output = layer(batch)
            assert not input_node_features(output).any(), "input-neuron rows of the output must be zero"
            flat = flat_from_graph(output)[..., 0].numpy()
            constant[p] = flat[0]
            linear[p] = (flat[1:] - flat[0]).T
    return linear, constant


def _fresh_layer(widths: tuple[int, ...], backend: str) -> DWSLayer:
    torch.manual_seed(0)
    return DWSLayer(1, 1, len(widths) - 1, widths[0], widths[-1], backend=backend).double()


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=lambda w: "-".join(map(str, w)))
def operators(request):
    """Operators of both backends of one architecture (computed once, used by several tests)."""
    widths = request.param
    return widths, {backend: layer_operators(_fresh_layer(widths, backend), widths) for backend in ("scatter", "dense")}


@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_every_operator_is_equivariant(operators, backend):
    widths, by_backend = operators
    linear, constant = by_backend[backend]
    generators = hidden_generators(widths)
    for source in generators:
        perm = permutation_matrix(source)
        commutator = np.abs(linear @ perm - perm @ linear).max()
        assert commutator <= EQUIVARIANCE_ATOL, f"{widths}: max |A P - P A| = {commutator:.3e}"
        moved = np.abs(constant @ perm.T - constant).max()
        assert moved <= EQUIVARIANCE_ATOL, f"{widths}: max |P c - c| = {moved:.3e}"


@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_operators_span_all_equivariant_affine_maps(operators, backend):
    widths, by_backend = operators
    linear, constant = by_backend[backend]
    size = FlatLayout(widths).size
    generators = hidden_generators(widths)
    expected_linear = commutant_dimension(generators, size)
    expected_constant = invariant_dimension(generators, size)

    linear_rank = numerical_rank(linear.reshape(linear.shape[0], -1))
    constant_rank = numerical_rank(constant)
    assert linear_rank.gap > MIN_RANK_GAP and constant_rank.gap > MIN_RANK_GAP, (linear_rank, constant_rank)
    assert linear_rank.rank == expected_linear.dim, f"{widths}: linear span {linear_rank} vs {expected_linear.dim}"
    assert constant_rank.rank == expected_constant.dim, f"{widths}: constants {constant_rank} vs {expected_constant}"


def test_backends_give_the_same_operators(operators):
    _, by_backend = operators
    for scatter_part, dense_part in zip(by_backend["scatter"], by_backend["dense"]):
        np.testing.assert_allclose(scatter_part, dense_part, rtol=0, atol=1e-13)


@pytest.mark.parametrize("widths", [(2, 3, 4, 2), (2, 1, 3), (2, 3)])
def test_operators_reproduce_the_layer(widths):
    """The extracted operators are the layer: affine in the input, linear in the parameters."""
    layer = _fresh_layer(widths, "scatter")
    theta = parameters_to_vector(layer.parameters()).detach().clone()
    linear, constant = layer_operators(layer, widths)
    vector_to_parameters(theta, layer.parameters())
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(4, FlatLayout(widths).size, 1, dtype=torch.float64, generator=generator)
    with torch.no_grad():
        output = flat_from_graph(layer(graph_from_flat(inputs, widths)))[..., 0].numpy()
    theta_np = theta.numpy()
    expected = np.einsum("p,pij,bj->bi", theta_np, linear, inputs[..., 0].numpy()) + theta_np @ constant
    np.testing.assert_allclose(output, expected, rtol=1e-10, atol=1e-12)
