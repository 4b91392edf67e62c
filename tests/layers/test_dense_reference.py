"""The scatter DWSLayer against the dense reference written term by term from the characterisation.

The reference (:mod:`wsgraph.layers.dense_reference`) shares nothing with the layer but
its parameters, so unlike the scatter == dense agreement test (both backends run one
``forward_features``), these tests fail when a term, a fold or a normalisation of the
layer's shared code is wrong. Every parameter is drawn at random (the default init sets
``graph_lin``'s bias to zero), and the tests check that every term and every parameter
tensor changes the output, so no agreement is vacuous.
"""

from __future__ import annotations

import copy
import itertools
import math

import pytest
import torch

from wsgraph.core.dense import from_dense_weights, to_dense_weights
from wsgraph.layers import DWSLayer, dws
from wsgraph.layers.dense_reference import (
    Term,
    dws_layer_dense_reference,
    dws_layer_dense_terms,
    dws_terms,
    fixed_layers,
    neuron_layers,
    object_constant,
    object_names,
    term_coefficients,
)
from wsgraph.layers.ops import WeightSpaceOps, network_pools

from .test_dws_completeness import ARCHITECTURES as COMPLETENESS_ARCHITECTURES
from .weight_space_numerics import single_threaded

# The completeness test's architectures (M = 1..4), M = 5, and widths of one everywhere.
ARCHITECTURES = [
    *COMPLETENESS_ARCHITECTURES,
    (2, 4, 3, 2, 5, 1),
    (3, 1, 2, 3, 2, 2),
    (1, 2, 1, 3, 1, 2),
    (1, 1),
    (1, 1, 1),
]
CHANNELS = [(2, 3), (1, 1), (3, 2)]
CASES = [(widths, *CHANNELS[n % len(CHANNELS)]) for n, widths in enumerate(ARCHITECTURES)]
NUM_NETWORKS = 3
RTOL, ATOL = 1e-10, 1e-12
# A term or parameter counts as seen when it moves the output by this fraction of its scale.
VISIBLE = 1e-3


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _ids(case):
    return "-".join(map(str, case[0])) + f"/{case[1]}to{case[2]}"


def random_layer(widths, in_channels, out_channels, seed=0) -> DWSLayer:
    """A float64 layer with every parameter standard normal, so that no term is switched off."""
    layer = DWSLayer(in_channels, out_channels, len(widths) - 1, widths[0], widths[-1]).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return layer


def random_inputs(widths, channels, seed=1):
    generator = torch.Generator().manual_seed(seed)
    pairs = list(itertools.pairwise(widths))
    weights = [torch.randn(NUM_NETWORKS, a, b, channels, generator=generator, dtype=torch.float64) for a, b in pairs]
    biases = [torch.randn(NUM_NETWORKS, b, channels, generator=generator, dtype=torch.float64) for b in widths[1:]]
    return weights, biases


def layer_on_stacked(layer, weights, biases):
    """Run the layer on graphs built from stacked tensors and read its output back the same way."""
    output = to_dense_weights(layer(from_dense_weights(weights, biases)))
    return list(output.weights), list(output.biases)


def _outputs_and_gradients(function, layer, weights, biases, cotangents):
    """``function``'s outputs and the gradients of ``<cotangents, outputs>`` w.r.t. inputs and parameters."""
    inputs = [t.detach().clone().requires_grad_() for t in (*weights, *biases)]
    out_weights, out_biases = function(layer, inputs[: len(weights)], inputs[len(weights) :])
    outputs = [*out_weights, *out_biases]
    scalar = sum((output * cotangent).sum() for output, cotangent in zip(outputs, cotangents))
    parameters = [parameter for _, parameter in layer.named_parameters()]
    gradients = torch.autograd.grad(scalar, inputs + parameters)
    return [output.detach() for output in outputs], gradients[: len(inputs)], gradients[len(inputs) :]


def _max_abs(tensors):
    return max(float(t.abs().max()) for t in tensors)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_scatter_layer_equals_the_reference_with_gradients(case):
    widths, in_channels, out_channels = case
    layer = random_layer(widths, in_channels, out_channels)
    weights, biases = random_inputs(widths, in_channels)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        reference = dws_layer_dense_reference(layer, weights, biases)
    cotangents = [
        torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in (*reference[0], *reference[1])
    ]

    expected = _outputs_and_gradients(dws_layer_dense_reference, layer, weights, biases, cotangents)
    actual = _outputs_and_gradients(layer_on_stacked, layer, weights, biases, cotangents)

    names = [f"W{n}" for n in range(1, len(weights) + 1)] + [f"b{n}" for n in range(1, len(biases) + 1)]
    parameter_names = [name for name, _ in layer.named_parameters()]
    for what, labels, actual_part, expected_part in zip(
        ("output", "input gradient", "parameter gradient"), (names, names, parameter_names), actual, expected
    ):
        for label, got, want in zip(labels, actual_part, expected_part, strict=True):
            assert want.abs().max() > 0, f"{what} {label} is zero in the reference: the comparison would be vacuous"
            torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL, msg=lambda m, w=what, n=label: f"{w} {n}: {m}")


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_every_term_moves_the_output(case):
    """Dropping any one term would break the agreement above: each contribution is far above its tolerance."""
    widths, in_channels, out_channels = case
    layer = random_layer(widths, in_channels, out_channels)
    weights, biases = random_inputs(widths, in_channels)
    with torch.no_grad():
        contributions = dws_layer_dense_terms(layer, weights, biases)
        scale = _max_abs([*weights, *biases])
    assert list(contributions) == dws_terms(len(widths) - 1)
    quiet = [term.name for term, value in contributions.items() if value.abs().max() < VISIBLE * scale]
    assert not quiet, f"terms without visible effect: {quiet}"


@pytest.mark.parametrize("widths", ARCHITECTURES, ids=lambda w: "-".join(map(str, w)))
def test_terms_and_constants_use_each_parameter_exactly_once(widths):
    """The terms' coefficients and the constants partition the layer's parameters, in the number
    docs/layers.md gives: ``sum_{X,Y} 2^|S| f(X) f(Y)`` linear and ``sum_Y f(Y)`` constant per channel pair."""
    in_channels, out_channels = 2, 3
    layer = random_layer(widths, in_channels, out_channels)
    num_weight_layers = len(widths) - 1
    with torch.no_grad():
        offset = 0
        for parameter in layer.parameters():
            parameter.copy_(torch.arange(offset, offset + parameter.numel(), dtype=torch.float64).view_as(parameter))
            offset += parameter.numel()
        used = [term_coefficients(layer, term, widths).reshape(-1) for term in dws_terms(num_weight_layers)]
        used += [object_constant(layer, name, widths).reshape(-1) for name in object_names(num_weight_layers)]
    ids = torch.cat(used).long()
    assert torch.equal(ids.sort().values, torch.arange(offset)), "a parameter is used twice or not at all"

    def fold(name):
        return math.prod(widths[k] for k in fixed_layers(name, num_weight_layers))

    def shared(x, y):
        return set(neuron_layers(x)) & set(neuron_layers(y)) & set(range(1, num_weight_layers))

    names = object_names(num_weight_layers)
    assert len(dws_terms(num_weight_layers)) == sum(2 ** len(shared(x, y)) for x in names for y in names)
    linear = sum(2 ** len(shared(x, y)) * fold(x) * fold(y) for x in names for y in names)
    assert offset == linear * in_channels * out_channels + sum(fold(y) for y in names) * out_channels


@pytest.mark.parametrize("widths", [(2, 3), (2, 1, 3), (2, 3, 4, 2), (2, 4, 3, 2, 5, 1)], ids=str)
def test_every_parameter_tensor_changes_the_reference(widths):
    """Perturbing any single parameter tensor moves the reference away from the unperturbed layer."""
    layer = random_layer(widths, 2, 3)
    weights, biases = random_inputs(widths, 2)
    with torch.no_grad():
        expected = layer_on_stacked(layer, weights, biases)
        for name, _ in layer.named_parameters():
            mutated = copy.deepcopy(layer)
            parameter = mutated.get_parameter(name)
            parameter.add_(
                torch.randn(parameter.shape, generator=torch.Generator().manual_seed(5), dtype=parameter.dtype)
            )
            got = dws_layer_dense_reference(mutated, weights, biases)
            change = _max_abs([a - b for a, b in zip([*got[0], *got[1]], [*expected[0], *expected[1]])])
            assert change > VISIBLE * _max_abs([*expected[0], *expected[1]]), f"perturbing {name} changed nothing"


def _swapped_unfold_last(self, table):
    """A wrong fold of W_M: channels read as the slow index and output neurons as the fast one."""
    out_dim = self.layout.out_dim
    channels = table.size(-1) // out_dim
    return table.reshape(-1, channels, out_dim).transpose(1, 2).reshape(-1, channels)


def _summing_network_pools(ops, reduce="mean", incoming=None, outgoing=None):
    """A wrong normalisation of the T = {} terms: sums over hidden neurons instead of means."""
    return network_pools(ops, "sum", incoming, outgoing)


@pytest.mark.parametrize(
    "mutation",
    [
        pytest.param(lambda patch: patch.setattr(WeightSpaceOps, "unfold_last", _swapped_unfold_last), id="wrong-fold"),
        pytest.param(lambda patch: patch.setattr(dws, "network_pools", _summing_network_pools), id="sum-not-mean"),
    ],
)
def test_a_mistake_shared_by_both_backends_is_caught(monkeypatch, mutation):
    """The scatter and dense backends agree with each other on a wrong layer; the reference does not."""
    widths = (2, 3, 4, 2)
    layer = random_layer(widths, 2, 3)
    weights, biases = random_inputs(widths, 2)
    with torch.no_grad():
        reference = dws_layer_dense_reference(layer, weights, biases)
        mutation(monkeypatch)
        scatter = layer_on_stacked(layer, weights, biases)
        layer.backend = "dense"
        dense = layer_on_stacked(layer, weights, biases)
    flat = [*reference[0], *reference[1]]
    for got, want in zip([*dense[0], *dense[1]], [*scatter[0], *scatter[1]]):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    difference = _max_abs([a - b for a, b in zip([*scatter[0], *scatter[1]], flat)])
    assert difference > VISIBLE * _max_abs(flat)


def _permute_hidden(weights, biases, perms):
    """Neuron ``j`` of hidden layer ``k`` becomes neuron ``perms[k][j]`` of the old network, in every object."""
    weights, biases = list(weights), list(biases)
    for k, perm in perms.items():
        weights[k - 1] = weights[k - 1][:, :, perm]
        weights[k] = weights[k][:, perm]
        biases[k - 1] = biases[k - 1][:, perm]
    return weights, biases


@pytest.mark.parametrize("widths", [(2, 3, 4, 2), (1, 3, 1), (2, 4, 3, 2, 5, 1)], ids=str)
def test_the_reference_is_equivariant_and_not_blind_to_input_neurons(widths):
    layer = random_layer(widths, 2, 3)
    weights, biases = random_inputs(widths, 2)
    generator = torch.Generator().manual_seed(4)
    perms = {k: torch.randperm(widths[k], generator=generator) for k in range(1, len(widths) - 1)}
    with torch.no_grad():
        output = dws_layer_dense_reference(layer, weights, biases)
        permuted_output = dws_layer_dense_reference(layer, *_permute_hidden(weights, biases, perms))
        expected = _permute_hidden(*output, perms)
        for got, want in zip([*permuted_output[0], *permuted_output[1]], [*expected[0], *expected[1]]):
            torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
        if widths[0] > 1:
            # The input neurons are not a symmetry: permuting them must not commute with the layer.
            swap = torch.arange(widths[0]).roll(1)
            moved = [weights[0][:, swap], *weights[1:]]
            got = dws_layer_dense_reference(layer, moved, biases)[0][0]
            assert (got - output[0][0][:, swap]).abs().max() > VISIBLE * output[0][0].abs().max()


def test_inputs_that_do_not_fit_the_layer_are_refused():
    layer = random_layer((2, 3, 1), 2, 2)
    weights, biases = random_inputs((2, 3, 1), 2)
    with pytest.raises(ValueError, match="expected weights"):
        dws_layer_dense_reference(layer, [weights[0], weights[1].transpose(1, 2)], biases)
    with pytest.raises(ValueError, match="d_0 = 2"):
        dws_layer_dense_reference(layer, *random_inputs((3, 3, 1), 2))
    with pytest.raises(ValueError, match="2 weight layers"):
        dws_layer_dense_reference(layer, weights[:1], biases[:1])
    with pytest.raises(ValueError, match="weight layers"):
        dws_terms(0)


def test_term_equations_read_like_the_math():
    """W_1 -> W_1 keeping layer 1: input neuron i of W_1 is mapped to I, hidden neuron j is kept."""
    assert Term("W1", "W1", (1,)).equation(2) == "bijc,Idic->bIjd"
    # W_2 -> W_3 in a 4-layer network keeping layer 2: W_2 is averaged over layer 1 (j), W_3 copied along layer 3.
    assert Term("W2", "W3", (2,)).equation(4) == "bkc,dc->bkd"
    assert Term("W2", "W3", (2,)).name == "W2->W3 keep {2}"
