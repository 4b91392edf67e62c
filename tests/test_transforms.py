import math
import re
from itertools import pairwise

import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn
from torch_geometric.data import Batch

from wsgraph import Sine, graph_to_mlp, mlp_to_graph
from wsgraph.core.convert_mlp import graph_to_params
from wsgraph.datasets.transforms import (
    FirstLayerRotation,
    FirstLayerScale,
    GaussianWeightNoise,
    LayerStatistics,
    LayerStdShift,
    NormalizeWeights,
    RandomHiddenPermutation,
    RandomInputTranslation,
    WeightDropout,
    rotate_first_layer,
    scale_first_layer,
    translate_inputs,
)

STRUCTURE = ("edge_index", "node_layer", "node_index", "edge_layer", "layer_widths", "has_bias")
# float32 outputs of O(1) networks computed with the same weights in another order or form.
FUNCTION_TOLERANCE = 1e-5


def siren(widths, seed):
    torch.manual_seed(seed)
    layers = []
    for position, (d_in, d_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(d_in, d_out))
        if position < len(widths) - 2:
            layers.append(Sine(3.0))
    return nn.Sequential(*layers)


def mixed_batch():
    """Networks of one signature and different hidden widths."""
    widths = [(2, 5, 4, 1), (2, 3, 6, 1), (2, 5, 4, 1)]
    return Batch.from_data_list([mlp_to_graph(build_mlp(w, seed=seed)) for seed, w in enumerate(widths)])


def outputs(data, inputs, activation=None):
    modules = graph_to_mlp(data, activation=activation)
    modules = modules if isinstance(modules, list) else [modules]
    with torch.no_grad():
        return [module(inputs) for module in modules]


def assert_same_structure(a, b):
    for key in STRUCTURE:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("batched", [False, True])
def test_random_hidden_permutation_keeps_function_and_changes_weights(batched):
    data = mixed_batch() if batched else mlp_to_graph(build_mlp((2, 6, 5, 3), seed=1))
    permuted = RandomHiddenPermutation(torch.Generator().manual_seed(0))(data)
    assert_same_structure(permuted, data)
    assert not torch.equal(permuted.edge_attr, data.edge_attr)
    inputs = torch.randn(32, 2)
    for before, after in zip(outputs(data, inputs), outputs(permuted, inputs)):
        torch.testing.assert_close(after, before, rtol=0, atol=FUNCTION_TOLERANCE)


def test_gaussian_noise_statistics_and_untouched_input():
    data = mlp_to_graph(
        [(torch.randn(400, 64, 2), torch.randn(400, 64)), (torch.randn(400, 3, 64), torch.randn(400, 3))]
    )
    original = data.edge_attr.clone()
    noisy = GaussianWeightNoise(0.05, torch.Generator().manual_seed(0))(data)
    assert torch.equal(data.edge_attr, original), "the input must not change"
    assert_same_structure(noisy, data)
    delta = (noisy.edge_attr - data.edge_attr).double()
    count = delta.numel()
    assert abs(delta.mean().item()) < 5 * 0.05 / math.sqrt(count)
    assert abs(delta.std().item() / 0.05 - 1) < 5 / math.sqrt(2 * count)
    bias_delta = (noisy.x - data.x)[data.node_layer > 0].double()
    assert abs(bias_delta.std().item() / 0.05 - 1) < 5 / math.sqrt(2 * bias_delta.numel())
    assert torch.equal(noisy.x[data.node_layer == 0], data.x[data.node_layer == 0])


def test_weight_dropout_zeroes_a_fraction_and_rescales_survivors():
    data = mlp_to_graph(
        [
            (torch.randn(300, 64, 2) + 3, torch.randn(300, 64) + 3),
            (torch.randn(300, 1, 64) + 3, torch.randn(300, 1) + 3),
        ]
    )
    p = 0.25
    dropped = WeightDropout(p, torch.Generator().manual_seed(0))(data)
    assert_same_structure(dropped, data)
    zero = dropped.edge_attr == 0
    count = zero.numel()
    assert abs(zero.double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / count)
    kept = ~zero
    torch.testing.assert_close(dropped.edge_attr[kept], data.edge_attr[kept] / (1 - p), rtol=1e-6, atol=0)
    biases = dropped.x[data.node_layer > 0]
    assert abs((biases == 0).double().mean().item() - p) < 5 * math.sqrt(p * (1 - p) / biases.numel())
    assert torch.equal(WeightDropout(0.0)(data).edge_attr, data.edge_attr)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_weight_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match="0 <= p < 1"):
        WeightDropout(p)


def rotation(angle):
    return torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])


def test_first_layer_rotation_equals_the_inr_at_rotated_coordinates():
    networks = [siren((2, 16, 16, 1), seed=0), siren((2, 8, 12, 1), seed=1)]
    data = Batch.from_data_list([mlp_to_graph(module) for module in networks])
    angles = torch.tensor([0.7, -2.1])
    rotated = rotate_first_layer(data, angles)
    assert_same_structure(rotated, data)
    coords = torch.rand(64, 2) * 2 - 1
    for network, angle, after in zip(networks, angles.tolist(), outputs(rotated, coords)):
        with torch.no_grad():
            expected = network(coords @ rotation(angle))
            unrotated = network(coords)
        torch.testing.assert_close(after, expected, rtol=0, atol=FUNCTION_TOLERANCE)
        assert (after - unrotated).abs().max() > 1e-2, "a rotation is not a symmetry: the function must change"
    untouched = data.edge_layer != 1
    assert torch.equal(rotated.edge_attr[untouched], data.edge_attr[untouched])
    assert torch.equal(rotated.x, data.x)


def test_first_layer_rotation_transform_draws_one_angle_per_network_within_range():
    data = Batch.from_data_list([mlp_to_graph(siren((2, 6, 1), seed=seed)) for seed in range(3)])
    transform = FirstLayerRotation(30.0, torch.Generator().manual_seed(5))
    draws = torch.rand(3, generator=torch.Generator().manual_seed(5))
    angles = (2 * draws - 1) * 30.0 * (math.pi / 180)
    assert torch.equal(transform(data).edge_attr, rotate_first_layer(data, angles).edge_attr)
    assert bool((angles.abs() <= 30.0 * math.pi / 180).all()) and len(set(angles.tolist())) == 3


def test_first_layer_rotation_needs_two_dimensional_inputs():
    with pytest.raises(ValueError, match="2-D inputs"):
        FirstLayerRotation()(mlp_to_graph(build_mlp((3, 4, 1))))


def test_first_layer_scale_zooms_the_inr():
    network = siren((2, 16, 16, 1), seed=2)
    data = mlp_to_graph(network)
    scaled = scale_first_layer(data, torch.tensor([1.15]))
    coords = torch.rand(64, 2) * 2 - 1
    with torch.no_grad():
        expected = network(1.15 * coords)
    torch.testing.assert_close(outputs(scaled, coords)[0], expected, rtol=0, atol=FUNCTION_TOLERANCE)
    drawn = FirstLayerScale(0.8, 1.2, torch.Generator().manual_seed(0))(data)
    first = data.edge_layer == 1
    factors = drawn.edge_attr[first] / data.edge_attr[first]
    torch.testing.assert_close(factors, factors[:1].expand_as(factors), rtol=1e-6, atol=0)
    assert 0.8 <= factors[0].item() <= 1.2
    assert torch.equal(drawn.edge_attr[~first], data.edge_attr[~first])


def statistics_of(data):
    num_weight_layers = data.layer_widths.size(1) - 1
    weights = [data.edge_attr[data.edge_layer == layer] for layer in range(1, num_weight_layers + 1)]
    biases = [data.x[data.node_layer == layer] for layer in range(1, num_weight_layers + 1)]
    return LayerStatistics(
        weight_mean=torch.stack([w.mean() for w in weights]),
        weight_std=torch.stack([w.std() for w in weights]),
        bias_mean=torch.stack([b.mean() for b in biases]),
        bias_std=torch.stack([b.std() for b in biases]),
    )


def test_normalize_weights_standardises_each_layer_and_inverts_exactly():
    data = mixed_batch()
    data.edge_attr = data.edge_attr * 3 + 1
    transform = NormalizeWeights(statistics_of(data))
    normalized = transform(data)
    assert_same_structure(normalized, data)
    after = statistics_of(normalized)
    torch.testing.assert_close(after.weight_mean, torch.zeros(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(after.weight_std, torch.ones(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(after.bias_mean, torch.zeros(3), rtol=0, atol=1e-6)
    assert torch.equal(normalized.x[data.node_layer == 0], torch.zeros_like(normalized.x[data.node_layer == 0]))
    restored = transform.inverse(normalized)
    torch.testing.assert_close(restored.edge_attr, data.edge_attr, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(restored.x, data.x, rtol=1e-6, atol=1e-6)


def test_normalize_weights_rejects_other_depths():
    transform = NormalizeWeights(statistics_of(mixed_batch()))
    with pytest.raises(ValueError, match="3 weight layers"):
        transform(mlp_to_graph(build_mlp((2, 4, 1))))


def test_reprs_are_deterministic():
    stats = LayerStatistics(torch.tensor([0.5, -1.0]), torch.tensor([2.0, 1.0]), torch.zeros(2), torch.ones(2))
    assert repr(NormalizeWeights(stats)) == (
        "NormalizeWeights(weight_mean=[0.5, -1], weight_std=[2, 1], bias_mean=[0, 0], bias_std=[1, 1])"
    )
    assert repr(GaussianWeightNoise(0.1)) == "GaussianWeightNoise(std=0.1)"
    assert repr(WeightDropout(0.01)) == "WeightDropout(p=0.01)"
    assert repr(FirstLayerRotation(45)) == "FirstLayerRotation(max_angle=45.0)"
    assert repr(FirstLayerScale()) == "FirstLayerScale(low=0.8, high=1.2)"
    assert repr(RandomHiddenPermutation(torch.Generator())) == "RandomHiddenPermutation()"


def test_translation_through_the_first_bias_is_the_inr_at_shifted_coordinates():
    networks = [siren((2, 16, 16, 1), seed=0), siren((2, 8, 12, 1), seed=1)]
    data = Batch.from_data_list([mlp_to_graph(module) for module in networks])
    shifts = torch.tensor([[0.2, -0.1], [-0.25, 0.05]])
    moved = translate_inputs(data, shifts, torch.tensor([1, 1]))
    assert_same_structure(moved, data)
    assert torch.equal(moved.edge_attr, data.edge_attr)
    coords = torch.rand(64, 2) * 2 - 1
    for network, shift, after in zip(networks, shifts, outputs(moved, coords)):
        with torch.no_grad():
            expected = network(coords + shift)
        torch.testing.assert_close(after, expected, rtol=0, atol=FUNCTION_TOLERANCE)


def test_translation_into_a_deeper_bias_adds_the_linear_chain():
    data = mixed_batch()
    shifts = torch.tensor([[0.2, -0.1], [0.1, 0.3], [-0.2, 0.2]])
    moved = translate_inputs(data, shifts, torch.tensor([2, 0, 1]))
    before, after = graph_to_params(data), graph_to_params(moved)
    for n, layer in enumerate([2, 0, 1]):
        weights = [w for w, _ in before[n]]
        expected = [b.clone() for _, b in before[n]]
        if layer:
            chain = shifts[n]
            for weight in weights[:layer]:
                chain = weight @ chain
            expected[layer - 1] += chain
        for (_, got), want in zip(after[n], expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_random_translation_draws_a_layer_below_the_last_and_shifts_within_scale():
    data = mixed_batch()
    generator = torch.Generator().manual_seed(3)
    moved = RandomInputTranslation(0.25, generator)(data.clone())
    changed = [
        [not torch.equal(a, b) for (_, a), (_, b) in zip(x, y)]
        for x, y in zip(graph_to_params(data), graph_to_params(moved))
    ]
    # M = 3 weight layers: the shift lands in bias 1 or 2, never in the output bias.
    assert all(sum(row) == 1 and not row[2] for row in changed), changed
    single = Batch.from_data_list([mlp_to_graph(build_mlp((2, 1), seed=0))])
    assert torch.equal(RandomInputTranslation(0.25, generator)(single.clone()).x, single.x)


def test_layer_std_shift_is_the_published_constant_shift():
    data = mixed_batch()
    shifted = LayerStdShift(0.1)(data.clone())
    for before, after in zip(graph_to_params(data), graph_to_params(shifted)):
        for (weight, bias), (new_weight, new_bias) in zip(before, after):
            torch.testing.assert_close(new_weight, weight + 0.1 * weight.std(), rtol=0, atol=1e-6)
            # A one-entry bias (the single output) has no std and stays, as in the published code.
            expected = bias + 0.1 * bias.std() if bias.numel() > 1 else bias
            torch.testing.assert_close(new_bias, expected, rtol=0, atol=1e-6)
    assert torch.equal(shifted.x[data.node_layer == 0], data.x[data.node_layer == 0])


def cnn_batch():
    """Two CNNs whose 5x5, 1x1 and 3x1 kernels share one 5x5 grid, so most of the grid is padding."""
    from test_cnn import build_cnn

    from wsgraph import batch_cnn_graphs, cnn_to_graph

    networks = [
        build_cnn(2, [(4, 5, {"padding": 2}), (3, 1, {}), (6, (3, 1), {})], [4], seed=seed, dtype=torch.float32)
        for seed in range(2)
    ]
    return networks, batch_cnn_graphs([cnn_to_graph(network) for network in networks])


def test_noise_and_std_shift_leave_a_cnn_kernels_padding_zero():
    from wsgraph.core.convert_cnn import kernel_entry_mask

    _, data = cnn_batch()
    padding = ~kernel_entry_mask(data)
    assert padding.any() and not data.edge_attr[padding].any()
    noisy = GaussianWeightNoise(0.5, generator=torch.Generator().manual_seed(0))(data.clone())
    shifted = LayerStdShift(0.1)(data.clone())
    for changed in (noisy, shifted):
        assert not changed.edge_attr[padding].any()
        assert not torch.equal(changed.edge_attr[~padding], data.edge_attr[~padding])


def test_std_shift_of_a_cnn_uses_the_std_of_its_real_kernel_entries():
    networks, data = cnn_batch()
    shifted = LayerStdShift(0.1)(data.clone())
    for network, params in zip(networks, graph_to_params(shifted), strict=True):
        layers = [m for m in network if isinstance(m, (nn.Conv2d, nn.Linear))]
        for layer, (weight, bias) in zip(layers, params, strict=True):
            original = layer.weight.detach()
            expected = original + 0.1 * original.std()
            torch.testing.assert_close(weight.reshape(expected.shape), expected, rtol=0, atol=1e-6)
            expected_bias = layer.bias.detach() + 0.1 * layer.bias.detach().std()
            torch.testing.assert_close(bias, expected_bias, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "transform",
    [FirstLayerRotation(generator=torch.Generator().manual_seed(0)), RandomInputTranslation()],
    ids=["rotation", "translation"],
)
def test_coordinate_transforms_refuse_the_graphs_of_cnns(transform):
    _, data = cnn_batch()
    with pytest.raises(ValueError, match="graph of a CNN, whose input neurons are image channels"):
        transform(data)


@pytest.mark.parametrize(
    "build",
    [
        lambda: GaussianWeightNoise(math.inf),
        lambda: FirstLayerScale(0.8, math.inf),
        lambda: FirstLayerScale(-math.inf, 1.0),
        lambda: FirstLayerRotation(math.inf),
        lambda: RandomInputTranslation(math.inf),
        lambda: LayerStdShift(math.nan),
    ],
    ids=["noise", "scale-high", "scale-low", "rotation", "translation", "shift"],
)
def test_transforms_refuse_infinite_settings(build):
    with pytest.raises(ValueError, match="finite"):
        build()


@pytest.mark.parametrize(
    ("offsets", "layers", "message"),
    [
        # Too few input columns: the last one was used for the missing inputs.
        (torch.tensor([[0.5]]), torch.tensor([1]), r"offsets of shape \[1, >= 2\]"),
        (torch.zeros(2, 2), torch.tensor([1]), r"offsets of shape \[1, >= 2\]"),
        # A layer past the network, or below 0, shifted nothing.
        (torch.zeros(1, 2), torch.tensor([4]), r"bias layers in 0\.\.3, got \[4\]"),
        (torch.zeros(1, 2), torch.tensor([-1]), r"bias layers in 0\.\.3, got \[-1\]"),
    ],
)
def test_translate_inputs_refuses_offsets_or_layers_that_do_not_fit(offsets, layers, message):
    graph = mlp_to_graph(build_mlp((2, 4, 4, 1), seed=0))
    with pytest.raises(ValueError, match=message):
        translate_inputs(graph, offsets, layers)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_layer_statistics_refuses_non_finite_values(bad):
    # A NaN standard deviation made every normalised weight NaN; an infinite one made them all 0.
    with pytest.raises(ValueError, match="LayerStatistics needs finite values; weight_std"):
        LayerStatistics(torch.zeros(2), torch.tensor([1.0, bad]), torch.zeros(2), torch.ones(2))


def test_permute_hidden_refuses_permutations_that_are_not_integers():
    from wsgraph import permute_hidden

    graph = mlp_to_graph(build_mlp((2, 3, 1), seed=0))
    with pytest.raises(ValueError, match=r"perms\[0\] holds torch.float32 values, not integers"):
        permute_hidden(graph, [torch.tensor([0.9, 1.5, 2.2])])


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        # Each failed inside torch or Python, naming nothing.
        (
            lambda: RandomHiddenPermutation(generator=1),
            TypeError,
            "RandomHiddenPermutation: generator must be a torch.Generator",
        ),
        (
            lambda: GaussianWeightNoise(0.1, generator=0),
            TypeError,
            "GaussianWeightNoise: generator must be a torch.Generator",
        ),
        (lambda: GaussianWeightNoise("a"), ValueError, "GaussianWeightNoise needs a finite std >= 0, got 'a'"),
    ],
)
def test_transforms_name_a_generator_or_std_of_the_wrong_kind(build, error, message):
    with pytest.raises(error, match=re.escape(message)):
        build()


def test_permute_hidden_and_conversion_name_arguments_of_the_wrong_kind():
    from wsgraph import permute_hidden

    network = build_mlp((2, 3, 1), seed=0)
    with pytest.raises(TypeError, match=re.escape("permute_hidden: generator must be a torch.Generator")):
        permute_hidden(mlp_to_graph(network), generator=0)
    with pytest.raises(ValueError, match="output_offset must be a finite number, got 'a'"):
        mlp_to_graph(network, output_offset="a")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda batch: scale_first_layer(batch, torch.ones(3)), r"scale_first_layer needs factors of shape \[2\]"),
        (lambda batch: rotate_first_layer(batch, torch.zeros(1)), r"rotate_first_layer needs angles of shape \[2\]"),
    ],
)
def test_first_layer_transforms_need_one_value_per_network(call, message):
    batch = Batch.from_data_list([mlp_to_graph(build_mlp((2, 3, 1), seed=seed)) for seed in (0, 1)])
    with pytest.raises(ValueError, match=message):
        call(batch)
    # A list is taken as a tensor would be.
    assert torch.equal(rotate_first_layer(batch, [0.0, 0.0]).edge_attr, batch.edge_attr)
