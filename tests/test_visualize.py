import networkx as nx
import pytest
import torch
from matplotlib.figure import Figure
from mlp_helpers import build_mlp, linear_params
from torch_geometric.data import Batch

from wsgraph import draw_network, from_dense_weights, mlp_to_graph, to_networkx

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_networkx_counts_and_attributes():
    mlp = build_mlp([3, 4, 2], bias=[True, False])
    graph = mlp_to_graph(mlp)
    view = to_networkx(graph)
    (w1, b1), (w2, _) = linear_params(mlp)

    assert isinstance(view, nx.DiGraph)
    assert view.number_of_nodes() == 9 and view.number_of_edges() == 3 * 4 + 4 * 2
    assert view.graph == {"widths": (3, 4, 2), "activation": "relu"}
    assert view.nodes[0] == {"layer": 0, "index": 0, "bias": 0.0}
    assert view.nodes[5] == {"layer": 1, "index": 2, "bias": b1[2].item()}
    assert view.nodes[8] == {"layer": 2, "index": 1, "bias": 0.0}  # layer 2 has no bias
    # Neuron 1 of the input to neuron 3 of layer 1, and neuron 0 of layer 1 to neuron 1 of the output.
    assert view.edges[1, 6] == {"layer": 1, "weight": w1[3, 1].item()}
    assert view.edges[3, 8] == {"layer": 2, "weight": w2[1, 0].item()}
    assert [view.in_degree(n) for n in range(9)] == [0, 0, 0, 3, 3, 3, 3, 4, 4]


def test_networkx_multi_channel_attributes_are_tuples():
    weights = [torch.randn(1, 2, 3, 2), torch.randn(1, 3, 1, 2)]
    biases = [torch.randn(1, 3, 2), torch.randn(1, 1, 2)]
    view = to_networkx(from_dense_weights(weights, biases))
    assert view.edges[0, 2]["weight"] == tuple(weights[0][0, 0, 0].tolist())
    assert view.nodes[3]["bias"] == tuple(biases[0][0, 1].tolist())


def test_networkx_picks_a_network_of_a_batch():
    graphs = [mlp_to_graph(build_mlp(widths)) for widths in ([2, 3, 1], [2, 5, 1])]
    batch = Batch.from_data_list(graphs)
    assert to_networkx(batch, index=1).number_of_nodes() == 8
    assert to_networkx(batch, index=-2).number_of_nodes() == 6
    with pytest.raises(ValueError, match="batch of 2 networks; pass index="):
        to_networkx(batch)
    with pytest.raises(ValueError, match="index 2 is out of range"):
        to_networkx(batch, index=2)
    with pytest.raises(ValueError, match="index= picks a network of a Batch"):
        to_networkx(graphs[0], index=1)


def test_draw_network_saves_a_png(tmp_path):
    graph = mlp_to_graph(build_mlp([2, 5, 3, 1]))
    path = tmp_path / "drawings" / "network.png"
    figure = draw_network(graph, path=path)
    assert isinstance(figure, Figure)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in path.parent.iterdir()] == ["network.png"]  # no temporary file left behind
    assert len(figure.axes) == 3  # the network and two colour bars
    assert figure.axes[0].get_title() == "MLP 2-5-3-1, activation relu"


def test_draw_network_saves_a_png_at_a_path_without_extension(tmp_path):
    path = tmp_path / "network"
    draw_network(mlp_to_graph(build_mlp([2, 3, 1])), path=path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["network"]


def test_draw_network_into_given_axes():
    figure = Figure()
    ax = figure.add_subplot()
    assert draw_network(mlp_to_graph(build_mlp([2, 3, 1])), ax=ax, title="mine") is figure
    assert ax.get_title() == "mine"
    assert len(ax.collections) == 3  # edges, input neurons, other neurons


def test_draw_network_refuses_large_networks_unless_forced():
    graph = mlp_to_graph(build_mlp([2, 4, 4, 1]))  # 28 edges
    with pytest.raises(ValueError, match=r"has 28 edges, more than max_edges=20.*force=True"):
        draw_network(graph, max_edges=20)
    assert isinstance(draw_network(graph, max_edges=20, force=True), Figure)
    big = mlp_to_graph(build_mlp([2, 64, 64, 1]))
    with pytest.raises(ValueError, match="4288 edges, more than max_edges=2000"):
        draw_network(big)


def test_draw_network_checks_channel_and_index():
    graph = mlp_to_graph(build_mlp([2, 3, 1]))
    with pytest.raises(ValueError, match="channel 1 is out of range for a graph with 1 channels"):
        draw_network(graph, channel=1)
    with pytest.raises(ValueError, match="pass index="):
        draw_network(Batch.from_data_list([graph, graph]))
