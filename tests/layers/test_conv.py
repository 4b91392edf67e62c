"""DWSConv: the DWS layer behind PyG's tensor calling convention."""

import itertools

import pytest
import torch
from torch_geometric.data import Batch

import wsgraph
from wsgraph.core.graph import assemble
from wsgraph.layers import DWSConv, DWSLayer


def _mixed_batch(channels: int) -> Batch:
    generator = torch.Generator().manual_seed(0)
    graphs = []
    for widths in [(2, 3, 5, 1), (2, 4, 2, 1), (2, 6, 6, 1)]:
        weights = [
            torch.randn(1, a, b, channels, generator=generator, dtype=torch.float64)
            for a, b in itertools.pairwise(widths)
        ]
        biases = [torch.randn(1, b, channels, generator=generator, dtype=torch.float64) for b in widths[1:]]
        graphs.append(assemble(weights, biases).to_data_list()[0])
    return Batch.from_data_list(graphs)


def test_conv_equals_layer_with_the_same_parameters():
    batch = _mixed_batch(3)
    conv = DWSConv(3, 4, num_weight_layers=3, in_dim=2, out_dim=1).double()
    layer = DWSLayer(3, 4, num_weight_layers=3, in_dim=2, out_dim=1).double()
    layer.load_state_dict(conv.layer.state_dict())
    x, edge_attr = conv(batch.x, batch.edge_index, batch.edge_attr, batch.layer_widths)
    expected = layer(batch)
    torch.testing.assert_close(x, expected.x, rtol=0, atol=0)
    torch.testing.assert_close(edge_attr, expected.edge_attr, rtol=0, atol=0)


def test_conv_is_equivariant():
    batch = _mixed_batch(2)
    conv = DWSConv(2, 2, num_weight_layers=3, in_dim=2, out_dim=1).double()
    perms = [[torch.randperm(w) for w in widths[1:-1]] for widths in batch.layer_widths.tolist()]
    permuted = wsgraph.permute_hidden(batch, perms)
    x, edge_attr = conv(batch.x, batch.edge_index, batch.edge_attr, batch.layer_widths)
    px, pe = conv(permuted.x, permuted.edge_index, permuted.edge_attr, permuted.layer_widths)
    out = batch.clone()
    out.x, out.edge_attr = x, edge_attr
    expected = wsgraph.permute_hidden(out, perms)
    torch.testing.assert_close(px, expected.x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pe, expected.edge_attr, rtol=1e-12, atol=1e-12)


def test_conv_rejects_widths_that_do_not_match_the_graph():
    batch = _mixed_batch(1)
    conv = DWSConv(1, 1, num_weight_layers=3, in_dim=2, out_dim=1)
    with pytest.raises(ValueError, match="layer_widths describe"):
        conv(batch.x.float(), batch.edge_index, batch.edge_attr.float(), batch.layer_widths[:2])


def test_conv_rebuilds_its_layout_for_new_widths_in_the_same_memory():
    first, second = _mixed_batch(1), _mixed_batch(1)
    second = Batch.from_data_list(second.to_data_list()[::-1])
    conv = DWSConv(1, 2, num_weight_layers=3, in_dim=2, out_dim=1).double()
    expected = conv(second.x, second.edge_index.clone(), second.edge_attr, second.layer_widths.clone())
    edge_index, layer_widths = first.edge_index.clone(), first.layer_widths.clone()
    conv(first.x, edge_index, first.edge_attr, layer_widths)
    # Same storage (as when an allocator hands a freed batch's memory to the next), new content.
    edge_index.copy_(second.edge_index)
    layer_widths.copy_(second.layer_widths)
    x, edge_attr = conv(second.x, edge_index, second.edge_attr, layer_widths)
    torch.testing.assert_close(x, expected[0], rtol=0, atol=0)
    torch.testing.assert_close(edge_attr, expected[1], rtol=0, atol=0)
