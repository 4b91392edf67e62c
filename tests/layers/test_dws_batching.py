"""Networks of different hidden widths batch together (docs/layers.md, "What the tests prove" 5).

Every network of a mixed-width batch gets the output it gets alone, and the layer's
output is a proper PyG batch that splits back into graphs and networks.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch_geometric.data import Batch

from wsgraph import WeightSpaceGraph, graph_to_params
from wsgraph.layers import DWSEditNet, DWSLayer, DWSNet, InvariantReadout

from .weight_space_numerics import FlatLayout, flats_from_graph, graph_from_flat, random_flat, single_threaded

# Same signature (M, d_0, d_M) within a group, hidden widths differ (one included).
MIXED_GROUPS = [
    [(3, 4, 1), (3, 1, 1), (3, 2, 1), (3, 4, 1)],
    [(2, 3, 4, 2), (2, 1, 5, 2), (2, 4, 1, 2), (2, 2, 2, 2), (2, 1, 1, 2)],
    [(2, 3, 2, 4, 1, 2), (2, 1, 5, 2, 3, 2), (2, 2, 2, 2, 2, 2)],
]
TOL = {"rtol": 1e-12, "atol": 1e-12}


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _ids(group):
    return "M" + str(len(group[0]) - 1)


def _networks(group, channels, seed=0):
    """One ``[D, C]`` flat vector and one single-network graph per architecture of ``group``."""
    generator = torch.Generator().manual_seed(seed)
    flats = [random_flat(1, widths, channels, generator)[0] for widths in group]
    graphs = [graph_from_flat(flat.unsqueeze(0), widths).to_data_list()[0] for flat, widths in zip(flats, group)]
    return flats, graphs


def _signature(group):
    return len(group[0]) - 1, group[0][0], group[0][-1]


@pytest.mark.parametrize("group", MIXED_GROUPS, ids=_ids)
def test_mixed_width_batch_equals_networks_alone(group):
    torch.manual_seed(0)
    layer = DWSLayer(2, 3, *_signature(group)).double()
    _, graphs = _networks(group, 2)
    with torch.no_grad():
        output = layer(Batch.from_data_list(graphs))
        alone = [layer(graph) for graph in graphs]
    assert isinstance(output, Batch) and output.num_graphs == len(group)
    assert all(isinstance(single, WeightSpaceGraph) for single in alone)
    for network, (batched, single) in enumerate(zip(flats_from_graph(output), alone)):
        assert batched.shape == (FlatLayout(group[network]).size, 3)
        torch.testing.assert_close(batched, flats_from_graph(single)[0], **TOL)
    for batched, single in zip(output.to_data_list(), alone):
        torch.testing.assert_close(batched.x, single.x, **TOL)
        torch.testing.assert_close(batched.edge_attr, single.edge_attr, **TOL)
        assert torch.equal(batched.edge_index, single.edge_index)


@pytest.mark.parametrize("group", MIXED_GROUPS, ids=_ids)
def test_one_channel_output_converts_back_to_networks(group):
    torch.manual_seed(1)
    layer = DWSLayer(1, 1, *_signature(group)).double()
    _, graphs = _networks(group, 1, seed=1)
    with torch.no_grad():
        output = layer(Batch.from_data_list(graphs))
    params = graph_to_params(output)
    assert len(params) == len(group)
    for widths, network_params, flat in zip(group, params, flats_from_graph(output)):
        layout = FlatLayout(widths)
        as_flat = flat.unsqueeze(0)
        assert len(network_params) == layout.num_weight_layers
        for layer_index, (weight, bias) in enumerate(network_params, start=1):
            torch.testing.assert_close(weight, layout.weight(as_flat, layer_index)[0, ..., 0].T, rtol=0, atol=0)
            torch.testing.assert_close(bias, layout.bias(as_flat, layer_index)[0, :, 0], rtol=0, atol=0)


def test_dense_backend_rejects_mixed_batches():
    group = MIXED_GROUPS[1]
    layer = DWSLayer(1, 1, *_signature(group), backend="dense").double()
    _, graphs = _networks(group, 1)
    with pytest.raises(ValueError, match="architecture"):
        layer(Batch.from_data_list(graphs))


@pytest.mark.parametrize("group", MIXED_GROUPS, ids=_ids)
def test_models_on_mixed_batches_equal_networks_alone(group):
    signature = _signature(group)
    _, graphs = _networks(group, 1, seed=2)
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(2)
    readouts = [InvariantReadout(1, *signature, reduce=reduce).double() for reduce in ("mean", "max", "sum")]
    classifier = DWSNet(*signature, out_features=3, hidden_channels=5, depth=2).double().eval()
    editor = DWSEditNet(*signature, hidden_channels=5, depth=2).double().eval()
    with torch.no_grad():
        for model in [*readouts, classifier]:
            together = model(batch)
            alone = torch.cat([model(graph) for graph in graphs])
            torch.testing.assert_close(together, alone, rtol=1e-10, atol=1e-12)
        edited = flats_from_graph(editor(batch))
        for graph, batched in zip(graphs, edited):
            torch.testing.assert_close(batched, flats_from_graph(editor(graph))[0], rtol=1e-10, atol=1e-12)


def test_models_refuse_networks_of_another_signature():
    # A 3->1 network has as many input and output neurons as the 1->2 model's shapes can take; its result would
    # mean nothing, so every model checks the signature it was built for.
    from torch import nn

    from wsgraph import mlp_to_graph

    batch = Batch.from_data_list([mlp_to_graph(nn.Linear(3, 1))] * 2)
    models = [
        DWSNet(num_weight_layers=1, in_dim=1, out_dim=2, out_features=3, hidden_channels=4, depth=1),
        DWSEditNet(num_weight_layers=1, in_dim=1, out_dim=2, hidden_channels=4, depth=1),
        InvariantReadout(1, num_weight_layers=3, in_dim=2, out_dim=1),
    ]
    for model in models:
        with pytest.raises(ValueError, match=r"was built for networks with \(M, d_0, d_M\) = \(\d, \d, \d\), got \(1, 3, 1\)"):  # fmt: skip
            model.eval()(batch)


def _two_networks():
    from mlp_helpers import build_mlp

    from wsgraph import mlp_to_graph

    return Batch.from_data_list([mlp_to_graph(build_mlp([2, 4, 3, 1], seed=seed)) for seed in range(2)])


def _dws_models(in_channels: int = 1) -> list[torch.nn.Module]:
    signature = {"num_weight_layers": 3, "in_dim": 2, "out_dim": 1}
    return [
        DWSLayer(in_channels, 4, **signature),
        DWSNet(**signature, out_features=3, in_channels=in_channels, hidden_channels=4, depth=1),
        DWSEditNet(**signature, in_channels=in_channels, hidden_channels=4, depth=1),
    ]


def test_models_name_a_channel_mismatch_instead_of_failing_in_a_matrix_product():
    batch = _two_networks()
    for model in _dws_models(in_channels=3):
        with pytest.raises(ValueError, match=rf"{type(model).__name__} was built for 3 feature channels, got x of shape \[\d+, 1\]"):  # fmt: skip
            model(batch)


def test_models_name_a_dtype_mismatch():
    batch = _two_networks()
    for model in _dws_models():
        with pytest.raises(ValueError, match=r"parameters are torch\.float64, the batch's biases torch\.float32"):
            model.double()(batch)
        # Autocast casts the features itself, so it is not refused there.
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model.float()(batch)


def test_batch_norm_refuses_to_train_on_a_batch_of_one_network_and_names_the_way_out():
    one = Batch.from_data_list([_two_networks()[0]])
    model = DWSNet(num_weight_layers=3, in_dim=2, out_dim=1, out_features=3, hidden_channels=4, depth=1)
    with pytest.raises(ValueError, match=r"layer 3's biases have 1 in this batch \(a batch of one network\).*eval\(\)"):
        model(one)
    assert model.eval()(one).shape == (1, 3)
    layer_norm = DWSNet(
        num_weight_layers=3, in_dim=2, out_dim=1, out_features=3, hidden_channels=4, depth=1, norm="layer"
    )
    assert layer_norm(one).shape == (1, 3)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        # Each failed inside torch: a division by zero, a negative dimension, an empty() of a float.
        (lambda: DWSLayer(0, 4, 2, 2, 1), "DWSLayer: in_channels must be a positive integer, got 0"),
        (lambda: DWSLayer(-1, 4, 2, 2, 1), "DWSLayer: in_channels must be a positive integer, got -1"),
        (lambda: DWSLayer(1.5, 4, 2, 2, 1), "DWSLayer: in_channels must be a positive integer, got 1.5"),
        (lambda: DWSNet(2, 2, 1, 10, hidden_channels=0), "DWSNet: hidden_channels must be a positive integer, got 0"),
        (lambda: DWSNet(2, 2, 1, 10, depth=0), "DWSNet: depth must be a positive integer, got 0"),
        (lambda: DWSNet(2, 2, 1, 0), "DWSNet: out_features must be a positive integer, got 0"),
        (lambda: DWSNet(2, 2, 1, 10, head_hidden=0), "DWSNet: head_hidden must be a positive integer, got 0"),
        (lambda: DWSEditNet(2, 2, 1, in_channels=0), "DWSEditNet: in_channels must be a positive integer, got 0"),
    ],
)
def test_models_refuse_sizes_that_are_not_positive_integers(build, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build()
