"""The layers accept edges in any order and answer in that order.

The same graph with its edges listed in another order (PyG transforms and users
reorder them freely) must give the same outputs, moved with the edges, and the same
gradients; edge lists that are not the networks' weights are refused.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from graph_helpers import reorder_edges
from torch_geometric.data import Batch
from torch_geometric.utils import sort_edge_index

from wsgraph.core.graph import assemble, edge_positions
from wsgraph.layers import DWSConv, DWSEditNet, DWSLayer, DWSNet, InvariantReadout, WeightSpaceLayout

from .weight_space_numerics import single_threaded

TOL = {"rtol": 1e-12, "atol": 1e-12}
UNIFORM = (2, 4, 3, 1)
MIXED = [(2, 4, 3, 1), (2, 1, 5, 1), (2, 3, 3, 1), (2, 6, 2, 1)]


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _batch(architectures, channels=2, seed=0) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for widths in architectures:
        weights = [
            torch.randn(1, a, b, channels, generator=generator, dtype=torch.float64)
            for a, b in itertools.pairwise(widths)
        ]
        biases = [torch.randn(1, b, channels, generator=generator, dtype=torch.float64) for b in widths[1:]]
        graphs.append(assemble(weights, biases).to_data_list()[0])
    return Batch.from_data_list(graphs)


def _shuffle(data, seed=1):
    return reorder_edges(data, torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(seed)))


def _leaf_inputs(data):
    out = data.clone()
    out.x = data.x.detach().clone().requires_grad_(True)
    out.edge_attr = data.edge_attr.detach().clone().requires_grad_(True)
    return out


def _grads(model, data, output_of):
    model.zero_grad()
    data = _leaf_inputs(data)
    output = output_of(model, data)
    # Elementwise, so that the loss does not depend on the order of the rows.
    loss = sum((o.sin() * (1 + o)).sum() for o in output)
    loss.backward()
    params = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return output, data.x.grad, data.edge_attr.grad, params


def _layer_outputs(model, data):
    out = model(data)
    return out.x, out.edge_attr


def _check_moves_with_edges(model, data, perm, output_of, edge_output=True):
    torch.manual_seed(0)
    out, grad_x, grad_edges, params = _grads(model, data, output_of)
    shuffled = reorder_edges(data, perm)
    out_s, grad_x_s, grad_edges_s, params_s = _grads(model, shuffled, output_of)
    if edge_output:
        node_out, edge_out = out
        node_out_s, edge_out_s = out_s
        torch.testing.assert_close(node_out_s, node_out, **TOL)
        torch.testing.assert_close(edge_out_s, edge_out[perm], **TOL)
    else:
        torch.testing.assert_close(out_s[0], out[0], **TOL)
    torch.testing.assert_close(grad_x_s, grad_x, **TOL)
    torch.testing.assert_close(grad_edges_s, grad_edges[perm], **TOL)
    assert params_s.keys() == params.keys() and params
    for name in params:
        torch.testing.assert_close(params_s[name], params[name], **TOL)


@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_layer_outputs_and_gradients_move_with_the_edges_one_architecture(backend):
    torch.manual_seed(0)
    layer = DWSLayer(2, 3, 3, 2, 1, backend=backend).double()
    data = _batch([UNIFORM] * 3)
    perm = torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(1))
    _check_moves_with_edges(layer, data, perm, _layer_outputs)


def test_layer_outputs_and_gradients_move_with_the_edges_mixed_architectures():
    torch.manual_seed(0)
    layer = DWSLayer(2, 3, 3, 2, 1).double()
    data = _batch(MIXED)
    perm = torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(1))
    _check_moves_with_edges(layer, data, perm, _layer_outputs)


@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_single_graph_and_pyg_target_sorted_edges(backend):
    torch.manual_seed(0)
    layer = DWSLayer(2, 2, 3, 2, 1, backend=backend).double()
    graph = _batch([UNIFORM]).to_data_list()[0]
    # What torch_geometric.utils.sort_edge_index does when sorting by target.
    _, perm = sort_edge_index(graph.edge_index, torch.arange(graph.num_edges), sort_by_row=False)
    assert not torch.equal(perm, torch.arange(graph.num_edges))
    _check_moves_with_edges(layer, graph, perm, _layer_outputs)


@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_the_unsorted_answer_differs_without_the_reordering(backend):
    # Sensitivity: relabelling the layout as canonical (what the layer did before it
    # read the edge order) changes the result, so the tests above can fail.
    torch.manual_seed(0)
    layer = DWSLayer(2, 2, 3, 2, 1, backend=backend).double()
    data = _batch([UNIFORM] * 2)
    shuffled = _shuffle(data)
    layout = WeightSpaceLayout.build(shuffled.layer_widths)
    wrong = layout.merge(layer.forward_features(layout.split(shuffled.x, shuffled.edge_attr), layout))
    right = layer(shuffled)
    assert not torch.allclose(wrong[1], right.edge_attr)


@pytest.mark.parametrize("backend", ["scatter", "dense"])
def test_models_move_with_the_edges(backend):
    torch.manual_seed(0)
    architectures = [UNIFORM] * 3 if backend == "dense" else MIXED
    data = _batch(architectures)
    perm = torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(2))
    net = DWSNet(3, 2, 1, 4, in_channels=2, hidden_channels=4, depth=2, backend=backend).double()
    _check_moves_with_edges(net, data, perm, lambda model, d: (model(d),), edge_output=False)
    editor = DWSEditNet(3, 2, 1, in_channels=2, hidden_channels=4, depth=2, backend=backend).double()
    _check_moves_with_edges(editor, data, perm, _layer_outputs)
    readout = InvariantReadout(2, 3, 2, 1, backend=backend)
    torch.testing.assert_close(readout(reorder_edges(data, perm)), readout(data), **TOL)


def test_conv_moves_with_the_edges():
    torch.manual_seed(0)
    conv = DWSConv(2, 3, num_weight_layers=3, in_dim=2, out_dim=1).double()
    data = _batch(MIXED)
    perm = torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(3))

    def output_of(model, d):
        return model(d.x, d.edge_index, d.edge_attr, d.layer_widths)

    _check_moves_with_edges(conv, data, perm, output_of)


def test_layout_built_from_edges_in_any_order_splits_them_canonically():
    data = _batch(MIXED)
    shuffled = _shuffle(data)
    canonical = WeightSpaceLayout.build(data.layer_widths)
    reordered = WeightSpaceLayout.build(shuffled.layer_widths, edge_index=shuffled.edge_index)
    expected = canonical.split(data.x, data.edge_attr)
    found = reordered.split(shuffled.x, shuffled.edge_attr)
    for ours, theirs in zip(found.weights, expected.weights):
        assert torch.equal(ours, theirs)
    _, edge_attr = reordered.merge(found)
    assert torch.equal(edge_attr, shuffled.edge_attr)
    # Canonical edges need no reordering: the layout stays the plain one.
    plain = WeightSpaceLayout.build(data.layer_widths, edge_index=data.edge_index)
    assert torch.equal(plain.edge_order, canonical.edge_order)


def test_canonical_batches_take_the_fast_path():
    uniform, mixed = _batch([UNIFORM] * 3), _batch(MIXED)
    for data in (uniform, mixed):
        assert edge_positions(data.edge_index, data.layer_widths, data.num_nodes) is None
    assert WeightSpaceLayout.of(uniform).edge_order is None


def _bad_edges():
    data = _batch([UNIFORM] * 2, channels=1)
    wrong_layer = data.edge_index.clone()
    wrong_layer[1, 5] = 0  # an input neuron as a target
    other_network = data.edge_index.clone()
    other_network[1, 0] = other_network[1, 0] + sum(UNIFORM)  # into the second network
    repeated = data.edge_index.clone()
    repeated[:, 7] = repeated[:, 3]
    outside = data.edge_index.clone()
    outside[0, 2] = data.num_nodes
    return data, [
        (wrong_layer, r"edge 5 joins node 1 \(layer 0 of network 0\) to node 0 \(layer 0 of network 0\)"),
        (other_network, r"edge 0 joins node 0 \(layer 0 of network 0\) to node 12 \(layer 1 of network 1\)"),
        (repeated, r"edges 3 and 7 both join node 0 to node 5"),
        (outside, r"edge 2 joins nodes \[20, 4\], outside 0..19"),
    ]


def test_edges_that_are_not_the_networks_weights_are_refused():
    data, cases = _bad_edges()
    layer = DWSLayer(1, 1, 3, 2, 1).double()
    conv = DWSConv(1, 1, 3, 2, 1).double()
    for edge_index, message in cases:
        bad = data.clone()
        bad.edge_index = edge_index
        with pytest.raises(ValueError, match=message):
            layer(bad)
        with pytest.raises(ValueError, match=message):
            conv(data.x, edge_index, data.edge_attr, data.layer_widths)
        with pytest.raises(ValueError, match=message):
            WeightSpaceLayout.build(data.layer_widths, edge_index=edge_index)


def test_a_reordered_edge_index_in_place_is_noticed():
    torch.manual_seed(0)
    layer = DWSLayer(2, 2, 3, 2, 1).double()
    data = _batch(MIXED)
    expected = layer(data)
    perm = torch.randperm(data.num_edges, generator=torch.Generator().manual_seed(4))
    # In place: same tensor object, new content (the cached layout must not be reused).
    data.edge_index.copy_(data.edge_index[:, perm])
    data.edge_attr = data.edge_attr[perm]
    torch.testing.assert_close(layer(data).edge_attr, expected.edge_attr[perm], **TOL)
