import pytest
import torch
from mlp_helpers import assert_params_equal, build_mlp, linear_params
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from wsgraph import WeightSpaceGraph, WeightSpaceSpec, common_spec, graph_specs, graph_to_params, mlp_to_graph
from wsgraph.core.graph import assemble, mixes_architectures

MIXED_WIDTHS = [(2, 3, 4, 1), (2, 7, 1, 1), (2, 5, 5, 1), (2, 1, 6, 1)]
KEYS = ("x", "edge_index", "edge_attr", "node_layer", "node_index", "edge_layer", "layer_widths", "has_bias")


@pytest.fixture
def mixed_mlps() -> list[nn.Sequential]:
    activations = [nn.ReLU, nn.Tanh, nn.ReLU, nn.Sigmoid]
    biases = [True, [True, False, True], True, [False, False, True]]
    return [
        build_mlp(widths, bias=bias, activation=activation, seed=seed)
        for seed, (widths, bias, activation) in enumerate(zip(MIXED_WIDTHS, biases, activations))
    ]


def assert_same_graph(actual: WeightSpaceGraph, expected: WeightSpaceGraph) -> None:
    for key in KEYS:
        assert torch.equal(actual[key], expected[key]), key
    assert actual.activation == expected.activation


def test_mixed_width_batch_keeps_per_graph_metadata(mixed_mlps):
    graphs = [mlp_to_graph(mlp) for mlp in mixed_mlps]
    batch = Batch.from_data_list(graphs)

    assert batch.num_graphs == 4
    assert batch.layer_widths.tolist() == [list(w) for w in MIXED_WIDTHS]
    assert batch.has_bias.tolist() == [[True] * 3, [True, False, True], [True] * 3, [False, False, True]]
    assert batch.activation == ["relu", "tanh", "relu", "sigmoid"]
    assert [str(spec) for spec in graph_specs(batch)] == ["2-3-4-1", "2-7-1-1", "2-5-5-1", "2-1-6-1"]
    # Layer labels stay per network; only edge_index moves by the nodes of the graphs before.
    assert torch.equal(batch.node_index, torch.cat([g.node_index for g in graphs]))
    first_nodes = graphs[0].num_nodes
    assert torch.equal(batch.edge_index[:, graphs[0].num_edges :][:, :3], graphs[1].edge_index[:, :3] + first_nodes)

    for original, copy in zip(graphs, batch.to_data_list(), strict=True):
        assert isinstance(copy, WeightSpaceGraph)
        assert_same_graph(copy, original)
    for mlp, params in zip(mixed_mlps, graph_to_params(batch), strict=True):
        assert_params_equal(params, linear_params(mlp))


def test_dataloader_round_trip(mixed_mlps):
    graphs = [mlp_to_graph(mlp) for mlp in mixed_mlps]
    loader = DataLoader(graphs, batch_size=3, shuffle=False)
    batches = list(loader)
    assert [b.num_graphs for b in batches] == [3, 1]
    assert batches[0].layer_widths.shape == (3, 4) and batches[0].has_bias.shape == (3, 3)
    unbatched = [graph for b in batches for graph in b.to_data_list()]
    for original, copy in zip(graphs, unbatched, strict=True):
        assert_same_graph(copy, original)
    assert int(batches[0].batch.max()) == 2 and batches[0].ptr.tolist()[-1] == batches[0].num_nodes


def test_common_spec():
    same = Batch.from_data_list([mlp_to_graph(build_mlp([3, 4, 2], seed=s)) for s in range(3)])
    assert common_spec(same) == WeightSpaceSpec((3, 4, 2))
    mixed = Batch.from_data_list([mlp_to_graph(build_mlp(w)) for w in ([3, 4, 2], [3, 5, 2])])
    with pytest.raises(ValueError, match=r"mixes architectures \(3-4-2, 3-5-2\)"):
        common_spec(mixed)
    assert not mixes_architectures(same) and mixes_architectures(mixed)
    assert not mixes_architectures(mlp_to_graph(build_mlp([3, 4, 2])))
    with pytest.raises(ValueError, match="has no 'layer_widths'"):
        graph_specs(WeightSpaceGraph(x=torch.zeros(3, 1)))


def test_spec_layout():
    spec = WeightSpaceSpec((2, 3, 1))
    assert spec.signature == (2, 2, 1)
    assert spec.num_nodes == 6 and spec.num_edges == 9 and spec.num_params == 13
    assert spec.node_offsets == (0, 2, 5, 6) and spec.edge_offsets == (0, 6, 9)
    assert list(spec.hidden_layers) == [1]
    assert WeightSpaceSpec.parse("2x32x1") == WeightSpaceSpec.parse("2-32-1") == WeightSpaceSpec((2, 32, 1))
    with pytest.raises(ValueError, match="cannot read layer widths"):
        WeightSpaceSpec.parse("2-a-1")
    with pytest.raises(ValueError, match="positive"):
        WeightSpaceSpec((2, 0, 1))


def test_assemble_checks_its_inputs():
    weights = [torch.randn(2, 3, 4, 1), torch.randn(2, 4, 1, 1)]
    biases = [torch.randn(2, 4, 1), torch.randn(2, 1, 1)]
    batch = assemble(weights, biases, y=torch.tensor([0, 1]))
    assert batch.num_graphs == 2 and batch.y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="got 3 targets for 2 networks"):
        assemble(weights, biases, y=torch.arange(3))
    with pytest.raises(ValueError, match="weight layer 2 takes 5 inputs but layer 1 has 4 outputs"):
        assemble([weights[0], torch.randn(2, 5, 1, 1)], biases)
    with pytest.raises(ValueError, match=r"bias layer 1 has shape \(2, 3, 1\)"):
        assemble(weights, [torch.randn(2, 3, 1), biases[1]])
