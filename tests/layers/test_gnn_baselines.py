import itertools

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import degree

from wsgraph import graph_specs, mlp_to_graph, permute_hidden
from wsgraph.core.permute import apply_node_permutation
from wsgraph.layers.gnn_baselines import CONVS, EdgeUpdate, WeightSpaceGNN, pna_degree_histogram

WIDTHS = (2, 5, 4, 1)
MIXED_WIDTHS = [(2, 5, 4, 1), (2, 3, 6, 1), (2, 4, 4, 1)]


def random_graph(widths, generator, dtype=torch.float64, scale=1.0):
    pairs = [
        (
            scale * torch.randn(out, inp, generator=generator, dtype=dtype),
            scale * torch.randn(out, generator=generator, dtype=dtype),
        )
        for inp, out in itertools.pairwise(widths)
    ]
    return mlp_to_graph(pairs, activation="relu")


def mixed_batch(seed, dtype=torch.float64, repeats=2):
    generator = torch.Generator().manual_seed(seed)
    return Batch.from_data_list([random_graph(w, generator, dtype) for w in MIXED_WIDTHS * repeats])


def make_model(conv, dtype=torch.float64, **kwargs):
    torch.manual_seed(0)
    degree_histogram = pna_degree_histogram(MIXED_WIDTHS) if conv == "pna" else None
    model = WeightSpaceGNN(
        conv, 3, 2, 1, out_features=3, hidden_channels=16, depth=2, pna_degree=degree_histogram, **kwargs
    )
    return model.to(dtype).eval()


@pytest.mark.parametrize("conv", CONVS)
def test_output_shape_and_repr(conv):
    batch = mixed_batch(0, torch.float32)
    model = make_model(conv, torch.float32)
    assert model(batch).shape == (6, 3)
    assert f"conv='{conv}', signature=(3, 2, 1), out_features=3" in repr(model)


@pytest.mark.parametrize("readout", ["mean", "sum", "max"])
@pytest.mark.parametrize("edge_readout", [True, False])
@pytest.mark.parametrize("conv", CONVS)
def test_invariant_to_hidden_permutations(conv, readout, edge_readout):
    batch = mixed_batch(1)
    model = make_model(conv, readout=readout, edge_readout=edge_readout)
    permuted = permute_hidden(batch, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    torch.testing.assert_close(model(permuted), model(batch), rtol=0, atol=1e-12)


@pytest.mark.parametrize("conv", CONVS)
def test_sensitive_to_input_neuron_permutations(conv):
    batch = mixed_batch(3)
    # Swapping the two input neurons is not a symmetry of an MLP: the model must see it.
    source = torch.arange(batch.num_nodes)
    first_input = batch.ptr[:-1]
    source[first_input], source[first_input + 1] = first_input + 1, first_input
    swapped = apply_node_permutation(batch, source)
    difference = (make_model(conv)(swapped) - make_model(conv)(batch)).abs().amax(dim=1)
    assert bool((difference > 1e-6).all())


@pytest.mark.parametrize("conv", CONVS)
def test_mixed_widths_give_each_network_its_own_output(conv):
    batch = mixed_batch(4)
    model = make_model(conv)
    together = model(batch)
    alone = torch.cat([model(Batch.from_data_list([graph])) for graph in batch.to_data_list()])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize("edge_readout", [True, False])
@pytest.mark.parametrize("conv", CONVS)
def test_single_graph_gives_the_output_of_a_batch_of_one(conv, edge_readout):
    graph = random_graph(MIXED_WIDTHS[1], torch.Generator().manual_seed(6))
    model = make_model(conv, edge_readout=edge_readout)
    torch.testing.assert_close(model(graph), model(Batch.from_data_list([graph])), rtol=0, atol=0)


def scale_classification_data(num_networks, seed):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_networks) % 2
    graphs = []
    for index, label in enumerate(labels.tolist()):
        graph = random_graph(MIXED_WIDTHS[index % 3], generator, torch.float32, scale=2.0 if label else 0.5)
        graph.y = torch.tensor([label])
        graphs.append(graph)
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("conv", CONVS)
def test_training_lowers_the_loss_and_reaches_every_parameter(conv):
    batch = scale_classification_data(48, seed=5)
    model = make_model(conv, torch.float32).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(batch), batch.y)
        loss.backward()
        if step == 0:
            no_gradient = [
                name for name, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)
            ]
            assert no_gradient == []
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


@pytest.mark.parametrize("conv", CONVS)
def test_reset_parameters_reaches_every_parameter(conv):
    model = make_model(conv)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    perturbed = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.reset_parameters()
    assert [name for name, p in model.named_parameters() if torch.equal(p, perturbed[name])] == []


def test_pna_degree_histogram_matches_the_two_way_graph():
    batch = mixed_batch(6, repeats=1)
    edge_index = batch.edge_index
    targets = torch.cat([edge_index[1], edge_index[0]])
    in_degree = degree(targets, batch.num_nodes, dtype=torch.long)
    expected = torch.bincount(in_degree)
    assert torch.equal(pna_degree_histogram(graph_specs(batch)), expected)
    # The batch itself stands for its networks' architectures.
    assert torch.equal(pna_degree_histogram(batch), expected)
    assert pna_degree_histogram([WIDTHS]).tolist() == [0, 0, 0, 0, 1, 2, 9]
    with pytest.raises(TypeError, match=r"takes layer widths or WeightSpaceSpecs .* got an item 'x'"):
        pna_degree_histogram("x")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="unknown conv 'gcn'"):
        WeightSpaceGNN("gcn", 3, 2, 1, out_features=1)
    with pytest.raises(ValueError, match="unknown readout 'median'"):
        WeightSpaceGNN("gine", 3, 2, 1, out_features=1, readout="median")
    with pytest.raises(ValueError, match="needs pna_degree"):
        WeightSpaceGNN("pna", 3, 2, 1, out_features=1)
    with pytest.raises(ValueError, match=r"^pna_degree counts no neuron with incoming messages"):
        WeightSpaceGNN("pna", 3, 2, 1, out_features=1, pna_degree=torch.tensor([]))
    with pytest.raises(ValueError, match=r"^probe_features must be an integer >= 0 .*, got 2.5 and 1"):
        WeightSpaceGNN("gine", 3, 2, 1, out_features=1, probe_features=2.5)
    with pytest.raises(ValueError, match="heads=3 must divide hidden_channels=16"):
        WeightSpaceGNN("gatv2", 3, 2, 1, out_features=1, hidden_channels=16, heads=3)
    with pytest.raises(ValueError, match="at least one architecture"):
        pna_degree_histogram([])
    model = WeightSpaceGNN("gine", 3, 2, 1, out_features=1, hidden_channels=8, in_channels=2)
    with pytest.raises(ValueError, match=r"expects 'x' of shape \[\*, 2\], got \(35, 1\)"):
        model(mixed_batch(0, torch.float32, repeats=1))
    with pytest.raises(ValueError, match="built for 3 weight layers, the batch has 2"):
        make_model("gine", torch.float32)(Batch.from_data_list([random_graph((2, 4, 1), torch.Generator())]))
    with pytest.raises(
        ValueError, match=r"WeightSpaceGNN expects 'x' of dtype torch.float32 \(its parameters'\), got torch.float64"
    ):
        make_model("gine", torch.float32)(mixed_batch(0, torch.float64, repeats=1))


def test_edge_update_follows_its_endpoints():
    torch.manual_seed(0)
    update = EdgeUpdate(8).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1]])
    edge_attr = torch.randn(4, 8, dtype=torch.float64)
    relabel = torch.tensor([3, 0, 4, 1, 2])  # new node n is old node relabel[n]
    new_of_old = torch.argsort(relabel)
    order = torch.tensor([2, 0, 3, 1])
    out = update(x[relabel], new_of_old[edge_index[:, order]], edge_attr[order])
    torch.testing.assert_close(out, update(x, edge_index, edge_attr)[order], rtol=0, atol=1e-14)
    assert "channels=8" in repr(update)


@pytest.mark.parametrize("conv", CONVS)
def test_probe_features_keep_invariance_and_per_network_outputs(conv):
    batch = mixed_batch(7)
    batch.activation = ["sine(30.0)", "relu"] * 3
    model = make_model(conv, probe_features=4)
    assert model.probe is not None and "probe_features=4" in repr(model)
    permuted = permute_hidden(batch, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(model(permuted), model(batch), rtol=0, atol=1e-12)
    alone = torch.cat([model(Batch.from_data_list([graph])) for graph in batch.to_data_list()])
    torch.testing.assert_close(model(batch), alone, rtol=0, atol=1e-12)
    # The networks' values at the probe points reach the output.
    before = model(batch)
    with torch.no_grad():
        model.probe.points.add_(0.5)
    assert (model(batch) - before).abs().amax() > 1e-6
