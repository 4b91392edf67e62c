import itertools

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import wsgraph
from wsgraph.core.permute import apply_node_permutation
from wsgraph.datasets.transforms import LayerStatistics, NormalizeWeights
from wsgraph.inrs.render import neuron_values
from wsgraph.layers import ProbeFeatures

MIXED_WIDTHS = [(2, 5, 4, 1), (2, 3, 6, 1), (2, 4, 4, 1)]


def random_graph(widths, generator, activation="relu", dtype=torch.float64):
    pairs = [
        (torch.randn(out, inp, generator=generator, dtype=dtype), torch.randn(out, generator=generator, dtype=dtype))
        for inp, out in itertools.pairwise(widths)
    ]
    return wsgraph.mlp_to_graph(pairs, activation=activation)


def mixed_batch(seed, activations=("relu",)):
    generator = torch.Generator().manual_seed(seed)
    graphs = [
        random_graph(widths, generator, activations[index % len(activations)])
        for index, widths in enumerate(MIXED_WIDTHS * 2)
    ]
    return Batch.from_data_list(graphs)


def module_activations(module: nn.Sequential, points: torch.Tensor) -> torch.Tensor:
    """``[N_g, P]``: the inputs, every hidden activation's output and the output, as the module computes them."""
    values, hidden = [points], points
    for position, layer in enumerate(module):
        hidden = layer(hidden)
        if not isinstance(layer, nn.Linear) or position == len(module) - 1:
            values.append(hidden)
    return torch.cat(values, dim=1).t()


def hidden_permutation(batch, generator):
    """``source`` for apply_node_permutation: a random permutation inside every hidden layer of every network."""
    source = torch.arange(batch.num_nodes)
    graph = batch.batch
    for network, layer in itertools.product(range(batch.num_graphs), range(1, batch.layer_widths.size(1) - 1)):
        rows = ((graph == network) & (batch.node_layer == layer)).nonzero().view(-1)
        source[rows] = rows[torch.randperm(rows.numel(), generator=generator)]
    return source


def test_neuron_values_are_the_rebuilt_modules_activations():
    batch = mixed_batch(0, activations=("relu", "tanh", "sine(30.0)"))
    points = torch.rand(7, 2, dtype=torch.float64) * 2 - 1
    expected = torch.cat([module_activations(m, points) for m in wsgraph.graph_to_mlp(batch)])
    torch.testing.assert_close(neuron_values(batch, points), expected, rtol=0, atol=1e-12)
    # Edges in another order (as PyG transforms leave them) give the same values.
    order = torch.randperm(batch.num_edges, generator=torch.Generator().manual_seed(1))
    shuffled = batch.clone()
    shuffled.edge_index, shuffled.edge_attr = batch.edge_index[:, order], batch.edge_attr[order]
    shuffled.edge_layer = batch.edge_layer[order]
    torch.testing.assert_close(neuron_values(shuffled, points), expected, rtol=0, atol=1e-12)


def test_neuron_values_of_one_architecture_and_per_network_points():
    generator = torch.Generator().manual_seed(2)
    batch = Batch.from_data_list([random_graph((2, 6, 5, 3), generator, "sine(30.0)") for _ in range(4)])
    points = torch.rand(4, 9, 2, dtype=torch.float64, generator=generator)
    modules = wsgraph.graph_to_mlp(batch)
    expected = torch.cat([module_activations(m, p) for m, p in zip(modules, points)])
    # Batched and per-module products round differently; sin(30 x) amplifies that about 30-fold per layer.
    tolerance = 1e-10
    torch.testing.assert_close(neuron_values(batch, points), expected, rtol=0, atol=tolerance)
    single = batch.to_data_list()[1]
    torch.testing.assert_close(
        neuron_values(single, points[0]), module_activations(modules[1], points[0]), rtol=0, atol=tolerance
    )


def test_neuron_values_pass_gradients_to_points_and_weights():
    batch = mixed_batch(3)
    batch.edge_attr.requires_grad_(True)
    points = torch.rand(5, 2, dtype=torch.float64, requires_grad=True)
    neuron_values(batch, points).square().sum().backward()
    assert bool(points.grad.abs().sum() > 0) and bool(batch.edge_attr.grad.abs().sum() > 0)


def test_neuron_values_errors():
    batch = mixed_batch(4)
    with pytest.raises(ValueError, match="coordinates for 2 networks, the batch has 6"):
        neuron_values(batch, torch.rand(2, 3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="coordinates have 3 dimensions, the networks take 2 inputs"):
        neuron_values(batch, torch.rand(3, 3, dtype=torch.float64))


def make_probe(statistics=None):
    torch.manual_seed(0)
    return ProbeFeatures(3, 2, num_probes=6, channels=8, statistics=statistics).double()


def test_probe_features_are_equivariant_to_hidden_permutations():
    batch = mixed_batch(5, activations=("sine(30.0)", "relu"))
    source = hidden_permutation(batch, torch.Generator().manual_seed(6))
    permuted = apply_node_permutation(batch, source)
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    probe = make_probe()
    torch.testing.assert_close(probe(permuted), probe(batch)[source], rtol=0, atol=1e-12)


def test_probe_features_see_input_neuron_permutations():
    batch = mixed_batch(7)
    source = torch.arange(batch.num_nodes)
    first_input = batch.ptr[:-1]
    source[first_input], source[first_input + 1] = first_input + 1, first_input
    swapped = apply_node_permutation(batch, source)
    probe = make_probe()
    hidden = batch.node_layer == 1
    assert (probe(swapped)[hidden] - probe(batch)[hidden]).abs().amax() > 1e-6


def test_probe_features_undo_the_input_normalisation():
    batch = mixed_batch(8)
    statistics = LayerStatistics(
        torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64),
        torch.tensor([2.0, 0.5, 1.5], dtype=torch.float64),
        torch.tensor([-0.1, 0.2, 0.0], dtype=torch.float64),
        torch.tensor([0.7, 1.3, 2.0], dtype=torch.float64),
    )
    normalised = NormalizeWeights(statistics)(batch.clone())
    with_statistics = make_probe(statistics)
    torch.testing.assert_close(with_statistics(normalised), make_probe()(batch), rtol=0, atol=1e-10)
    # The statistics travel with the state_dict, as a trained model's checkpoint holds them.
    restored = make_probe()
    restored.load_state_dict(with_statistics.state_dict())
    torch.testing.assert_close(restored(normalised), make_probe()(batch), rtol=0, atol=1e-10)


def test_probe_features_train_their_points_and_projections():
    batch = mixed_batch(9)
    probe = make_probe()
    probe(batch).square().sum().backward()
    assert [name for name, p in probe.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)] == []
    assert bool((probe.points.abs() <= 1).all())
    assert "num_probes=6" in repr(probe)


def test_probe_features_errors():
    with pytest.raises(ValueError, match="must be positive integers"):
        ProbeFeatures(3, 2, num_probes=0, channels=4)
    with pytest.raises(ValueError, match=r"must be positive integers, got 3, 2, 2.5, 4"):
        ProbeFeatures(3, 2, num_probes=2.5, channels=4)
    statistics = LayerStatistics(*(torch.ones(2) for _ in range(4)))
    with pytest.raises(ValueError, match="statistics for 2 weight layers, the model has 3"):
        ProbeFeatures(3, 2, 4, 4, statistics)
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="built for 3 weight layers and 2 inputs"):
        ProbeFeatures(3, 2, 4, 4).double()(random_graph((3, 4, 4, 1), generator))
