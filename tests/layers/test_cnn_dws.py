"""The DWS layer on CNN weight spaces (docs/layers.md, "CNN weight spaces").

* scatter == dense backend == the term-by-term dense reference, in float64, outputs and
  gradients, on one-architecture and mixed batches of conv-then-linear weight spaces;
* completeness: with the lift's maps fixed at a generic draw, the layer's operators (one
  per DWS parameter coordinate) are equivariant and span exactly
  :math:`\\mathrm{Hom}_G(V_{\\text{CNN}}, V_{\\text{out}})`, whose dimension is computed as
  the null space of the permutation constraints on the flat CNN weight space, where
  the group moves whole kernels and never the entries inside them;
* equivariance of the layer and of a stack behind it under channel permutations.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from wsgraph import batch_cnn_graphs, cnn_to_graph, permute_hidden
from wsgraph.core.convert_cnn import pad_kernel
from wsgraph.core.graph import assemble
from wsgraph.layers import CNNDWSLayer, DWSLayer
from wsgraph.layers.dense_reference import cnn_dws_layer_dense_reference

from .weight_space_numerics import (
    FlatLayout,
    _constraint_null_space,
    flat_from_graph,
    hidden_generators,
    input_node_features,
    invariant_dimension,
    numerical_rank,
    single_threaded,
    weight_space_objects,
)

# (widths, kernel sizes per weight layer, number of convolutions): M = 2, 3, 4.
ARCHITECTURES = [
    ((1, 3, 2), ((3, 3), (1, 1)), 1),
    ((2, 2, 3, 1), ((2, 2), (3, 1), (1, 1)), 2),
    ((1, 2, 2, 2, 2), ((1, 3), (2, 2), (1, 1), (1, 1)), 2),
]
MIN_RANK_GAP = 1e6
EQUIVARIANCE_ATOL = 1e-12


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _ids(case):
    return "-".join(map(str, case[0])) + "-k" + ",".join(f"{h}x{w}" for h, w in case[1][: case[2]])


def grid_of(kernels):
    return (max(h for h, _ in kernels), max(w for _, w in kernels))


def conv_metadata(batch_size, kernels, conv_layers):
    m = len(kernels)
    linear = [[1, 1]] * (m - conv_layers)
    rows = {
        "conv_layers": torch.tensor([conv_layers]),
        "kernel_size": torch.tensor([kernels]),
        "kernel_grid": torch.tensor([grid_of(kernels)]),
        "conv_stride": torch.tensor([[[1, 1]] * conv_layers + linear]),
        "conv_padding": torch.tensor([[[0, 0]] * conv_layers + [[0, 0]] * (m - conv_layers)]),
        "conv_dilation": torch.tensor([[[1, 1]] * conv_layers + linear]),
    }
    return {key: value.expand(batch_size, *value.shape[1:]).contiguous() for key, value in rows.items()}


def graph_from_kernels(weights, biases, kernels, conv_layers, grid=None):
    """The batch of CNN graphs of ``weights`` ``[B, d_in, d_out, kh*kw, C]`` and ``biases`` ``[B, d_out, C]``."""
    grid = grid or grid_of(kernels)
    padded = []
    for weight, (h, w) in zip(weights, kernels):
        batch, rows, cols, _, channels = weight.shape
        grid_kernels = pad_kernel(weight.view(batch, rows, cols, h, w, channels).movedim(-1, 3), grid)
        padded.append(grid_kernels.movedim(3, -1).reshape(batch, rows, cols, -1))
    meta = conv_metadata(weights[0].size(0), kernels, conv_layers)
    meta["kernel_grid"] = torch.tensor([grid]).expand(weights[0].size(0), 2).contiguous()
    return assemble(padded, list(biases), conv=meta)


def random_kernels(widths, kernels, channels, batch, seed):
    generator = torch.Generator().manual_seed(seed)
    weights = [
        torch.randn(batch, widths[layer - 1], widths[layer], h * w, channels, generator=generator, dtype=torch.float64)
        for layer, (h, w) in enumerate(kernels, start=1)
    ]
    biases = [torch.randn(batch, d, channels, generator=generator, dtype=torch.float64) for d in widths[1:]]
    return weights, biases


def fresh_layer(widths, kernels, in_channels, out_channels, backend="scatter", seed=0):
    torch.manual_seed(seed)
    layer = CNNDWSLayer(in_channels, out_channels, len(widths) - 1, widths[0], widths[-1], kernels, backend=backend)
    with torch.no_grad():  # random constants too, so that the reference's beta is checked
        layer.dws.graph_lin.bias.normal_()
    return layer.double()


def dense_output(data, widths):
    """The layer output's dense weights ``[B, d_in, d_out, C]`` and biases ``[B, d, C]``."""
    flat = flat_from_graph(data)
    layout = FlatLayout(widths)
    layers = range(1, len(widths))
    return [layout.weight(flat, layer) for layer in layers], [layout.bias(flat, layer) for layer in layers]


@pytest.mark.parametrize("case", ARCHITECTURES, ids=_ids)
@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_layer_equals_the_dense_reference_outputs_and_gradients(case, backend):
    widths, kernels, convs = case
    layer = fresh_layer(widths, kernels, 2, 3, backend)
    weights, biases = random_kernels(widths, kernels, 2, 3, seed=1)
    for tensor in (*weights, *biases):
        tensor.requires_grad_(True)
    graph = graph_from_kernels(weights, biases, kernels, convs)
    out_weights, out_biases = dense_output(layer(graph), widths)
    ref_weights, ref_biases = cnn_dws_layer_dense_reference(layer, weights, biases)
    for actual, expected in zip((*out_weights, *out_biases), (*ref_weights, *ref_biases), strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    generator = torch.Generator().manual_seed(2)
    seeds = [torch.randn(t.shape, generator=generator, dtype=torch.float64) for t in (*ref_weights, *ref_biases)]
    inputs = [*weights, *biases, *layer.parameters()]

    def gradients(outputs):
        loss = sum((o * s).sum() for o, s in zip(outputs, seeds))
        return torch.autograd.grad(loss, inputs, allow_unused=True)

    for actual, expected in zip(
        gradients([*out_weights, *out_biases]), gradients([*ref_weights, *ref_biases]), strict=True
    ):
        assert actual is not None and expected is not None
        torch.testing.assert_close(actual, expected, rtol=1e-11, atol=1e-11)


def test_mixed_batch_of_real_cnns_equals_the_reference_per_network():
    torch.manual_seed(0)
    cnns = [
        nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(3, 5)),
        nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Conv2d(2, 6, (3, 1)), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(6, 5)),
    ]  # fmt: skip
    graphs = [cnn_to_graph(cnn.double()) for cnn in cnns]
    kernels = [(3, 3), (3, 3), (1, 1)]
    layer = fresh_layer((2, None, None, 5), kernels, 1, 2)
    output = layer(batch_cnn_graphs(graphs))
    for index, (cnn, out) in enumerate(zip(cnns, output.to_data_list(), strict=True)):
        convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
        linear = cnn[-1]
        weights = [
            pad_kernel(c.weight.detach(), (3, 3)).permute(1, 0, 2, 3).reshape(1, c.in_channels, c.out_channels, 9, 1)
            for c in convs
        ]
        weights.append(linear.weight.detach().T.reshape(1, linear.in_features, linear.out_features, 1, 1))
        biases = [m.bias.detach().view(1, -1, 1) for m in (*convs, linear)]
        ref_weights, ref_biases = cnn_dws_layer_dense_reference(layer, weights, biases)
        widths = (2, convs[0].out_channels, convs[1].out_channels, 5)
        actual_weights, actual_biases = dense_output(out, widths)
        for actual, expected in zip((*actual_weights, *actual_biases), (*ref_weights, *ref_biases), strict=True):
            torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12, msg=f"network {index}")


def test_a_lift_reading_the_wrong_grid_entries_disagrees_with_the_reference(monkeypatch):
    widths, kernels, convs = ARCHITECTURES[1]
    layer = fresh_layer(widths, kernels, 1, 2)
    weights, biases = random_kernels(widths, kernels, 1, 2, seed=3)
    graph = graph_from_kernels(weights, biases, kernels, convs)
    monkeypatch.setattr("wsgraph.layers.cnn_dws.kernel_offset", lambda kernel, grid: (0, 0))
    out_weights, _ = dense_output(layer(graph), widths)
    ref_weights, _ = cnn_dws_layer_dense_reference(layer, weights, biases)
    assert max((a - b).abs().max() for a, b in zip(out_weights, ref_weights)) > 1e-3


def test_kernels_larger_than_the_layer_reads_are_refused():
    widths, kernels, convs = ARCHITECTURES[1]
    weights, biases = random_kernels(widths, kernels, 1, 1, seed=0)
    graph = graph_from_kernels(weights, biases, kernels, convs)
    layer = fresh_layer(widths, [(1, 1), (3, 1), (1, 1)], 1, 1)
    with pytest.raises(ValueError, match=r"network 0 has a \(2, 2\) kernel in weight layer 1"):
        layer(graph)


# Completeness ----------------------------------------------------------------------------


class ConvFlatLayout:
    """Flat CNN weight space: ``W_1..W_M`` as ``[d_{l-1}, d_l, kh*kw]`` row-major, then ``b_1..b_M``."""

    def __init__(self, widths, kernels):
        self.widths, self.kernels = tuple(widths), tuple(kernels)
        self.mlp = FlatLayout(self.widths)
        self.entries = np.array(
            [
                kh * kw
                for layer, (kh, kw) in enumerate(self.kernels, 1)
                for _ in range(widths[layer - 1] * widths[layer])
            ]
            + [1] * sum(self.widths[1:])
        )
        self.starts = np.concatenate([[0], np.cumsum(self.entries)[:-1]])
        self.size = int(self.entries.sum())

    def source(self, mlp_source):
        """The flat CNN positions a neuron permutation reads from: each weight moves with its whole kernel."""
        return np.concatenate([self.starts[s] + np.arange(n) for s, n in zip(mlp_source, self.entries)])

    def split(self, flat):
        """``[B, D]`` -> per layer ``[B, d_in, d_out, kh*kw, 1]`` and ``[B, d_out, 1]``."""
        weights, position = [], 0
        for layer, (kh, kw) in enumerate(self.kernels, 1):
            rows, cols = self.widths[layer - 1], self.widths[layer]
            size = rows * cols * kh * kw
            weights.append(flat[:, position : position + size].reshape(-1, rows, cols, kh * kw, 1))
            position += size
        biases = []
        for width in self.widths[1:]:
            biases.append(flat[:, position : position + width].reshape(-1, width, 1))
            position += width
        return weights, biases


def conv_operators(layer, widths, kernels, convs):
    """Per DWS parameter coordinate ``p`` (the lift fixed): ``A_p`` ``[P, D_out, D_in]`` and ``c_p`` ``[P, D_out]``."""
    conv_layout = ConvFlatLayout(widths, kernels)
    inputs = torch.cat([torch.zeros(1, conv_layout.size), torch.eye(conv_layout.size)]).double()
    graph = graph_from_kernels(*conv_layout.split(inputs), kernels, convs)
    parameters = list(layer.dws.parameters())
    count = parameters_to_vector(parameters).numel()
    out_size = FlatLayout(widths).size
    linear, constant = np.empty((count, out_size, conv_layout.size)), np.empty((count, out_size))
    with torch.no_grad():
        for p in range(count):
            coordinate = torch.zeros(count, dtype=torch.float64)
            coordinate[p] = 1.0
            vector_to_parameters(coordinate, parameters)
            output = layer(graph)
            assert not input_node_features(output).any()
            flat = flat_from_graph(output)[..., 0].numpy()
            constant[p] = flat[0]
            linear[p] = (flat[1:] - flat[0]).T
    return linear, constant


def formula_dimension(widths, kernels):
    r""":math:`\sum_{X, Y} (\text{kernel entries of } X) f(X) f(Y) \prod_{k \in S} \min(d_k, 2)`:
    the MLP count with each source object's features multiplied by its kernel entries."""
    objects = weight_space_objects(widths)
    entries = {f"W{layer}": h * w for layer, (h, w) in enumerate(kernels, 1)}
    return sum(
        int(np.prod([min(widths[k], 2) for k in set(x.permuted) & set(y.permuted)], dtype=np.int64))
        * x.fold
        * y.fold
        * entries.get(x.name, 1)
        for x, y in itertools.product(objects, objects)
    )


@pytest.fixture(scope="module", params=ARCHITECTURES, ids=_ids)
def operators(request):
    widths, kernels, convs = request.param
    layer = fresh_layer(widths, kernels, 1, 1)
    return request.param, conv_operators(layer, widths, kernels, convs)


def test_every_operator_is_equivariant(operators):
    (widths, kernels, _), (linear, constant) = operators
    conv_layout = ConvFlatLayout(widths, kernels)
    for mlp_source in hidden_generators(widths):
        conv_source = conv_layout.source(mlp_source)
        # (P v)[p] = v[source[p]]: A P_in = P_out A, entry by entry.
        commutator = np.abs(linear[:, :, conv_source] - linear[:, mlp_source, :]).max()
        assert commutator <= EQUIVARIANCE_ATOL, f"{widths}: max |A P - P A| = {commutator:.3e}"
        assert np.abs(constant[:, mlp_source] - constant).max() <= EQUIVARIANCE_ATOL


def test_operators_span_every_equivariant_map_of_the_cnn_weight_space(operators):
    (widths, kernels, _), (linear, constant) = operators
    conv_layout = ConvFlatLayout(widths, kernels)
    mlp_generators = hidden_generators(widths)
    conv_generators = [conv_layout.source(g) for g in mlp_generators]
    out_size = FlatLayout(widths).size
    expected = _constraint_null_space(mlp_generators, conv_generators, out_size, conv_layout.size)
    assert expected.min_gap > MIN_RANK_GAP
    assert expected.dim == formula_dimension(widths, kernels)
    linear_rank = numerical_rank(linear.reshape(linear.shape[0], -1))
    constant_rank = numerical_rank(constant)
    assert linear_rank.gap > MIN_RANK_GAP and constant_rank.gap > MIN_RANK_GAP, (linear_rank, constant_rank)
    assert linear_rank.rank == expected.dim, f"{widths} {kernels}: span {linear_rank.rank} vs {expected.dim}"
    assert constant_rank.rank == invariant_dimension(mlp_generators, out_size).dim


def test_a_narrow_lift_does_not_span_everything():
    """Sensitivity: with a common width below the kernel entries, the lift is a bottleneck."""
    widths, kernels, convs = ARCHITECTURES[0]
    torch.manual_seed(0)
    layer = CNNDWSLayer(1, 1, 2, widths[0], widths[-1], kernels, lift_channels=2).double()
    linear, _ = conv_operators(layer, widths, kernels, convs)
    assert numerical_rank(linear.reshape(linear.shape[0], -1)).rank < formula_dimension(widths, kernels)


# Equivariance ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ARCHITECTURES, ids=_ids)
def test_channel_permutations_commute_with_the_layer_and_a_stack(case):
    widths, kernels, convs = case
    torch.manual_seed(0)
    stack = nn.Sequential(
        fresh_layer(widths, kernels, 2, 3), DWSLayer(3, 2, len(widths) - 1, widths[0], widths[-1]).double()
    )
    weights, biases = random_kernels(widths, kernels, 2, 3, seed=4)
    graph = graph_from_kernels(weights, biases, kernels, convs)
    generator = torch.Generator().manual_seed(5)
    permuted_input = permute_hidden(graph, generator=generator)
    output = stack(graph)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(5)
        expected = permute_hidden(output, generator=generator)
        actual = stack(permuted_input)
    torch.testing.assert_close(actual.edge_attr, expected.edge_attr, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(actual.x, expected.x, rtol=1e-12, atol=1e-12)
    # Sensitivity: the permutation moved the output, and moving kernel entries (not a symmetry) changes it otherwise.
    assert not torch.allclose(actual.edge_attr, output.edge_attr)
    shuffled = graph.clone()
    grid = grid_of(kernels)
    shuffled.edge_attr = graph.edge_attr.view(-1, grid[0] * grid[1], 2).flip(1).reshape(graph.edge_attr.shape)
    with torch.no_grad():
        moved = stack(shuffled)
    assert (moved.edge_attr - output.edge_attr).abs().max() > 1e-3
