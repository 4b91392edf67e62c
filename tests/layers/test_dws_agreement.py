"""The scatter and dense backends are one layer (docs/layers.md, "What the tests prove" 3).

Same parameters, same outputs, same gradients with respect to the parameters and to
the input weights and biases, in float64 to rounding.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from wsgraph.layers import DWSLayer

from .weight_space_numerics import graph_from_flat, random_flat, single_threaded

# (widths, in_channels, out_channels): M = 1, 2, 3, 5, hidden widths of one included.
CASES = [
    ((2, 3), 2, 3),
    ((3, 4, 2), 1, 1),
    ((2, 1, 3), 3, 2),
    ((2, 3, 4, 2), 2, 2),
    ((2, 2, 1, 3), 1, 4),
    ((2, 4, 3, 2, 5, 1), 3, 2),
    ((3, 1, 2, 3, 2, 2), 2, 1),
]
NUM_NETWORKS = 4
RTOL, ATOL = 1e-10, 1e-12


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _ids(case):
    return "-".join(map(str, case[0]))


def _layer(widths, in_channels, out_channels, backend="scatter"):
    torch.manual_seed(len(widths) + 10 * in_channels + out_channels)
    return DWSLayer(in_channels, out_channels, len(widths) - 1, widths[0], widths[-1], backend=backend).double()


def _run(layer, flat, widths, cotangents):
    """Output, input gradients and parameter gradients of ``<cotangent, layer(input)>``."""
    batch = graph_from_flat(flat, widths)
    x = batch.x.detach().clone().requires_grad_()
    edge_attr = batch.edge_attr.detach().clone().requires_grad_()
    batch.x, batch.edge_attr = x, edge_attr
    layer.zero_grad(set_to_none=True)
    output = layer(batch)
    ((output.x * cotangents[0]).sum() + (output.edge_attr * cotangents[1]).sum()).backward()
    parameter_grads = {name: parameter.grad for name, parameter in layer.named_parameters()}
    return output.x.detach(), output.edge_attr.detach(), x.grad, edge_attr.grad, parameter_grads


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_scatter_and_dense_agree_on_outputs_and_gradients(case):
    widths, in_channels, out_channels = case
    layer = _layer(widths, in_channels, out_channels)
    generator = torch.Generator().manual_seed(1)
    flat = random_flat(NUM_NETWORKS, widths, in_channels, generator)
    batch = graph_from_flat(flat, widths)
    cotangents = (
        torch.randn(batch.num_nodes, out_channels, generator=generator, dtype=torch.float64),
        torch.randn(batch.num_edges, out_channels, generator=generator, dtype=torch.float64),
    )
    scatter = _run(layer, flat, widths, cotangents)
    layer.backend = "dense"
    dense = _run(layer, flat, widths, cotangents)

    for name, scatter_part, dense_part in zip(("x", "edge_attr", "grad x", "grad edge_attr"), scatter, dense):
        torch.testing.assert_close(dense_part, scatter_part, rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}")
    assert scatter[4].keys() == dense[4].keys()
    for name, scatter_grad in scatter[4].items():
        dense_grad = dense[4][name]
        assert scatter_grad is not None and dense_grad is not None, f"parameter {name} is not used by both backends"
        assert scatter_grad.abs().max() > 0, f"parameter {name} does not influence the output"
        torch.testing.assert_close(dense_grad, scatter_grad, rtol=RTOL, atol=ATOL, msg=lambda m, n=name: f"{n}: {m}")


def test_backends_share_one_set_of_parameters():
    widths = (2, 3, 4, 2)
    layer = _layer(widths, 2, 3)
    keys = list(layer.state_dict())
    storage = [p.data_ptr() for p in layer.parameters()]
    assert not [key for key in keys if "dense" in key or "scatter" in key], keys
    layer.backend = "dense"
    assert list(layer.state_dict()) == keys
    assert [p.data_ptr() for p in layer.parameters()] == storage

    dense_twin = DWSLayer(2, 3, 3, 2, 2, backend="dense").double()
    assert list(dense_twin.state_dict()) == keys
    dense_twin.load_state_dict(_layer(widths, 2, 3).state_dict())
    flat = random_flat(NUM_NETWORKS, widths, 2, torch.Generator().manual_seed(2))
    scatter_layer = _layer(widths, 2, 3)
    with torch.no_grad():
        expected = scatter_layer(graph_from_flat(flat, widths))
        twin = dense_twin(graph_from_flat(flat, widths))
    torch.testing.assert_close(twin.edge_attr, expected.edge_attr, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(twin.x, expected.x, rtol=RTOL, atol=ATOL)


def test_reset_parameters_restores_a_nonzero_initialisation():
    layer = _layer((2, 3, 4, 2), 2, 3)
    vector_to_parameters(torch.zeros_like(parameters_to_vector(layer.parameters())), layer.parameters())
    torch.manual_seed(3)
    layer.reset_parameters()
    first = parameters_to_vector(layer.parameters()).detach().clone()
    torch.manual_seed(3)
    layer.reset_parameters()
    assert torch.isfinite(first).all() and first.abs().max() > 0
    assert torch.equal(parameters_to_vector(layer.parameters()), first)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        DWSLayer(1, 1, 2, 2, 1, backend="sparse")
