"""One WeightSpaceLayout per batch: built and checked once, read by every layer of a model."""

import copy
import itertools

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

import wsgraph.layers.structure as structure
from wsgraph.core.graph import assemble
from wsgraph.layers import DWSConv, DWSEditNet, DWSLayer, DWSNet, InvariantReadout, WeightSpaceLayout


def _batch(widths_list, channels=1, seed=0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for widths in widths_list:
        weights = [torch.randn(1, a, b, channels, generator=generator) for a, b in itertools.pairwise(widths)]
        biases = [torch.randn(1, b, channels, generator=generator) for b in widths[1:]]
        graphs.append(assemble(weights, biases).to_data_list()[0])
    return Batch.from_data_list(graphs)


MIXED = [(2, 3, 5, 1), (2, 4, 2, 1), (2, 6, 6, 1)]


@pytest.fixture
def records(monkeypatch):
    """Counts layout constructions and edge checks, and the layouts every layer and readout reads."""
    seen = {"built": 0, "checked": 0, "layouts": []}
    build, check = WeightSpaceLayout._build.__func__, structure.edge_positions

    def counting_build(cls, *args, **kwargs):
        seen["built"] += 1
        return build(cls, *args, **kwargs)

    def counting_check(*args, **kwargs):
        seen["checked"] += 1
        return check(*args, **kwargs)

    def recording(method):
        def wrapper(self, features, layout):
            seen["layouts"].append(layout)
            return method(self, features, layout)

        return wrapper

    monkeypatch.setattr(WeightSpaceLayout, "_build", classmethod(counting_build))
    monkeypatch.setattr(structure, "edge_positions", counting_check)
    monkeypatch.setattr(DWSLayer, "forward_features", recording(DWSLayer.forward_features))
    monkeypatch.setattr(InvariantReadout, "forward_features", recording(InvariantReadout.forward_features))
    return seen


def _one_object(layouts):
    return len(layouts) > 0 and all(layout is layouts[0] for layout in layouts)


def test_every_layer_of_a_model_reads_the_one_layout_of_its_batch(records):
    model = DWSNet(3, 2, 1, 4, hidden_channels=4, depth=3)
    batch = _batch(MIXED)
    model(batch)
    assert (records["built"], records["checked"]) == (1, 1)
    assert len(records["layouts"]) == 4 and _one_object(records["layouts"])  # 3 DWS layers and the readout
    model(batch)  # the same batch again: nothing is rebuilt or checked again
    assert (records["built"], records["checked"]) == (1, 1)
    assert _one_object(records["layouts"])
    model(_batch(MIXED, seed=1))  # a new batch: its own layout, once
    assert (records["built"], records["checked"]) == (2, 2)
    assert records["layouts"][-1] is not records["layouts"][0]


def test_an_editor_and_a_copy_of_the_batch_share_the_layout(records):
    batch = _batch(MIXED)
    DWSEditNet(3, 2, 1, hidden_channels=4, depth=2)(batch)
    values = copy.copy(batch)  # what the stacked loader does: new values, the same structure
    values.x, values.edge_attr = batch.x * 2, batch.edge_attr * 2
    DWSNet(3, 2, 1, 4, hidden_channels=4, depth=2)(values)
    assert (records["built"], records["checked"]) == (1, 1)
    assert _one_object(records["layouts"])


def test_pyg_style_convolutions_share_one_layout(records):
    class ConvModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(DWSConv(c_in, 3, 3, 2, 1) for c_in in (1, 3, 3))

        def forward(self, x, edge_index, edge_attr, layer_widths):
            for conv in self.convs:
                x, edge_attr = conv(x, edge_index, edge_attr, layer_widths)
                x, edge_attr = x.relu(), edge_attr.relu()
            return x, edge_attr

    batch = _batch(MIXED)
    ConvModel()(batch.x, batch.edge_index, batch.edge_attr, batch.layer_widths)
    assert (records["built"], records["checked"]) == (1, 1)
    assert len(records["layouts"]) == 3 and _one_object(records["layouts"])
    # And the layout of a wsgraph model called on the same batch afterwards is that one too.
    DWSLayer(1, 2, 3, 2, 1)(batch)
    assert records["built"] == 1 and _one_object(records["layouts"])


def test_an_explicit_layout_is_used_as_given(records):
    batch = _batch(MIXED)
    layout = WeightSpaceLayout.of(batch)
    model = DWSNet(3, 2, 1, 4, hidden_channels=4, depth=2)
    conv = DWSConv(1, 2, 3, 2, 1)
    model(batch, layout=layout)
    conv(batch.x, batch.edge_index, batch.edge_attr, batch.layer_widths, layout=layout)
    assert records["built"] == 1 and _one_object(records["layouts"]) and records["layouts"][0] is layout


def test_a_replaced_edge_index_gets_its_own_layout():
    # A shallow copy shares the cached layout only as long as it keeps the same edge_index.
    torch.manual_seed(0)
    layer = DWSLayer(1, 2, 3, 2, 1)
    batch = _batch(MIXED)
    expected = layer(batch)
    perm = torch.randperm(batch.num_edges, generator=torch.Generator().manual_seed(3))
    shuffled = copy.copy(batch)
    shuffled.edge_index, shuffled.edge_attr = batch.edge_index[:, perm], batch.edge_attr[perm]
    assert WeightSpaceLayout.of(shuffled) is not WeightSpaceLayout.of(batch)
    torch.testing.assert_close(layer(shuffled).edge_attr, expected.edge_attr[perm])


def test_an_inconsistent_batch_is_refused_once_before_any_layer_runs(records):
    batch = _batch(MIXED)
    bad = copy.copy(batch)
    bad.edge_index = batch.edge_index.clone()
    bad.edge_index[1, 4] = 0  # an input neuron as a target
    model = DWSNet(3, 2, 1, 4, hidden_channels=4, depth=3)
    with pytest.raises(ValueError, match=r"^edge 4 joins node \d+ \(layer 0 of network 0\) to node 0 "):
        model(bad)
    assert records["checked"] == 1 and records["layouts"] == []
    short = copy.copy(batch)
    short.layer_widths = batch.layer_widths[:2]
    with pytest.raises(ValueError, match=r"layer_widths describe .* not a wsgraph graph"):
        model(short)
    assert records["checked"] == 2 and records["layouts"] == []
