import itertools

import pytest
import torch
from mlp_helpers import build_mlp
from torch_geometric.data import Batch

from wsgraph import from_dense_weights, mlp_to_graph, to_dense_weights

WIDTHS = (3, 5, 4, 2)


@pytest.fixture
def stacked_batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(6, d_out, d_in, generator=generator), torch.randn(6, d_out, generator=generator))
        for d_in, d_out in itertools.pairwise(WIDTHS)
    ]
    return mlp_to_graph(pairs, y=torch.arange(6.0))


def test_dense_shapes_and_values(stacked_batch):
    dense = to_dense_weights(stacked_batch)
    assert [tuple(w.shape) for w in dense.weights] == [(6, 3, 5, 1), (6, 5, 4, 1), (6, 4, 2, 1)]
    assert [tuple(b.shape) for b in dense.biases] == [(6, 5, 1), (6, 4, 1), (6, 2, 1)]
    params = stacked_batch.to_data_list()[4]
    # Network 4, weight layer 2, from neuron 1 of layer 1 to neuron 3 of layer 2.
    edge = (params.edge_layer == 2) & (params.node_index[params.edge_index[0]] == 1)
    edge &= params.node_index[params.edge_index[1]] == 3
    assert dense.weights[1][4, 1, 3, 0] == params.edge_attr[edge.nonzero().item(), 0]


def test_dense_weights_are_views(stacked_batch):
    dense = to_dense_weights(stacked_batch)
    storage = stacked_batch.edge_attr.untyped_storage().data_ptr()
    assert all(w.untyped_storage().data_ptr() == storage for w in dense.weights)
    assert all(b.untyped_storage().data_ptr() == stacked_batch.x.untyped_storage().data_ptr() for b in dense.biases)

    dense.weights[2][5, 3, 1, 0] = 123.0
    assert stacked_batch.edge_attr[-1, 0] == 123.0  # the last edge of the last network
    stacked_batch.x[-2, 0] = -7.0
    assert dense.biases[2][5, 0, 0] == -7.0


def test_single_graph_has_a_dense_view():
    graph = mlp_to_graph(build_mlp([2, 3, 1]))
    dense = to_dense_weights(graph)
    assert dense.weights[0].shape == (1, 2, 3, 1)
    assert torch.equal(dense.weights[0][0, :, :, 0], graph.edge_attr[:6, 0].view(2, 3))


def test_mixed_batch_has_no_dense_view():
    mixed = Batch.from_data_list([mlp_to_graph(build_mlp(w)) for w in ([3, 4, 2], [3, 5, 2])])
    with pytest.raises(ValueError, match="mixes architectures"):
        to_dense_weights(mixed)


def test_from_dense_weights_inverts_to_dense_weights(stacked_batch):
    dense = to_dense_weights(stacked_batch)
    rebuilt = from_dense_weights(dense.weights, dense.biases, like=stacked_batch)
    assert set(rebuilt.keys()) == set(stacked_batch.keys())
    for key in sorted(stacked_batch.keys()):
        if isinstance(stacked_batch[key], torch.Tensor):
            assert torch.equal(rebuilt[key], stacked_batch[key]), key
        else:
            assert rebuilt[key] == stacked_batch[key], key
    plain = from_dense_weights(dense.weights, dense.biases)
    assert torch.equal(plain.edge_attr, stacked_batch.edge_attr) and torch.equal(plain.x, stacked_batch.x)
    assert not hasattr(plain, "y") or plain.y is None


def test_multi_channel_dense_round_trip():
    weights = [torch.randn(2, 3, 4, 5), torch.randn(2, 4, 1, 5)]
    biases = [torch.randn(2, 4, 5), torch.randn(2, 1, 5)]
    batch = from_dense_weights(weights, biases)
    assert batch.edge_attr.shape == (2 * 16, 5) and batch.x.shape == (2 * 8, 5)
    dense = to_dense_weights(batch)
    assert all(torch.equal(a, b) for a, b in zip(dense.weights, weights))
    assert all(torch.equal(a, b) for a, b in zip(dense.biases, biases))


def test_from_dense_weights_keeps_each_networks_activation_and_refuses_a_like_of_other_networks():
    relu = mlp_to_graph(build_mlp((2, 4, 1), bias=[False, True], seed=0))
    tanh = mlp_to_graph(build_mlp((2, 4, 1), activation=torch.nn.Tanh, seed=1))
    like = Batch.from_data_list([relu, tanh])
    dense = to_dense_weights(like)
    rebuilt = from_dense_weights(dense.weights, dense.biases, like=like)
    assert rebuilt.activation == ["relu", "tanh"] and rebuilt.has_bias.tolist() == [[False, True], [True, True]]
    # One network's metadata for three networks gave a batch that failed later, naming nothing.
    three = to_dense_weights(Batch.from_data_list([relu] * 3))
    with pytest.raises(ValueError, match=r"^like describes 1 network\(s\), the weights 3$"):
        from_dense_weights(three.weights, three.biases, like=relu)
    with pytest.raises(ValueError, match=r"like describes 2 network\(s\), the weights 3"):
        from_dense_weights(three.weights, three.biases, like=like)


def test_from_dense_weights_names_tensors_of_the_wrong_shape():
    dense = to_dense_weights(mlp_to_graph(build_mlp((2, 4, 1), seed=0)))
    with pytest.raises(ValueError, match=r"layer 1: weights of shape \(2, 4, 1\) .* expected \[B, d_in, d_out, C\]"):
        from_dense_weights([w[0] for w in dense.weights], dense.biases)
    with pytest.raises(ValueError, match="no networks to assemble"):
        from_dense_weights([w[:0] for w in dense.weights], [b[:0] for b in dense.biases])
    with pytest.raises(ValueError, match="got 2 weight and 1 bias tensors"):
        from_dense_weights(dense.weights, dense.biases[:1])
