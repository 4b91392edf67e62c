import itertools

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from wsgraph import WeightSpaceSpec, graph_to_mlp, mlp_to_graph, permute_hidden
from wsgraph.layers.mlp_baseline import FlatMLP, flatten_params

WIDTHS = (2, 5, 4, 1)


def random_params(widths, batch_size, generator, dtype=torch.float64, scale=1.0):
    return [
        (
            scale * torch.randn(batch_size, out, inp, generator=generator, dtype=dtype),
            scale * torch.randn(batch_size, out, generator=generator, dtype=dtype),
        )
        for inp, out in itertools.pairwise(widths)
    ]


def test_flatten_params_lists_weights_then_biases_in_canonical_order():
    params = random_params(WIDTHS, 3, torch.Generator().manual_seed(0))
    flat = flatten_params(mlp_to_graph(params, activation="relu"))
    expected = torch.cat([w.transpose(1, 2).reshape(3, -1) for w, _ in params] + [b for _, b in params], dim=1)
    assert torch.equal(flat, expected)
    assert flat.size(1) == WeightSpaceSpec(WIDTHS).num_params


def test_output_shape_and_repr():
    batch = mlp_to_graph(random_params(WIDTHS, 6, torch.Generator().manual_seed(0), torch.float32), activation="relu")
    model = FlatMLP(WeightSpaceSpec(WIDTHS).num_params, out_features=3, hidden_channels=16, depth=2, dropout=0.1)
    assert model(batch).shape == (6, 3)
    assert "num_params=44, out_features=3, hidden_channels=16, depth=2, dropout=0.1, batch_norm=True" in repr(model)


def test_default_sizes_are_the_published_ones():
    model = FlatMLP(44, out_features=10)
    linears = [m for m in model.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(44, 32), *[(32, 32)] * 4, (32, 10)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.mlp) == 4


def test_wrong_size_and_mixed_architectures_are_clear_errors():
    generator = torch.Generator().manual_seed(0)
    batch = mlp_to_graph(random_params(WIDTHS, 2, generator, torch.float32), activation="relu")
    with pytest.raises(ValueError, match="built for 45 parameters per network, the batch has 44"):
        FlatMLP(45, out_features=1)(batch)
    graphs = [
        mlp_to_graph([(w[0], b[0]) for w, b in random_params(widths, 1, generator, torch.float32)], activation="relu")
        for widths in (WIDTHS, (2, 3, 6, 1))
    ]
    with pytest.raises(ValueError, match="mixes architectures"):
        FlatMLP(44, out_features=1)(Batch.from_data_list(graphs))


def test_permute_hidden_changes_the_flat_input_not_the_networks():
    generator = torch.Generator().manual_seed(1)
    batch = mlp_to_graph(random_params(WIDTHS, 8, generator), activation="relu")
    permuted = permute_hidden(batch, generator=generator)

    changed = (flatten_params(batch) != flatten_params(permuted)).any(dim=1)
    assert bool(changed.all())

    inputs = torch.randn(32, WIDTHS[0], generator=generator, dtype=torch.float64)
    for original, shuffled in zip(graph_to_mlp(batch), graph_to_mlp(permuted)):
        torch.testing.assert_close(shuffled(inputs), original(inputs), rtol=0, atol=1e-12)


def test_flat_mlp_is_not_invariant_to_hidden_permutations():
    generator = torch.Generator().manual_seed(2)
    batch = mlp_to_graph(random_params(WIDTHS, 8, generator), activation="relu")
    reversal = [torch.arange(width).flip(0) for width in WIDTHS[1:-1]]
    permuted = permute_hidden(batch, perms=[reversal] * 8)
    torch.manual_seed(0)
    model = FlatMLP(WeightSpaceSpec(WIDTHS).num_params, out_features=4).double().eval()
    difference = (model(batch) - model(permuted)).abs().amax(dim=1)
    assert bool((difference > 1e-3).all())


def scale_classification_data(batch_size, generator):
    labels = torch.arange(batch_size) % 2
    scale = torch.where(labels == 1, 2.0, 0.5)
    params = random_params(WIDTHS, batch_size, generator, torch.float32)
    params = [(w * scale.view(-1, 1, 1), b * scale.view(-1, 1)) for w, b in params]
    return mlp_to_graph(params, activation="relu", y=labels)


def test_training_lowers_the_loss_and_reaches_every_parameter():
    torch.manual_seed(0)
    batch = scale_classification_data(64, torch.Generator().manual_seed(3))
    model = FlatMLP(WeightSpaceSpec(WIDTHS).num_params, out_features=2, hidden_channels=32, depth=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        optimizer.zero_grad()
        augmented = permute_hidden(batch, generator=torch.Generator().manual_seed(step))
        loss = nn.functional.cross_entropy(model(augmented), augmented.y)
        loss.backward()
        if step == 0:
            assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_reset_parameters_reaches_every_parameter():
    model = FlatMLP(44, out_features=2, hidden_channels=8, depth=3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    perturbed = [p.detach().clone() for p in model.parameters()]
    model.reset_parameters()
    assert all(not torch.equal(p, q) for p, q in zip(model.parameters(), perturbed))
