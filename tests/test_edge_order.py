"""Conversions, permutations and transforms on graphs whose edges are not in canonical order.

Each either gives the answer it gives on the canonical graph (edge outputs in the
caller's edge order) or refuses with a ValueError naming the problem.
"""

from __future__ import annotations

import pytest
import torch
from graph_helpers import reorder_edges
from mlp_helpers import assert_params_equal, build_mlp
from torch import nn
from torch_geometric.data import Batch

import wsgraph
from wsgraph.datasets.transforms import FirstLayerRotation, rotate_first_layer
from wsgraph.inrs.render import render_inr
from wsgraph.layers import flatten_params
from wsgraph.training import FlatMLPEditor

ARCHITECTURES = [(2, 4, 3, 1), (2, 1, 5, 1), (2, 3, 3, 1)]


def _graph(widths, seed=0):
    return wsgraph.mlp_to_graph(build_mlp(widths, activation=nn.Tanh, dtype=torch.float64, seed=seed))


def _perm(data, seed=1):
    return torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(seed))


def _cases():
    single = _graph(ARCHITECTURES[0])
    uniform = Batch.from_data_list([_graph(ARCHITECTURES[0], seed) for seed in range(3)])
    mixed = Batch.from_data_list([_graph(widths, seed) for seed, widths in enumerate(ARCHITECTURES)])
    return {"single": single, "uniform": uniform, "mixed": mixed}


@pytest.fixture(params=["single", "uniform", "mixed"])
def graphs(request):
    data = _cases()[request.param]
    perm = _perm(data)
    assert not torch.equal(perm, torch.arange(data.num_edges))
    return data, reorder_edges(data, perm), perm


def test_sort_edges_restores_the_canonical_graph(graphs):
    data, shuffled, _ = graphs
    restored = wsgraph.sort_edges(shuffled)
    for key in ("edge_index", "edge_attr", "edge_layer", "x", "layer_widths"):
        assert torch.equal(restored[key], data[key]), key
    assert wsgraph.sort_edges(data) is data
    if isinstance(data, Batch):
        for original, back in zip(data.to_data_list(), restored.to_data_list()):
            assert torch.equal(back.edge_index, original.edge_index)
            assert torch.equal(back.edge_attr, original.edge_attr)


def test_graph_to_params_and_mlp_read_any_edge_order(graphs):
    data, shuffled, _ = graphs
    expected, found = wsgraph.graph_to_params(data), wsgraph.graph_to_params(shuffled)
    if isinstance(data, Batch):
        assert len(found) == len(expected)
        for ours, theirs in zip(found, expected):
            assert_params_equal(ours, theirs)
    else:
        assert_params_equal(found, expected)
    inputs = torch.randn(5, 2, dtype=torch.float64)
    modules, rebuilt = wsgraph.graph_to_mlp(data), wsgraph.graph_to_mlp(shuffled)
    if not isinstance(modules, list):
        modules, rebuilt = [modules], [rebuilt]
    with torch.no_grad():
        for module, again in zip(modules, rebuilt):
            assert torch.equal(again(inputs), module(inputs))


def test_stacked_params_and_flatten_params_read_any_edge_order():
    data = _cases()["uniform"]
    shuffled = reorder_edges(data, _perm(data))
    for (weight, bias), (weight_s, bias_s) in zip(wsgraph.stacked_params(data), wsgraph.stacked_params(shuffled)):
        assert torch.equal(weight_s, weight) and torch.equal(bias_s, bias)
    assert torch.equal(flatten_params(shuffled), flatten_params(data))


def test_to_dense_weights_refuses_a_non_canonical_order():
    data = _cases()["uniform"]
    with pytest.raises(ValueError, match=r"not in canonical order.*wsgraph\.sort_edges"):
        wsgraph.to_dense_weights(reorder_edges(data, _perm(data)))
    dense = wsgraph.to_dense_weights(wsgraph.sort_edges(reorder_edges(data, _perm(data))))
    for ours, theirs in zip(dense.weights, wsgraph.to_dense_weights(data).weights):
        assert torch.equal(ours, theirs)


def test_conversions_refuse_edges_that_are_not_the_weights():
    data = _cases()["mixed"]
    bad = data.clone()
    bad.edge_index = data.edge_index.clone()
    bad.edge_index[:, 4] = bad.edge_index[:, 0]
    message = r"edges 0 and 4 both join node 0 to node 2"
    for function in (wsgraph.graph_to_params, wsgraph.sort_edges, wsgraph.permute_hidden):
        with pytest.raises(ValueError, match=message):
            function(bad)


def test_permute_hidden_moves_the_weights_of_any_edge_order(graphs):
    data, shuffled, perm = graphs
    widths = data.layer_widths.tolist()
    generator = torch.Generator().manual_seed(5)
    perms = [[torch.randperm(w, generator=generator) for w in row[1:-1]] for row in widths]
    if not isinstance(data, Batch):
        perms = perms[0]
    expected = wsgraph.permute_hidden(data, perms)
    found = wsgraph.permute_hidden(shuffled, perms)
    assert torch.equal(found.x, expected.x)
    assert torch.equal(found.edge_attr, expected.edge_attr[perm])
    assert torch.equal(found.edge_index, shuffled.edge_index)
    # Random permutations: the same draws give the same networks.
    first = wsgraph.permute_hidden(data, generator=torch.Generator().manual_seed(7))
    second = wsgraph.permute_hidden(shuffled, generator=torch.Generator().manual_seed(7))
    assert torch.equal(second.edge_attr, first.edge_attr[perm])


def test_rotation_of_the_first_layer_reads_any_edge_order(graphs):
    data, shuffled, perm = graphs
    angles = torch.linspace(-0.7, 0.9, data.layer_widths.size(0), dtype=torch.float64)
    expected = rotate_first_layer(data, angles)
    found = rotate_first_layer(shuffled, angles)
    torch.testing.assert_close(found.edge_attr, expected.edge_attr[perm], rtol=0, atol=0)
    transform = FirstLayerRotation(generator=torch.Generator().manual_seed(3))
    again = FirstLayerRotation(generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again(shuffled.clone()).edge_attr, transform(data.clone()).edge_attr[perm])


def test_render_reads_any_edge_order(graphs):
    data, shuffled, _ = graphs
    coords = torch.rand(9, 2, dtype=torch.float64)
    torch.testing.assert_close(render_inr(shuffled, coords), render_inr(data, coords), rtol=0, atol=0)


def test_flat_mlp_editor_edits_the_weights_of_any_edge_order():
    data = _cases()["uniform"]
    perm = _perm(data)
    torch.manual_seed(0)
    editor = FlatMLPEditor(wsgraph.graph_specs(data)[0], hidden_channels=8, depth=2).double().eval()
    with torch.no_grad():
        edited, edited_shuffled = editor(data), editor(reorder_edges(data, perm))
        # Sensitivity: the edit is not the same for every weight, so an unmoved edit would show.
        assert not torch.allclose(edited.edge_attr - data.edge_attr, (edited.edge_attr - data.edge_attr)[perm])
    torch.testing.assert_close(edited_shuffled.edge_attr, edited.edge_attr[perm], rtol=0, atol=0)
    torch.testing.assert_close(edited_shuffled.x, edited.x, rtol=0, atol=0)
