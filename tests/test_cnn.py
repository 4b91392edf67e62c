"""CNNs as graphs: exact round trips, channel permutations, batching, and refusal of what a graph cannot express."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from wsgraph import (
    NotACNNError,
    WeightSpaceSpec,
    batch_cnn_graphs,
    cnn_to_graph,
    graph_specs,
    graph_to_cnn,
    graph_to_params,
    pad_kernels,
    permute_hidden,
)
from wsgraph.core.convert_cnn import kernel_offset


def build_cnn(
    in_channels: int,
    convs: list[tuple[int, int | tuple[int, int], dict]],
    linears: list[int],
    activation=nn.ReLU,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """``Conv2d, act, ..., AdaptiveAvgPool2d(1), Flatten, Linear, act, ..., Linear``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    channels = in_channels
    for out, kernel, options in convs:
        layers += [nn.Conv2d(channels, out, kernel, dtype=dtype, **options), activation()]
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for position, out in enumerate(linears):
        layers.append(nn.Linear(channels, out, dtype=dtype))
        if position < len(linears) - 1:
            layers.append(activation())
        channels = out
    return nn.Sequential(*layers)


def zoo_cnn(seed: int = 0) -> nn.Sequential:
    """The layout of the zoo trainer's CNN members."""
    return build_cnn(1, [(8, 3, {}), (8, 3, {}), (8, 3, {})], [10], seed=seed, dtype=torch.float32)


CNNS = {
    "3x3": lambda: build_cnn(3, [(4, 3, {"padding": 1}), (5, 3, {})], [6, 2]),
    "mixed-kernels-strides": lambda: build_cnn(
        2, [(4, 5, {"stride": 2, "padding": 2}), (3, 1, {}), (6, (3, 1), {"dilation": 2})], [4], activation=nn.Tanh
    ),
    "even-kernel": lambda: build_cnn(1, [(3, 2, {"stride": (2, 1)}), (4, 4, {"padding": (1, 2)})], [3, 5]),
    "same-padding": lambda: build_cnn(3, [(4, 3, {"padding": "same"}), (4, 5, {"padding": "valid"})], [2]),
    "zoo": zoo_cnn,
}


def images(channels: int, size: int = 15, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(7), dtype=dtype)


def torch_params(module: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    return [(m.weight.detach(), m.bias.detach()) for m in module if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("name", list(CNNS))
def test_module_graph_module_round_trip_is_exact(name):
    cnn = CNNS[name]()
    graph = cnn_to_graph(cnn)
    first = cnn[0]
    inputs = images(first.in_channels, dtype=first.weight.dtype)
    rebuilt = graph_to_cnn(graph)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), cnn(inputs))
    for (weight, bias), (expected_weight, expected_bias) in zip(graph_to_params(graph), torch_params(cnn), strict=True):
        assert torch.equal(weight, expected_weight) and torch.equal(bias, expected_bias)
    # The graph is the channel graph: a node per channel, an edge per channel pair with the padded kernel.
    spec = graph_specs(graph)[0]
    convs = [m for m in cnn if isinstance(m, nn.Conv2d)]
    assert spec.conv_layers == len(convs)
    assert spec.kernel_sizes[: len(convs)] == tuple(tuple(c.kernel_size) for c in convs)
    assert graph.x.shape == (spec.num_nodes, 1)
    assert graph.edge_attr.shape == (spec.num_edges, spec.kernel_grid[0] * spec.kernel_grid[1])
    assert graph.activation == ("tanh" if name == "mixed-kernels-strides" else "relu")


def test_edge_feature_is_the_centred_flattened_kernel():
    cnn = CNNS["mixed-kernels-strides"]()
    graph = cnn_to_graph(cnn)
    grid = tuple(graph.kernel_grid[0].tolist())
    assert grid == (5, 5)
    second = cnn[2].weight.detach()  # [3, 4, 1, 1]: edges of layer 2 start after the 2 x 4 of layer 1
    offset = 2 * 4
    for i in range(4):
        for j in range(3):
            kernel = graph.edge_attr[offset + i * 3 + j].view(grid)
            top, left = kernel_offset((1, 1), grid)
            assert kernel[top, left] == second[j, i, 0, 0]
            assert int((kernel != 0).sum()) <= 1
    third = cnn[4].weight.detach()  # a 3x1 kernel
    edge = graph.edge_attr[offset + 4 * 3 + 2 * 6 + 5].view(grid)
    top, left = kernel_offset((3, 1), grid)
    assert torch.equal(edge[top : top + 3, left : left + 1], third[5, 2])


@pytest.mark.parametrize("name", ["3x3", "mixed-kernels-strides", "zoo"])
def test_channel_permutation_preserves_the_function(name):
    cnn = CNNS[name]().double()
    graph = cnn_to_graph(cnn)
    permuted = permute_hidden(graph, generator=torch.Generator().manual_seed(3))
    inputs = images(cnn[0].in_channels)
    with torch.no_grad():
        torch.testing.assert_close(graph_to_cnn(permuted)(inputs), cnn(inputs), rtol=0, atol=1e-12)
    # Sensitivity: the kernels moved, and permuting only the first layer's outgoing kernels breaks the function.
    assert not torch.equal(permuted.edge_attr, graph.edge_attr)
    broken = graph.clone()
    layer1 = (graph.edge_layer == 1).nonzero().view(-1)
    broken.edge_attr = graph.edge_attr.clone()
    broken.edge_attr[layer1] = graph.edge_attr[layer1.roll(1)]
    with torch.no_grad():
        assert (graph_to_cnn(broken)(inputs) - cnn(inputs)).abs().max() > 1e-6


def test_given_channel_permutation_moves_kernels():
    cnn = CNNS["3x3"]()
    graph = cnn_to_graph(cnn)
    perm = torch.tensor([2, 0, 3, 1])
    (w1, b1), (w2, b2), *_ = graph_to_params(graph)
    (p1, q1), (p2, q2), *_ = graph_to_params(permute_hidden(graph, [perm, torch.arange(5), torch.arange(6)]))
    assert torch.equal(p1, w1[perm]) and torch.equal(q1, b1[perm])
    assert torch.equal(p2, w2[:, perm]) and torch.equal(q2, b2)


def test_mixed_cnns_batch_with_pyg():
    networks = [
        CNNS["3x3"](),
        build_cnn(3, [(2, 1, {}), (7, 5, {"padding": 2})], [3, 2], seed=1),
        build_cnn(3, [(5, (1, 3), {})], [4, 4, 2], activation=nn.Tanh, seed=2),
    ]
    graphs = [cnn_to_graph(network) for network in networks]
    batch = batch_cnn_graphs(graphs)
    assert isinstance(batch, Batch) and batch.num_graphs == 3
    assert batch.edge_attr.size(-1) == 25 and batch.kernel_grid.tolist() == [[5, 5]] * 3
    assert batch.conv_layers.tolist() == [2, 2, 1]
    assert [spec.kernel_sizes for spec in graph_specs(batch)] == [
        ((3, 3), (3, 3), (1, 1), (1, 1)),
        ((1, 1), (5, 5), (1, 1), (1, 1)),
        ((1, 3), (1, 1), (1, 1), (1, 1)),
    ]
    inputs = images(3)
    with torch.no_grad():
        for network, rebuilt in zip(networks, graph_to_cnn(batch), strict=True):
            assert torch.equal(rebuilt(inputs), network(inputs))
    for network, params in zip(networks, graph_to_params(batch), strict=True):
        for (weight, bias), (expected, expected_bias) in zip(params, torch_params(network), strict=True):
            assert torch.equal(weight, expected) and torch.equal(bias, expected_bias)
    # Graphs of one architecture batch through the vectorised path.
    same = Batch.from_data_list([cnn_to_graph(CNNS["3x3"]()) for _ in range(2)])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*graph_to_params(same)))
    # Different grids do not concatenate without padding, and padding never shrinks a grid.
    with pytest.raises(RuntimeError):
        Batch.from_data_list(graphs)
    with pytest.raises(ValueError, match="smaller"):
        pad_kernels(graphs[1], 3)


@pytest.mark.parametrize("grid", [(3, 3), (4, 4), (3, 5), (5, 4), (6, 7)])
def test_padding_into_any_grid_centres_every_kernel_as_converting_into_it_does(grid):
    # Grids that differ from the network's by an odd number: the old grid moved as a whole put kernels off centre.
    networks = [
        build_cnn(1, [(1, (1, 2), {}), (1, (2, 1), {})], [1], seed=0),
        build_cnn(2, [(3, 3, {}), (2, (2, 3), {})], [2], seed=1),
        build_cnn(2, [(2, (1, 1), {}), (3, (2, 2), {})], [3, 2], seed=2),
    ]
    for network in networks:
        graph = cnn_to_graph(network)
        padded = pad_kernels(graph, grid)
        assert torch.equal(padded.edge_attr, cnn_to_graph(network, kernel_grid=grid).edge_attr)
        for (weight, bias), (expected, expected_bias) in zip(
            graph_to_params(padded), torch_params(network), strict=True
        ):
            assert torch.equal(weight, expected) and torch.equal(bias, expected_bias)
    batch = batch_cnn_graphs([cnn_to_graph(network) for network in networks[:2]])  # one depth: 3 layers
    inputs = images(1)[:, :1]
    with torch.no_grad():
        assert torch.equal(graph_to_cnn(batch)[0](inputs), networks[0](inputs))


def test_graph_to_mlp_points_a_cnn_graph_to_graph_to_cnn():
    from wsgraph import graph_to_mlp

    with pytest.raises(ValueError, match="graph_to_cnn"):
        graph_to_mlp(cnn_to_graph(zoo_cnn()))


def test_state_dict_of_the_zoo_layout_converts():
    cnn = zoo_cnn()
    graph = cnn_to_graph(cnn.state_dict())
    assert graph.activation == "unknown"
    assert graph.conv_stride[0, :3].tolist() == [[-1, -1]] * 3
    assert str(graph_specs(graph)[0]) == "1-8-8-8-10 (conv 3x3,3x3,3x3)"
    with pytest.raises(ValueError, match="stride of convolution 1"):
        graph_to_cnn(graph, "relu")
    rebuilt = graph_to_cnn(graph, "relu", stride=1, padding=0, dilation=1)
    inputs = images(1, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(rebuilt(inputs), cnn(inputs))


def test_mlp_graphs_are_unchanged_and_specs_stay_mlp_specs():
    from wsgraph import mlp_to_graph

    mlp = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert set(mlp_to_graph(mlp).keys()) == {
        "x", "edge_index", "edge_attr", "node_layer", "node_index", "edge_layer", "layer_widths", "has_bias",
        "activation",
    }  # fmt: skip
    spec = WeightSpaceSpec((2, 3, 1))
    assert spec == WeightSpaceSpec((2, 3, 1), None, 0) and not spec.is_conv and str(spec) == "2-3-1"
    conv = WeightSpaceSpec((1, 4, 2), kernel_sizes=((3, 3), (1, 1)), conv_layers=1)
    assert conv.num_params == 1 * 4 * 9 + 4 * 2 + 4 + 2 and conv.kernel_grid == (3, 3)
    with pytest.raises(ValueError, match="1x1"):
        WeightSpaceSpec((1, 4, 2), kernel_sizes=((3, 3), (3, 3)), conv_layers=1)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h)) + h
        return self.head(h.mean(dim=(2, 3)))


class MeanPooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, stride=2)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.features(x)).mean(dim=(2, 3)))


def test_a_custom_module_pooling_with_a_mean_converts():
    module = MeanPooled().double()
    graph = cnn_to_graph(module)
    assert graph.activation == "tanh" and graph.conv_stride[0, 0].tolist() == [2, 2]
    inputs = images(3)
    with torch.no_grad():
        assert torch.equal(graph_to_cnn(graph)(inputs), module(inputs))


def _refused_modules():
    pool, flat = nn.AdaptiveAvgPool2d(1), nn.Flatten()
    return {
        "skip connection": (Residual(), r"'conv2'.*skip|'head'.*skip"),
        "batch norm": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), pool, flat, nn.Linear(4, 2)),
            r"module '1' is a BatchNorm2d",
        ),
        "running stats only": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False), pool, flat, nn.Linear(4, 2)),
            r"module '1' is a BatchNorm2d",
        ),
        "conv after linear": (
            nn.Sequential(
                nn.Conv2d(3, 4, 3), nn.ReLU(), pool, nn.Linear(1, 1), nn.Conv2d(4, 2, 1), flat, nn.Linear(2, 2)
            ),
            r"convolution '4' comes after a linear layer",
        ),
        "non-global pooling": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), flat, nn.Linear(16, 2)),
            r"linear layer '4'.*global average pooling",
        ),
        "max pooling between convs": (
            nn.Sequential(
                nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3), pool, flat, nn.Linear(4, 2)
            ),
            r"layer '3'.*elementwise",
        ),
        "global max pooling": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(1), flat, nn.Linear(4, 2)),
            r"linear layer '4'.*global average pooling",
        ),
        "activation of other settings": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1), pool, flat, nn.Linear(4, 2)),
            r"linear layer '4'.*through a known activation \(relu, leaky_relu, .* in their default settings.*"
            r"or the activation is not one a graph records",
        ),
        "grouped convolution": (
            nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), pool, flat, nn.Linear(4, 2)),
            r"convolution '0' has groups=2",
        ),
        "no linear head": (nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)), r"no nn.Linear"),
        "reflect padding": (
            nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), pool, flat, nn.Linear(4, 2)),
            r"convolution '0' pads with 'reflect'",
        ),
    }


@pytest.mark.parametrize("case", list(_refused_modules()))
def test_unsupported_layers_are_refused_naming_the_layer(case):
    module, pattern = _refused_modules()[case]
    with pytest.raises(NotACNNError, match=pattern) as info:
        cnn_to_graph(module)
    assert "\n" not in str(info.value)


def test_unsupported_state_dicts_are_refused_naming_the_key():
    with_norm = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(NotACNNError, match=r"'1.running_mean'.*running statistics"):
        cnn_to_graph(with_norm.state_dict())
    flattened = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 9, 2))
    with pytest.raises(NotACNNError, match=r"'3.weight' takes 36 inputs.*global pooling"):
        cnn_to_graph(flattened.state_dict())
    late = {"0.weight": torch.randn(4, 3, 3, 3), "1.weight": torch.randn(2, 4), "2.weight": torch.randn(2, 2, 1, 1)}
    with pytest.raises(NotACNNError, match=r"convolution '2.weight' comes after linear layer '1.weight'"):
        cnn_to_graph(late)
    conv3d = {"0.weight": torch.randn(4, 3, 3, 3, 3), "1.weight": torch.randn(2, 4)}
    with pytest.raises(NotACNNError, match=r"'0.weight': weight has shape \(4, 3, 3, 3, 3\)"):
        cnn_to_graph(conv3d)


def test_info_describes_a_cnn_checkpoint(tmp_path):
    from wsgraph.cli.info import describe_checkpoint, format_info

    cnn = zoo_cnn()
    torch.save(cnn.state_dict(), tmp_path / "member.pt")
    info = describe_checkpoint(tmp_path / "member.pt")
    assert info["num_params"] == sum(p.numel() for p in cnn.parameters())
    assert info["conv_layers"] == 3 and info["kernel_sizes"] == [[3, 3]] * 3 + [[1, 1]]
    assert info["num_edges"] == 8 + 64 + 64 + 80
    assert "convolutions 3x3, 3x3, 3x3" in format_info(info)


def test_an_activation_after_the_last_linear_layer_of_a_cnn_is_refused():
    cnn = nn.Sequential(*build_cnn(3, [(4, 3, {})], [5]), nn.Sigmoid())
    with pytest.raises(NotACNNError, match="applies an elementwise sigmoid after its last linear layer '4'"):
        cnn_to_graph(cnn)


class ScaledImages(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cnn = build_cnn(3, [(4, 3, {})], [5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn(2 * x)


def test_a_function_before_the_first_convolution_is_refused():
    with pytest.raises(NotACNNError, match=r"transforms its input before its first layer 'cnn\.0'"):
        cnn_to_graph(ScaledImages())


def test_a_kernel_size_larger_than_the_graphs_kernel_grid_is_refused():
    graph = cnn_to_graph(build_cnn(3, [(4, 3, {})], [2]))
    graph.kernel_size = torch.tensor([[[5, 5], [1, 1]]])
    with pytest.raises(ValueError, match="a 5x5 kernel does not fit the graph's 3x3 kernel grid"):
        graph_to_params(graph)


@pytest.mark.parametrize(
    ("geometry", "match"),
    [
        ({"stride": 0}, r"convolution 1 has stride \(0, 0\); graph_to_cnn needs a stride of at least 1"),
        ({"stride": -2}, "stride of at least 1"),
        ({"dilation": (1, 0)}, r"dilation \(1, 0\)"),
        ({"padding": -2}, "padding of at least 0"),
    ],
)
def test_graph_to_cnn_refuses_a_geometry_conv2d_cannot_have(geometry, match):
    graph = cnn_to_graph(CNNS["3x3"]())
    with pytest.raises(ValueError, match=match):
        graph_to_cnn(graph, **geometry)
    # The same values written into the graph are refused alike.
    ((name, value),) = geometry.items()
    graph[f"conv_{name}"] = torch.full_like(graph[f"conv_{name}"], value if isinstance(value, int) else 0)
    with pytest.raises(ValueError, match=f"graph_to_cnn needs a {name}"):
        graph_to_cnn(graph)


@pytest.mark.parametrize(
    ("geometry", "match"),
    [
        # Read one character per convolution, or failing inside torch with a message that named nothing.
        ({"padding": "same"}, r"padding='same': expected an integer, a pair of integers, or one of these per"),
        ({"stride": 1.5}, r"stride=1\.5: expected an integer"),
        ({"stride": True}, r"stride=True: expected an integer"),
        ({"dilation": [1, 2.0]}, r"dilation of convolution 2 is 2\.0: expected an integer or a pair of integers"),
    ],
)
def test_graph_to_cnn_names_a_geometry_that_is_not_integers(geometry, match):
    with pytest.raises(ValueError, match=match):
        graph_to_cnn(cnn_to_graph(CNNS["3x3"]()), **geometry)


def test_batch_cnn_graphs_takes_any_iterable_and_refuses_a_batch_among_the_graphs():
    graphs = [cnn_to_graph(CNNS["3x3"]()) for _ in range(2)]
    assert batch_cnn_graphs(graph for graph in graphs).num_graphs == 2
    with pytest.raises(ValueError, match=r"graph 0 is a batch; give the graphs one by one"):
        batch_cnn_graphs([Batch.from_data_list(graphs), graphs[0]])


def test_batch_cnn_graphs_refuses_no_graphs_and_graphs_of_mlps():
    from mlp_helpers import build_mlp

    from wsgraph import mlp_to_graph

    with pytest.raises(ValueError, match="at least one graph"):
        batch_cnn_graphs([])
    graphs = [cnn_to_graph(CNNS["3x3"]()), mlp_to_graph(build_mlp([2, 3, 1]))]
    with pytest.raises(ValueError, match=r"graph 1 is not the graph of a CNN .*Batch\.from_data_list"):
        batch_cnn_graphs(graphs)


def test_a_cnn_graph_with_integer_weights_or_two_bias_channels_is_refused():
    graph = cnn_to_graph(CNNS["3x3"]())
    graph.edge_attr = graph.edge_attr.long()
    with pytest.raises(ValueError, match=r"edge_attr is torch\.int64"):
        graph_to_params(graph)
    graph = cnn_to_graph(CNNS["3x3"]())
    graph.x = torch.cat([graph.x, graph.x], dim=1)
    for read in (graph_to_params, graph_to_cnn):
        with pytest.raises(ValueError, match="the graph has 2 bias channels"):
            read(graph)


class LinearRegisteredFirst(nn.Module):
    """A CNN whose modules are registered out of call order: head first, then the second convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2, dtype=torch.float64)
        self.conv2 = nn.Conv2d(5, 4, 3, dtype=torch.float64)
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_a_cnn_registering_its_layers_out_of_call_order_converts():
    torch.manual_seed(0)
    module = LinearRegisteredFirst()
    graph = cnn_to_graph(module)
    assert graph_specs(graph)[0].widths == (3, 5, 4, 2)
    with torch.no_grad():
        assert torch.allclose(graph_to_cnn(graph)(images(3)), module(images(3)))


def test_a_module_that_calls_a_linear_layer_first_is_not_a_cnn():
    class LinearFirst(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(5, 5)

        def forward(self, x):
            return self.conv(self.fc(x))

    with pytest.raises(NotACNNError, match=r"the first layer 'fc' is a Linear, not nn\.Conv2d: not a CNN"):
        cnn_to_graph(LinearFirst())


def test_cnn_params_are_copies_and_keep_biases_written_into_a_layer_without_one():
    network = build_cnn(1, [(2, 3, {"bias": False})], [2], seed=0)
    graph = cnn_to_graph(network)
    assert graph_to_params(graph)[0][1] is None
    x, edge_attr = graph.x.clone(), graph.edge_attr.clone()
    for weight, bias in graph_to_params(graph):
        weight.add_(1.0)
        if bias is not None:
            bias.add_(1.0)
    assert torch.equal(graph.x, x) and torch.equal(graph.edge_attr, edge_attr)
    written = graph.clone()
    written.x = written.x.clone()
    written.x[1, 0] = 0.5  # the first convolution's first output channel
    assert graph_to_params(written)[0][1].tolist() == [0.5, 0.0]


@pytest.mark.parametrize("grid", [(10**5, 10**5), 0, (3, 0), (2.5, 3), "3x3"])
def test_a_kernel_grid_out_of_range_is_refused_before_any_allocation(grid):
    network = CNNS["3x3"]()
    with pytest.raises(ValueError, match=r"kernel grid .*: expected an integer or a pair of integers in 1\.\.1024"):
        pad_kernels(cnn_to_graph(network), grid)
    with pytest.raises(ValueError, match=r"kernel grid .*: expected an integer or a pair of integers in 1\.\.1024"):
        cnn_to_graph(network, kernel_grid=grid)


def test_kernel_grids_and_sizes_may_be_numpy_or_torch_integers():
    import numpy as np

    from wsgraph.layers.cnn_dws import KernelLift

    network, wide = CNNS["3x3"](), build_cnn(3, [(2, 5, {})], [2], seed=3)
    graph, other = cnn_to_graph(network), cnn_to_graph(wide)
    for grid in (other.kernel_grid[0], tuple(np.array([5, 5])), np.int64(5), torch.tensor(5)):
        assert pad_kernels(graph, grid).kernel_grid.tolist() == [[5, 5]]
        assert cnn_to_graph(network, kernel_grid=grid).kernel_grid.tolist() == [[5, 5]]
    assert KernelLift(1, 4, graph.kernel_size[0]).kernel_sizes == ((3, 3), (3, 3), (1, 1), (1, 1))
