import pytest
import torch
from brief_training import train_briefly
from torch import nn
from torch_geometric.data import Batch

from wsgraph import permute_hidden
from wsgraph.core.permute import apply_node_permutation
from wsgraph.layers import NeuralGraphTransformer

from .test_ng_gnn import (
    assert_training_reaches_every_parameter_and_lowers_the_loss,
    make_batch,
    random_graph,
)

# Settings that change which code runs: encoders, attention, edge updates, norms, readouts, probes.
VARIANTS = [
    {},
    {"probe_features": 4},
    {"pooling": "cls"},
    {"pooling": "mean", "pooling_layer": "all", "bidirectional": True},
    {"pooling": "max", "modulate_values": False, "update_edges": False},
    {"pooling": "sum", "layer_norm": False, "fourier_features": 0, "encoder_layers": 2, "head_layers": 2},
]


def make_model(out_dim=1, dtype=torch.float64, **settings):
    torch.manual_seed(0)
    sizes = {"node_channels": 8, "edge_channels": 6, "attention_channels": 8, "node_hidden": 10, "edge_hidden": 7}
    model = NeuralGraphTransformer(3, 2, out_dim, 3, heads=2, depth=3, dropout=0.0, **sizes, **settings)
    return model.to(dtype).eval()


@pytest.mark.parametrize("settings", VARIANTS)
def test_invariant_to_hidden_permutations(settings):
    batch = make_batch(1)
    model = make_model(**settings)
    permuted = permute_hidden(batch, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    torch.testing.assert_close(model(permuted), model(batch), rtol=0, atol=1e-12)


@pytest.mark.parametrize("settings", [{}, {"pooling": "cls", "bidirectional": True}])
def test_sensitive_to_swapping_input_or_output_neurons(settings):
    # Input and output neurons are not interchangeable in an MLP: swapping two changes the network.
    batch = make_batch(3, widths=[(2, 5, 4, 2), (2, 3, 6, 2)])
    model = make_model(out_dim=2, **settings)
    reference = model(batch)
    for first in (batch.ptr[:-1], batch.ptr[1:] - 2):
        source = torch.arange(batch.num_nodes)
        source[first], source[first + 1] = first + 1, first
        swapped = apply_node_permutation(batch, source)
        difference = (model(swapped) - reference).abs().amax(dim=1)
        assert bool((difference > 1e-6).all())


@pytest.mark.parametrize("settings", VARIANTS)
def test_mixed_widths_give_each_network_its_own_output(settings):
    batch = make_batch(4)
    model = make_model(**settings)
    alone = torch.cat([model(Batch.from_data_list([graph])) for graph in batch.to_data_list()])
    torch.testing.assert_close(model(batch), alone, rtol=0, atol=1e-12)
    torch.testing.assert_close(model(batch.to_data_list()[2]), alone[2:3], rtol=0, atol=1e-12)


def test_gradients_of_padded_batches_equal_those_of_each_network_alone():
    graphs = make_batch(5).to_data_list()
    for index, graph in enumerate(graphs):
        graph.y = torch.tensor([index % 3])
    batch = Batch.from_data_list(graphs)
    model = make_model(probe_features=4)

    def gradients(batches):
        model.zero_grad()
        loss = sum(nn.functional.cross_entropy(model(b), b.y, reduction="sum") for b in batches)
        loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters()}

    together = gradients([batch])
    apart = gradients([Batch.from_data_list([graph]) for graph in graphs])
    for name, gradient in together.items():
        # Sums in another order: the probe points' gradients reach about 100, so the tolerance is relative too.
        torch.testing.assert_close(gradient, apart[name], rtol=1e-10, atol=1e-11, msg=name)


def test_edges_in_any_order_give_the_same_output():
    batch = make_batch(10)
    order = torch.randperm(batch.num_edges, generator=torch.Generator().manual_seed(11))
    shuffled = batch.clone()
    shuffled.edge_index, shuffled.edge_attr = batch.edge_index[:, order], batch.edge_attr[order]
    shuffled.edge_layer = batch.edge_layer[order]
    model = make_model()
    torch.testing.assert_close(model(shuffled), model(batch), rtol=0, atol=1e-12)


def test_training_reaches_every_parameter_and_lowers_the_loss():
    assert_training_reaches_every_parameter_and_lowers_the_loss(make_model(dtype=torch.float32, probe_features=4))


def test_reset_parameters_reaches_every_parameter_and_the_fourier_frequencies():
    model = make_model(probe_features=4, pooling="cls")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    frequencies = model.edge_encoder[0].frequencies.clone()
    model.reset_parameters()
    assert [name for name, p in model.named_parameters() if torch.equal(p, before[name])] == []
    assert not torch.equal(model.edge_encoder[0].frequencies, frequencies)
    # The released code's initialisation of the transformer's maps: Xavier weights, zero biases.
    attention = model.blocks[0].attention.out
    assert not attention.bias.any() and attention.weight.abs().max() <= (6 / (8 + 8)) ** 0.5


def test_published_defaults():
    model = NeuralGraphTransformer(3, 2, 1, 10)
    assert (model.node_channels, model.depth, model.heads, model.dropout) == (64, 4, 8, 0.2)
    attention = model.blocks[0].attention
    assert attention.attention_channels == 128 and attention.modulate_values
    assert attention.scale == pytest.approx(128**-0.5)
    assert model.blocks[0].edge_update.lin_out.out_features == 32
    assert model.blocks[0].mlp[0].out_features == 128 and model.blocks[0].edge_update.mlp[0].out_features == 64
    # No pair update after the last block: nothing reads it.
    assert [block.edge_update is None for block in model.blocks] == [False, False, False, True]
    features = model.edge_encoder[0]
    assert (features.in_features, features.num_frequencies, features.sigma) == (1, 128, 1.0)
    assert model.pooling == "cat" and model.cls_token is None and model.probe is None
    assert [m.out_features for m in model.head if isinstance(m, nn.Linear)] == [128, 10]
    assert model.head[0].in_features == 64
    assert "heads=8" in repr(model)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="attention_channels=10 must be a multiple of heads=8"):
        NeuralGraphTransformer(3, 2, 1, 3, attention_channels=10)
    with pytest.raises(ValueError, match="unknown pooling 'first'"):
        NeuralGraphTransformer(3, 2, 1, 3, pooling="first")
    with pytest.raises(ValueError, match="needs pooling_layer='last'"):
        NeuralGraphTransformer(3, 2, 1, 3, pooling_layer="all")
    with pytest.raises(ValueError, match="heads must be positive, got 0"):
        NeuralGraphTransformer(3, 2, 1, 3, heads=0)
    with pytest.raises(ValueError, match="dropout must be in"):
        NeuralGraphTransformer(3, 2, 1, 3, dropout=1.0)
    with pytest.raises(ValueError, match="in_channels=2"):
        NeuralGraphTransformer(3, 2, 1, 3, in_channels=2, probe_features=4)
    model = make_model()
    with pytest.raises(ValueError, match="built for 3 weight layers, the batch has 2"):
        model(Batch.from_data_list([random_graph((2, 4, 1), torch.Generator())]))
    with pytest.raises(ValueError, match=r"NeuralGraphTransformer expects 'x' of shape \[\*, 1\]"):
        batch = make_batch(0, repeats=1)
        batch.x = batch.x.repeat(1, 2)
        model(batch)
    with pytest.raises(ValueError, match=r"NeuralGraphTransformer expects 'x' of dtype torch.float64"):
        model(make_batch(0, repeats=1, dtype=torch.float32))


@pytest.mark.slow
def test_a_short_training_run_beats_the_majority_class_on_digit_inrs_and_its_checkpoint_comes_back(
    digit_inrs, tmp_path
):
    # 2 epochs on 200 of the digit SIRENs (the transformer trains at about 12 networks/s here).
    from wsgraph.datasets import WeightSpaceDataset
    from wsgraph.training import load_trained_model

    result = train_briefly(digit_inrs, tmp_path / "run", "ng-transformer", epochs=2, max_train=200, probe_features=16)
    majority = result["reference"]["test_metric"]
    assert result["reference"]["predictor"] == "always the most frequent training class"
    assert result["test_metric"] > majority + 5, (result["test_metric"], majority)

    trained = load_trained_model(tmp_path / "run" / "best.pt")
    assert isinstance(trained.model, NeuralGraphTransformer) and trained.spec.name == "ng-transformer"
    test = WeightSpaceDataset(digit_inrs, split="test", log=False)
    batch = Batch.from_data_list([test[i] for i in range(len(test))])
    with torch.no_grad():
        accuracy = float((trained(batch).argmax(dim=-1) == batch.y.view(-1)).double().mean() * 100)
    assert accuracy == pytest.approx(result["test_metric"], abs=1e-9)
