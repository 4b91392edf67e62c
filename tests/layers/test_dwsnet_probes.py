import itertools

import pytest
import torch
from brief_training import train_briefly
from torch import nn
from torch_geometric.data import Batch

from wsgraph import mlp_to_graph, permute_hidden
from wsgraph.layers import DWSNet

MIXED_WIDTHS = [(2, 5, 4, 1), (2, 3, 6, 1), (2, 4, 4, 1)]


def random_graph(widths, generator, activation="sine(30.0)"):
    pairs = [
        (
            torch.randn(out, inp, generator=generator, dtype=torch.float64),
            torch.randn(out, generator=generator, dtype=torch.float64),
        )
        for inp, out in itertools.pairwise(widths)
    ]
    return mlp_to_graph(pairs, activation=activation)


def make_batch(seed, widths=MIXED_WIDTHS, repeats=2):
    generator = torch.Generator().manual_seed(seed)
    activations = ("sine(30.0)", "relu")
    graphs = [random_graph(w, generator, activations[i % 2]) for i, w in enumerate(widths * repeats)]
    return Batch.from_data_list(graphs)


def make_model(probe_features=4, backend="scatter"):
    torch.manual_seed(0)
    model = DWSNet(3, 2, 1, 3, hidden_channels=8, depth=2, probe_features=probe_features, backend=backend)
    return model.double().eval()


@pytest.mark.parametrize(("widths", "backend"), [(MIXED_WIDTHS, "scatter"), (MIXED_WIDTHS[:1], "dense")])
def test_invariant_to_hidden_permutations(widths, backend):
    batch = make_batch(1, widths)
    model = make_model(backend=backend)
    permuted = permute_hidden(batch, generator=torch.Generator().manual_seed(2))
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    torch.testing.assert_close(model(permuted), model(batch), rtol=0, atol=1e-12)


def test_each_network_gets_its_own_output_and_the_probes_reach_it():
    batch = make_batch(3)
    model = make_model()
    alone = torch.cat([model(Batch.from_data_list([graph])) for graph in batch.to_data_list()])
    torch.testing.assert_close(model(batch), alone, rtol=0, atol=1e-12)
    before = model(batch)
    with torch.no_grad():
        model.probe.points.add_(0.5)
    assert (model(batch) - before).abs().amax() > 1e-6
    # The first DWS layer reads the bias and the K probe channels (and K zero channels on the weights).
    assert model.stack.convs[0].in_channels == 5 and "probe_features=4" in repr(model)


def test_without_probes_the_model_is_unchanged():
    model = make_model(probe_features=0)
    assert model.probe is None and model.stack.convs[0].in_channels == 1 and "probe" not in repr(model)


def test_training_reaches_the_probe_points_and_every_read_projection():
    batch = make_batch(4)
    batch.y = torch.arange(batch.num_graphs) % 3
    model = make_model().train()
    nn.functional.cross_entropy(model(batch), batch.y).backward()
    silent = [n for n, p in model.probe.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    # Input neurons have no features in a DWS layer: their values (the points themselves) are not read.
    assert sorted(silent) == [
        "projections.0.0.bias",
        "projections.0.0.weight",
        "projections.0.1.bias",
        "projections.0.1.weight",
    ]


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="needs in_channels=1, got 4 and 2"):
        DWSNet(3, 2, 1, 3, in_channels=2, probe_features=4)
    with pytest.raises(ValueError, match="probe_features must be >= 0"):
        DWSNet(3, 2, 1, 3, probe_features=-1)


@pytest.mark.slow
def test_a_short_training_run_beats_the_majority_class_on_digit_inrs(digit_inrs, tmp_path):
    # `wsgraph train --model dwsnet --probe-features 16` for 5 epochs on the digit SIRENs.
    result = train_briefly(digit_inrs, tmp_path / "run", "dwsnet", probe_features=16)
    majority = result["reference"]["test_metric"]
    assert result["test_metric"] > majority + 5, (result["test_metric"], majority)
