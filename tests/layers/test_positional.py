import itertools

import pytest
import torch
from torch_geometric.data import Batch

from wsgraph import mlp_to_graph
from wsgraph.layers.positional import EdgePositionalEncoding, NeuronPositionalEncoding


def random_network(widths: tuple[int, ...], seed: int):
    generator = torch.Generator().manual_seed(seed)
    pairs = [
        (torch.randn(out, inp, generator=generator), torch.randn(out, generator=generator))
        for inp, out in itertools.pairwise(widths)
    ]
    return mlp_to_graph(pairs, activation="relu")


@pytest.mark.parametrize("widths", [(2, 5, 4, 1), (3, 2), (1, 3, 3, 3, 3, 2)])
def test_hidden_neurons_of_a_layer_share_one_embedding(widths):
    num_weight_layers = len(widths) - 1
    graph = random_network(widths, seed=0)
    encoding = NeuronPositionalEncoding(num_weight_layers, widths[0], widths[-1], channels=8)
    features = encoding(Batch.from_data_list([graph]))
    assert features.shape == (sum(widths), 8)

    distinct = {tuple(row.tolist()) for row in features}
    assert len(distinct) == widths[0] + (num_weight_layers - 1) + widths[-1]
    for layer in range(1, num_weight_layers):
        rows = features[graph.node_layer == layer]
        assert torch.equal(rows, rows[:1].expand_as(rows))
    for layer in (0, num_weight_layers):
        rows = features[graph.node_layer == layer]
        assert len({tuple(row.tolist()) for row in rows}) == widths[layer]


def test_networks_of_different_hidden_widths_get_the_same_labels():
    batch = Batch.from_data_list([random_network((2, 5, 4, 1), 0), random_network((2, 3, 7, 1), 1)])
    encoding = NeuronPositionalEncoding(3, 2, 1, channels=4)
    features = encoding(batch)
    first, second = features[batch.batch == 0], features[batch.batch == 1]
    layers_first, layers_second = batch.node_layer[batch.batch == 0], batch.node_layer[batch.batch == 1]
    for layer in range(4):
        assert torch.equal(first[layers_first == layer][0], second[layers_second == layer][0])


def test_signature_mismatch_is_a_clear_error():
    batch = Batch.from_data_list([random_network((2, 5, 1), 0)])
    with pytest.raises(ValueError, match="3 weight layers, the batch has 2"):
        NeuronPositionalEncoding(3, 2, 1, channels=4)(batch)
    with pytest.raises(ValueError, match=r"built for 3 inputs and 1 outputs.*\[\(2, 1\)\]"):
        NeuronPositionalEncoding(2, 3, 1, channels=4)(batch)
    with pytest.raises(ValueError, match="3 weight layers, the batch has 2"):
        EdgePositionalEncoding(3, channels=4)(batch)


def test_edge_encoding_is_one_embedding_per_weight_layer():
    graph = random_network((2, 5, 4, 1), 0)
    encoding = EdgePositionalEncoding(3, channels=6)
    features = encoding(Batch.from_data_list([graph]))
    assert features.shape == (graph.edge_index.size(1), 6)
    for layer in (1, 2, 3):
        assert torch.equal(
            features[graph.edge_layer == layer],
            encoding.embedding.weight[layer - 1].expand(int((graph.edge_layer == layer).sum()), 6),
        )


def test_reset_parameters_and_repr():
    encoding = NeuronPositionalEncoding(3, 2, 1, channels=4)
    before = encoding.embedding.weight.detach().clone()
    encoding.reset_parameters()
    assert not torch.equal(before, encoding.embedding.weight)
    assert "num_weight_layers=3, in_dim=2, out_dim=1, channels=4" in repr(encoding)
    assert "num_weight_layers=3, channels=5" in repr(EdgePositionalEncoding(3, channels=5))
    with pytest.raises(ValueError, match="must be positive"):
        NeuronPositionalEncoding(0, 2, 1, channels=4)
