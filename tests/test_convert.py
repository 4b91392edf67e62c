import itertools
import math
import random
from collections import OrderedDict

import pytest
import torch
from mlp_helpers import OutputOffsetMLP, assert_params_equal, build_mlp, linear_params
from torch import Tensor, nn
from torch_geometric.data import Batch

from wsgraph import NotAnMLPError, Sine, graph_specs, graph_to_mlp, graph_to_params, mlp_to_graph, stacked_params


def random_architecture(seed: int) -> tuple[list[int], list[bool]]:
    rng = random.Random(seed)
    num_weight_layers = rng.randint(1, 5)
    widths = [rng.randint(1, 64) for _ in range(num_weight_layers + 1)]
    biases = [rng.random() < 0.7 for _ in range(num_weight_layers)]
    return widths, biases


ARCHITECTURES = [
    ([1, 1], [True]),
    ([64, 1], [False]),
    ([3, 1, 5], [True, False]),
    ([2, 64, 64, 64, 64, 1], [True] * 5),
    ([5, 4, 3, 2, 1, 7], [False] * 5),
    *(random_architecture(seed) for seed in range(12)),
]


@pytest.mark.parametrize(("widths", "biases"), ARCHITECTURES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_exact_and_keeps_the_function(widths, biases, dtype):
    mlp = build_mlp(widths, bias=biases, activation=nn.Tanh, dtype=dtype)
    graph = mlp_to_graph(mlp)

    assert graph.num_nodes == sum(widths)
    assert graph.num_edges == sum(a * b for a, b in itertools.pairwise(widths))
    assert graph.x.dtype == dtype and graph.edge_attr.dtype == dtype
    assert graph.layer_widths.tolist() == [widths]
    assert graph.has_bias.tolist() == [biases]
    assert_params_equal(graph_to_params(graph), linear_params(mlp))

    rebuilt = graph_to_mlp(graph)
    inputs = torch.randn(16, widths[0], dtype=dtype)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), mlp(inputs))


def test_activation_is_read_from_the_module():
    assert mlp_to_graph(build_mlp([2, 4, 1], activation=nn.ReLU)).activation == "relu"
    assert mlp_to_graph(build_mlp([2, 4, 3, 1], activation=nn.Tanh)).activation == "tanh"
    assert mlp_to_graph(build_mlp([2, 4, 1], activation=nn.ReLU), activation="gelu").activation == "gelu"


def test_unknown_activation_must_be_given_to_rebuild():
    graph = mlp_to_graph(build_mlp([2, 4, 1]).state_dict())
    assert graph.activation == "unknown"
    with pytest.raises(ValueError, match="activation is unknown"):
        graph_to_mlp(graph)
    assert isinstance(graph_to_mlp(graph, activation="relu")[1], nn.ReLU)
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        mlp_to_graph(build_mlp([2, 4, 1]), activation="swishy")


class Siren(nn.Module):
    def __init__(self, widths: list[int], omega_0: float) -> None:
        super().__init__()
        self.omega_0 = omega_0
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = torch.sin(self.omega_0 * layer(x))
        return self.layers[-1](x)


@pytest.mark.parametrize("omega_0", [30.0, 7.5])
def test_siren_records_its_sine_activation(omega_0):
    torch.manual_seed(0)
    siren = Siren([2, 16, 16, 1], omega_0).double()
    graph = mlp_to_graph(siren)
    assert graph.activation == f"sine({omega_0})"

    rebuilt = graph_to_mlp(graph)
    assert isinstance(rebuilt[1], Sine) and rebuilt[1].omega_0 == omega_0
    coordinates = torch.rand(64, 2, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(coordinates), siren(coordinates), rtol=0, atol=1e-12)


class Block(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.linear(x))


def test_custom_module_with_nested_linears():
    torch.manual_seed(0)
    model = nn.Sequential(Block(3, 5), Block(5, 4), nn.Linear(4, 2))
    assert next(iter(model.state_dict())) == "0.linear.weight"
    graph = mlp_to_graph(model)
    assert graph.activation == "relu"
    assert_params_equal(graph_to_params(graph), linear_params(model))


@pytest.mark.parametrize(
    "prefix_of",
    [
        lambda layer: f"seq.{layer}.linear",
        lambda layer: f"net.layers.{2 * layer}",
        lambda layer: f"model.encoder_{layer}.fc",
    ],
    ids=["seq.0.linear", "net.layers.2", "model.encoder_0.fc"],
)
def test_state_dict_key_variants(prefix_of):
    mlp = build_mlp([3, 6, 5, 2], bias=[True, False, True])
    state_dict = OrderedDict()
    for layer, (weight, bias) in enumerate(linear_params(mlp)):
        state_dict[f"{prefix_of(layer)}.weight"] = weight
        if bias is not None:
            state_dict[f"{prefix_of(layer)}.bias"] = bias
    graph = mlp_to_graph(state_dict)
    assert graph.has_bias.tolist() == [[True, False, True]]
    assert_params_equal(graph_to_params(graph), linear_params(mlp))


def test_state_dict_keys_in_lexicographic_order_are_put_in_natural_order():
    widths = list(range(13, 1, -1))  # 12 layers: layers.10 and layers.11 sort before layers.2
    mlp = build_mlp(widths)
    state_dict = OrderedDict(sorted(((f"layers.{k}", v) for k, v in _numbered_state_dict(mlp).items())))
    assert list(state_dict)[2:6] == ["layers.1.bias", "layers.1.weight", "layers.10.bias", "layers.10.weight"]
    graph = mlp_to_graph(state_dict)
    assert graph.layer_widths.tolist() == [widths]
    assert_params_equal(graph_to_params(graph), linear_params(mlp))


def _numbered_state_dict(mlp: nn.Sequential) -> dict[str, Tensor]:
    out = {}
    for layer, (weight, bias) in enumerate(linear_params(mlp)):
        out[f"{layer}.weight"], out[f"{layer}.bias"] = weight, bias
    return out


def test_bare_linear_state_dict():
    linear = nn.Linear(4, 3)
    graph = mlp_to_graph(linear.state_dict())
    assert graph.layer_widths.tolist() == [[4, 3]]
    assert_params_equal(graph_to_params(graph), [(linear.weight.detach(), linear.bias.detach())])
    assert mlp_to_graph(linear).activation == "identity"


def test_pairs_with_and_without_bias():
    weights = [torch.randn(5, 3), torch.randn(2, 5)]
    graph = mlp_to_graph([(weights[0], None), (weights[1], torch.randn(2))])
    assert graph.has_bias.tolist() == [[False, True]]
    assert torch.equal(graph.x[3:8], torch.zeros(5, 1))
    params = graph_to_params(graph)
    assert params[0][1] is None and torch.equal(params[0][0], weights[0])


def test_canonical_edge_order_and_features():
    mlp = build_mlp([2, 3, 2])
    graph = mlp_to_graph(mlp)
    (w1, b1), (w2, b2) = linear_params(mlp)
    src, dst = graph.edge_index
    # Weight layer l, source i, target j, row-major: edge (i -> j) holds nn.Linear's weight[j, i].
    for edge in range(graph.num_edges):
        layer = int(graph.edge_layer[edge])
        i, j = int(graph.node_index[src[edge]]), int(graph.node_index[dst[edge]])
        assert int(graph.node_layer[src[edge]]) == layer - 1 and int(graph.node_layer[dst[edge]]) == layer
        assert graph.edge_attr[edge, 0] == (w1 if layer == 1 else w2)[j, i]
    assert graph.edge_index[:, :4].tolist() == [[0, 0, 0, 1], [2, 3, 4, 2]]
    assert torch.equal(graph.x[:, 0], torch.cat([torch.zeros(2), b1, b2]))
    assert graph.node_layer.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert graph.node_index.tolist() == [0, 1, 0, 1, 2, 0, 1]


def stacked_pairs(widths: list[int], count: int, bias: bool = True) -> list[tuple[Tensor, Tensor | None]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(count, b, a, generator=generator), torch.randn(count, b, generator=generator) if bias else None)
        for a, b in itertools.pairwise(widths)
    ]


@pytest.mark.parametrize("bias", [True, False])
def test_vectorised_conversion_equals_one_by_one(bias):
    widths, count = [3, 5, 4, 2], 6
    pairs = stacked_pairs(widths, count, bias)
    vectorised = mlp_to_graph(pairs, y=torch.arange(count))
    one_by_one = Batch.from_data_list(
        [mlp_to_graph([(w[n], None if b is None else b[n]) for w, b in pairs], y=torch.tensor(n)) for n in range(count)]
    )
    assert isinstance(vectorised, Batch) and vectorised.num_graphs == count
    assert set(vectorised.keys()) == set(one_by_one.keys())
    for key in sorted(one_by_one.keys()):
        expected, actual = one_by_one[key], vectorised[key]
        if isinstance(expected, Tensor):
            assert actual.dtype == expected.dtype and torch.equal(actual, expected), key
        else:
            assert actual == expected, key
    for alone, sliced in zip(one_by_one.to_data_list(), vectorised.to_data_list(), strict=True):
        assert all(torch.equal(alone[key], sliced[key]) for key in ("x", "edge_index", "edge_attr", "node_index"))

    back = stacked_params(vectorised)
    for (weight, bias_), (back_weight, back_bias) in zip(pairs, back, strict=True):
        assert torch.equal(back_weight, weight)
        assert torch.equal(back_bias, bias_ if bias_ is not None else torch.zeros_like(back_bias))
    per_network = graph_to_params(vectorised)
    assert len(per_network) == count
    assert_params_equal(per_network[4], [(w[4], None if b is None else b[4]) for w, b in pairs])


def test_graph_to_mlp_on_a_batch_gives_one_module_per_network():
    graphs = [mlp_to_graph(build_mlp([2, width, 1], seed=width)) for width in (3, 5)]
    modules = graph_to_mlp(Batch.from_data_list(graphs))
    assert [m[0].out_features for m in modules] == [3, 5]
    inputs = torch.randn(4, 2)
    with torch.no_grad():
        assert torch.equal(modules[1](inputs), build_mlp([2, 5, 1], seed=5)(inputs))


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head_a = nn.Linear(4, 2)
        self.head_b = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.relu(self.body(x))
        return self.head_a(hidden) + self.head_b(hidden)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.second(torch.relu(self.first(x)))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(torch.relu(self.layer(x)))


class Mixing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(3, 4)
        self.second = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.second(torch.softmax(self.first(x), dim=-1))


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 1)), "module '0' is a Conv2d"),
        (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)), "module '1' is a BatchNorm1d"),
        (TwoHeads(), "skip or branch"),
        (Residual(), "skip or branch"),
        (Shared(), "'layer' is called 2 times"),
        (Mixing(), "mixes the neurons"),
        (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 1)), "could not run Sequential"),
        (nn.ReLU(), "has no nn.Linear layers"),
    ],
    ids=["conv2d", "batchnorm", "two-heads", "residual", "shared-linear", "softmax", "shapes", "no-linear"],
)
def test_modules_that_are_not_mlps_are_rejected(module, match):
    with pytest.raises(NotAnMLPError, match=match):
        mlp_to_graph(module)


def test_pairs_whose_shapes_do_not_chain_name_the_layer():
    with pytest.raises(NotAnMLPError, match="layer 2 takes 5 inputs but layer 1 gives 4 outputs"):
        mlp_to_graph([(torch.randn(4, 3), torch.randn(4)), (torch.randn(2, 5), torch.randn(2))])
    with pytest.raises(NotAnMLPError, match=r"layer 1: bias has shape \(3,\)"):
        mlp_to_graph([(torch.randn(4, 3), torch.randn(3))])
    with pytest.raises(NotAnMLPError, match="disagree on the number of networks"):
        mlp_to_graph([(torch.randn(2, 4, 3), None), (torch.randn(3, 1, 4), None)])
    with pytest.raises(NotAnMLPError, match="hold no networks"):
        mlp_to_graph([(torch.randn(0, 4, 3), torch.randn(0, 4)), (torch.randn(0, 1, 4), torch.randn(0, 1))])
    with pytest.raises(NotAnMLPError, match="empty list"):
        mlp_to_graph([])


def test_state_dict_whose_shapes_do_not_chain_names_the_key():
    state_dict = {"a.weight": torch.randn(4, 3), "b.weight": torch.randn(2, 5)}
    with pytest.raises(NotAnMLPError, match=r"'b\.weight' takes 5 inputs but 'a\.weight' gives 4 outputs"):
        mlp_to_graph(state_dict)


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["weight", "bias"])
def test_non_finite_values_are_rejected_unless_allowed(bad_value, where):
    mlp = build_mlp([2, 3, 1])
    with torch.no_grad():
        getattr(mlp[2], where).view(-1)[0] = bad_value
    with pytest.raises(NotAnMLPError, match=f"2: {where} contains NaN or inf"):
        mlp_to_graph(mlp)
    with pytest.raises(NotAnMLPError, match=rf"'2\.{where}' contains NaN or inf"):
        mlp_to_graph(mlp.state_dict())

    graph = mlp_to_graph(mlp.state_dict(), check_finite=False)
    assert int((~torch.isfinite(torch.cat([graph.x, graph.edge_attr]))).sum()) == 1
    # Bit patterns, so that NaN compares equal to itself.
    for (weight, bias), (expected_weight, expected_bias) in zip(graph_to_params(graph), linear_params(mlp)):
        assert torch.equal(weight.view(torch.int32), expected_weight.view(torch.int32))
        assert torch.equal(bias.view(torch.int32), expected_bias.view(torch.int32))


@pytest.mark.parametrize(
    ("state_dict", "match"),
    [
        ({"0.weight": torch.randn(3, 2), "0.bias": [0.0, 0.0, 0.0]}, "'0.bias' is a list, not a tensor"),
        (
            {"0.weight": torch.randn(3, 2), "1.weight": torch.ones(3), "1.running_mean": torch.zeros(3)},
            "key '1.running_mean' is neither a weight nor a bias",
        ),
        ({"0.bias": torch.randn(3)}, "'0.bias' has no matching '0.weight'"),
        ({}, "the state_dict is empty"),
        ({"conv.weight": torch.randn(2, 1, 3, 3)}, "'conv.weight': weight has shape"),
        ({"0.weight": torch.ones(3, 2, dtype=torch.long)}, "dtype torch.int64"),
    ],
    ids=["non-tensor", "batchnorm-key", "bias-without-weight", "empty", "conv-weight", "integer"],
)
def test_bad_state_dicts_are_rejected(state_dict, match):
    with pytest.raises(NotAnMLPError, match=match):
        mlp_to_graph(state_dict)


@pytest.mark.parametrize("obj", [42, "0.weight", torch.randn(3, 2, 2, 2), None])
def test_unsupported_objects_are_rejected(obj):
    with pytest.raises(NotAnMLPError):
        mlp_to_graph(obj)


def test_stacked_params_rejects_a_mixed_batch():
    graphs = [mlp_to_graph(build_mlp([2, width, 1])) for width in (3, 4)]
    with pytest.raises(ValueError, match="mixes architectures"):
        stacked_params(Batch.from_data_list(graphs))
    assert [str(spec) for spec in graph_specs(Batch.from_data_list(graphs))] == ["2-3-1", "2-4-1"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda g: setattr(g, "x", torch.cat([g.x, g.x], dim=1)), "1 weight and 2 bias channels"),
        (lambda g: setattr(g, "edge_attr", g.edge_attr.long()), r"edge_attr is torch\.int64"),
        (lambda g: setattr(g, "x", g.x.int()), r"x is torch\.int32"),
        (lambda g: setattr(g, "x", g.x.view(-1)), r"the graph's x has shape \(7,\); expected \[rows, channels\]"),
        (lambda g: setattr(g, "edge_attr", g.edge_attr.view(-1)), r"edge_attr has shape \(12,\); expected"),
    ],
    ids=["two-bias-channels", "integer-weights", "integer-biases", "one-dimensional-biases", "one-dimensional-weights"],
)
def test_parameters_are_read_only_from_one_channel_floating_point_graphs(edit, match):
    graph = mlp_to_graph(build_mlp([2, 4, 1]))
    edit(graph)
    with pytest.raises(ValueError, match=match):
        graph_to_params(graph)
    with pytest.raises(ValueError, match=match):
        graph_to_mlp(graph, activation="relu")


@pytest.mark.parametrize(
    ("final", "named"), [(nn.Sigmoid(), "sigmoid"), (nn.Tanh(), "tanh"), (nn.ReLU(), "relu"), (Sine(30.0), "sine")]
)
def test_an_activation_after_the_last_layer_is_refused_not_dropped(final, named):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), final)
    with pytest.raises(NotAnMLPError, match=f"applies an elementwise {named}.* after its last linear layer '2'"):
        mlp_to_graph(module)
    # Dropout is the identity in eval mode, and a constant shift is what output_offset declares.
    mlp_to_graph(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.Dropout(0.5)))
    mlp_to_graph(OutputOffsetMLP(activation="relu"), output_offset=0.5)
    # The shift is exact only up to rounding at the outputs' size and precision.
    large = OutputOffsetMLP(activation="relu", shift=1 / 3)
    with torch.no_grad():
        large.last.weight.mul_(100)
    mlp_to_graph(large, output_offset=1 / 3)
    mlp_to_graph(OutputOffsetMLP(activation="relu").to(torch.float16), output_offset=0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shift", [1 / 3, 1.2345678, -1234.5678])
def test_an_undeclared_output_offset_is_refused_not_dropped(dtype, shift):
    import re

    module = OutputOffsetMLP(activation="relu", shift=shift).to(dtype)
    with pytest.raises(NotAnMLPError, match=r"to the output of its last layer 'last'.*declare it with output_offset=") as error:  # fmt: skip
        mlp_to_graph(module)
    suggested = float(re.search(r"output_offset=(\S+)$", str(error.value)).group(1))
    assert suggested == pytest.approx(shift, rel=1e-6)
    # The value the refusal suggests is accepted, as are the exact one and one written to six digits.
    for declared in (suggested, shift, float(f"{shift:.6g}")):
        mlp_to_graph(module, output_offset=declared)
    graph = mlp_to_graph(module, output_offset=shift)
    probe = torch.randn(5, 2, dtype=dtype)
    with torch.no_grad():
        torch.testing.assert_close(graph_to_mlp(graph, activation="relu")(probe) + shift, module(probe))
    with pytest.raises(NotAnMLPError, match=r"output_offset=0\.5 was declared, but the module adds "):
        mlp_to_graph(module, output_offset=0.5)
    # A module without a shift is refused a declared one; state_dicts run nothing and are not checked.
    with pytest.raises(NotAnMLPError, match=r"output_offset=0\.5 was declared, but the module adds 0\.0 "):
        mlp_to_graph(build_mlp([2, 3, 1]), output_offset=0.5)
    mlp_to_graph(module.state_dict())


class LastLayerFirst(nn.Module):
    """Registers its output layer before its input layer, which runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(5, 1)
        self.hidden = nn.Linear(3, 5)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(x)))


def test_a_module_registering_its_layers_out_of_call_order_converts():
    torch.manual_seed(0)
    module = LastLayerFirst()
    graph = mlp_to_graph(module)
    assert graph_specs(graph)[0].widths == (3, 5, 1) and graph.activation == "tanh"
    probe = torch.randn(4, 3)
    with torch.no_grad():
        torch.testing.assert_close(graph_to_mlp(graph)(probe), module(probe))


def test_a_module_checking_its_input_width_with_layers_out_of_order_converts():
    class Checked(LastLayerFirst):
        def forward(self, x: Tensor) -> Tensor:
            if x.size(-1) != 3:
                raise ValueError(f"expected 3 features, got {x.size(-1)}")
            return super().forward(x)

    assert graph_specs(mlp_to_graph(Checked()))[0].widths == (3, 5, 1)


def test_tracing_leaves_every_submodules_training_flag_as_it_was():
    module = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 1))
    module[2].eval()
    mlp_to_graph(module)
    assert module.training and not module[2].training and module[0].training


def test_rounding_noise_is_no_output_offset():
    class RoundTrip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first, self.last = nn.Linear(2, 4), nn.Linear(4, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.last(torch.relu(self.first(x))) + 0.1 - 0.1

    from wsgraph.core.extract_mlp import from_module

    assert from_module(RoundTrip()).output_offset.value == 0.0
    mlp_to_graph(RoundTrip())


def test_a_failing_module_registering_its_layers_out_of_order_reports_its_own_failure():
    class Failing(LastLayerFirst):
        def forward(self, x: Tensor) -> Tensor:
            return self.out(torch.tanh(self.hidden(x)))[:, 5]

    # Probed at its first layer's width (3), not at the width of the layer registered first (5).
    with pytest.raises(
        NotAnMLPError, match=r"could not run Failing on a \[64, 3\] input to trace its layers: index 5 is out of bounds"
    ):
        mlp_to_graph(Failing())


class TransformedInput(nn.Module):
    def __init__(self, transform) -> None:
        super().__init__()
        self.first, self.last, self.transform = nn.Linear(2, 3), nn.Linear(3, 1), transform

    def forward(self, x: Tensor) -> Tensor:
        return self.last(torch.relu(self.first(self.transform(x))))


@pytest.mark.parametrize("transform", [lambda x: x * 10, lambda x: x + 1, torch.sin], ids=["scaled", "shifted", "sine"])
def test_a_function_before_the_first_layer_is_refused_not_dropped(transform):
    with pytest.raises(NotAnMLPError, match="transforms its input before its first layer 'first'"):
        mlp_to_graph(TransformedInput(transform))
    # Flattening an already flat input changes nothing, as in a zoo member's nn.Flatten.
    mlp_to_graph(nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)))


def test_biases_written_into_a_layer_without_bias_are_read_back():
    # An input translation moves the first layer's biases, which this network lacked: dropping them
    # rebuilt a network computing another function.
    from wsgraph.datasets.transforms import translate_inputs

    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(2, 3, bias=False), nn.Tanh(), nn.Linear(3, 1))
    graph = mlp_to_graph(network)
    offset = torch.tensor([[0.5, -0.25]])
    moved = translate_inputs(graph, offset, torch.tensor([1]))
    x = torch.rand(7, 2)
    with torch.no_grad():
        assert torch.allclose(graph_to_mlp(moved)(x), network(x + offset), atol=1e-6)
    assert graph_to_params(moved)[0][1] is not None
    # A layer without bias whose entries are still zero comes back without one, batched or not.
    assert graph_to_params(graph)[0][1] is None
    batch = Batch.from_data_list([graph, moved])
    assert [params[0][1] is None for params in graph_to_params(batch)] == [True, False]


@pytest.mark.parametrize("widths", [(2, 3, 3, 1), (2, 3, 3, 4)])
def test_graph_to_params_returns_copies_never_views_of_the_graph(widths):
    graph = mlp_to_graph(build_mlp(widths, bias=True, seed=0))
    x, edge_attr = graph.x.clone(), graph.edge_attr.clone()
    for weight, bias in graph_to_params(graph):
        weight.add_(100.0)
        bias.add_(100.0)
    assert torch.equal(graph.x, x) and torch.equal(graph.edge_attr, edge_attr)


@pytest.mark.parametrize(
    ("activation", "message"),
    [
        (nn.ReLU, r"graph_to_mlp: activation is the class ReLU; pass an instance, ReLU\(\)"),
        (3, r"graph_to_mlp: activation must be a name such as 'relu' or a module such as nn.ReLU\(\), got 3"),
    ],
)
def test_graph_to_mlp_names_an_activation_that_is_neither_a_name_nor_a_module(activation, message):
    with pytest.raises(TypeError, match=message):
        graph_to_mlp(mlp_to_graph(build_mlp((2, 3, 1), seed=0)), activation)


def test_networks_on_the_meta_device_are_refused_naming_the_cause():
    # Tracing one failed on Tensor.item(); pairs failed later alike.
    from wsgraph import NotACNNError, cnn_to_graph

    with torch.device("meta"):
        mlp = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 1))
    with pytest.raises(NotAnMLPError, match=r"0\.weight is on the meta device and holds no values"):
        mlp_to_graph(mlp)
    with pytest.raises(NotAnMLPError, match="on the meta device, holding no values"):
        mlp_to_graph([(layer.weight, layer.bias) for layer in (mlp[0], mlp[2])])
    with pytest.raises(NotACNNError, match=r"0\.weight is on the meta device and holds no values"):
        cnn_to_graph(cnn)


def test_normalising_and_undoing_it_gives_a_network_without_bias_none():
    # The round trip leaves about 1e-8 in the missing biases: round-off, not a bias written.
    import copy

    from wsgraph.datasets.transforms import LayerStatistics, NormalizeWeights

    network = nn.Sequential(nn.Linear(2, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    statistics = LayerStatistics(
        torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.1, 0.1]), torch.tensor([0.37, 0.37])
    )
    normalize = NormalizeWeights(statistics)
    back = normalize.inverse(normalize(copy.copy(mlp_to_graph(network))))
    assert back.x.abs().max() > 0  # the round-off is there
    assert all(bias is None for _, bias in graph_to_params(back))
    assert all(layer.bias is None for layer in graph_to_mlp(back, "relu") if isinstance(layer, nn.Linear))
