import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn
from torch_geometric.data import Batch

from wsgraph import graph_to_mlp, graph_to_params, mlp_to_graph, permute_hidden

ARCHITECTURES = [(3, 5, 2), (2, 6, 4, 1), (4, 3, 7, 5, 6, 2)]


def outputs(graph, inputs):
    with torch.no_grad():
        modules = graph_to_mlp(graph, activation="tanh")
        if isinstance(modules, list):
            return [module(inputs) for module in modules]
        return modules(inputs)


@pytest.mark.parametrize("widths", ARCHITECTURES)
def test_random_permutation_preserves_the_function(widths):
    graph = mlp_to_graph(build_mlp(widths, activation=nn.Tanh, dtype=torch.float64))
    permuted = permute_hidden(graph, generator=torch.Generator().manual_seed(1))
    inputs = torch.randn(32, widths[0], dtype=torch.float64)
    torch.testing.assert_close(outputs(permuted, inputs), outputs(graph, inputs), rtol=0, atol=1e-12)
    # Sensitivity: the weights did move, and the structure did not.
    assert not torch.equal(permuted.edge_attr, graph.edge_attr)
    assert torch.equal(permuted.edge_index, graph.edge_index)
    assert torch.equal(permuted.x[: widths[0]], graph.x[: widths[0]])
    assert torch.equal(permuted.x[-widths[-1] :], graph.x[-widths[-1] :])


def test_given_permutation_moves_rows_and_columns():
    graph = mlp_to_graph(build_mlp([3, 4, 2], dtype=torch.float64))
    perm = torch.tensor([2, 0, 3, 1])
    (w1, b1), (w2, b2) = graph_to_params(graph)
    (p1, q1), (p2, q2) = graph_to_params(permute_hidden(graph, [perm]))
    # New hidden neuron j is old neuron perm[j] (nn.Linear stores [out, in]).
    assert torch.equal(p1, w1[perm]) and torch.equal(q1, b1[perm])
    assert torch.equal(p2, w2[:, perm]) and torch.equal(q2, b2)


def test_a_permutation_that_is_not_a_symmetry_changes_the_function():
    graph = mlp_to_graph(build_mlp([3, 4, 2], activation=nn.Tanh, dtype=torch.float64))
    (w1, b1), (w2, b2) = graph_to_params(graph)
    perm = torch.tensor([1, 0, 2, 3])
    broken = mlp_to_graph([(w1[perm], b1[perm]), (w2, b2)], activation="tanh")  # W_2's columns left in place
    inputs = torch.randn(16, 3, dtype=torch.float64)
    assert (outputs(broken, inputs) - outputs(graph, inputs)).abs().max() > 1e-3


def test_batch_permutation_preserves_every_function():
    mlps = [
        build_mlp(widths, activation=nn.Tanh, dtype=torch.float64, seed=s)
        for s, widths in enumerate([(2, 5, 3, 1), (2, 2, 7, 1), (2, 4, 4, 1)])
    ]
    batch = Batch.from_data_list([mlp_to_graph(mlp) for mlp in mlps])
    permuted = permute_hidden(batch, generator=torch.Generator().manual_seed(0))
    inputs = torch.randn(8, 2, dtype=torch.float64)
    for before, after in zip(outputs(batch, inputs), outputs(permuted, inputs), strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=1e-12)
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    assert permuted.activation == batch.activation and torch.equal(permuted.layer_widths, batch.layer_widths)


def test_stacked_batch_with_given_permutations():
    pairs = [(torch.randn(2, 3, 2, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64))]
    pairs.append((torch.randn(2, 1, 3, dtype=torch.float64), torch.randn(2, 1, dtype=torch.float64)))
    batch = mlp_to_graph(pairs)
    identity, swap = torch.arange(3), torch.tensor([2, 1, 0])
    permuted = permute_hidden(batch, [[identity], [swap]])
    first, second = graph_to_params(permuted)
    assert torch.equal(first[0][0], pairs[0][0][0])
    assert torch.equal(second[0][0], pairs[0][0][1][swap]) and torch.equal(second[1][0], pairs[1][0][1][:, swap])


def test_random_permutations_follow_the_generator():
    graph = mlp_to_graph(build_mlp([2, 16, 16, 1]))
    first = permute_hidden(graph, generator=torch.Generator().manual_seed(5))
    again = permute_hidden(graph, generator=torch.Generator().manual_seed(5))
    other = permute_hidden(graph, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first.edge_attr, again.edge_attr)
    assert not torch.equal(first.edge_attr, other.edge_attr)


@pytest.mark.parametrize(
    ("perms", "match"),
    [
        ([torch.tensor([0, 1, 2])], "perms\\[0\\] is not a permutation of range\\(4\\)"),
        ([torch.tensor([0, 1, 1, 2])], "is not a permutation"),
        ([torch.tensor([0, 1, 2, 4])], "is not a permutation"),
        ([torch.arange(4), torch.arange(4)], "has 1 hidden layers, got 2 permutations"),
        ([], "has 1 hidden layers, got 0 permutations"),
    ],
)
def test_invalid_permutations_are_rejected(perms, match):
    graph = mlp_to_graph(build_mlp([3, 4, 2]))
    with pytest.raises(ValueError, match=match):
        permute_hidden(graph, perms)


def test_batch_needs_one_permutation_list_per_network():
    batch = Batch.from_data_list([mlp_to_graph(build_mlp([3, 4, 2], seed=s)) for s in range(2)])
    with pytest.raises(ValueError, match="got permutations for 1 networks, the batch has 2"):
        permute_hidden(batch, [[torch.arange(4)]])
