"""Hidden-neuron permutations commute with the DWS layer and models (docs/layers.md, "What the tests prove" 2).

Each equivariance check is paired with a sensitivity check: permutations that are not
symmetries of the weight space (input or output neurons, or a hidden permutation applied
to some of the objects it should move but not all) must change the result in a way
that is not the permuted result, so these tests fail on a layer that ignores the
coupling between objects or treats folded indices as permutable.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wsgraph import permute_hidden
from wsgraph.layers import DWSEditNet, DWSLayer, DWSNet, InvariantReadout

from .weight_space_numerics import (
    FlatLayout,
    design_constant_dimension,
    flat_from_graph,
    graph_from_flat,
    hidden_generators,
    hidden_source,
    input_node_features,
    invariant_dimension,
    numerical_rank,
    permutation_source,
    random_flat,
    random_hidden_perms,
    single_threaded,
)

# (widths, in_channels, out_channels): M = 1, 2, 3, 5, hidden widths of one included.
LAYER_CASES = [
    ((2, 3), 2, 3),
    ((3, 4, 2), 1, 1),
    ((2, 1, 3), 2, 2),
    ((1, 5, 1), 3, 2),
    ((2, 3, 4, 2), 1, 2),
    ((2, 2, 1, 3), 3, 1),
    ((2, 4, 3, 2, 5, 1), 2, 3),
    ((3, 1, 2, 3, 2, 2), 1, 1),
]
MODEL_ARCHITECTURES = [(2, 3), (2, 3, 1), (2, 1, 3), (2, 3, 4, 2), (2, 4, 1, 3, 2, 1)]
NUM_NETWORKS = 3
# A permutation that is not a symmetry must move the output by at least this fraction of its scale.
SENSITIVITY = 1e-3


@pytest.fixture(autouse=True, scope="module")
def _single_threaded():
    with single_threaded():
        yield


def _ids(case):
    return "-".join(map(str, case[0] if isinstance(case[0], tuple) else case))


def _inputs(widths, channels, seed):
    generator = torch.Generator().manual_seed(seed)
    flat = random_flat(NUM_NETWORKS, widths, channels, generator)
    perms = [random_hidden_perms(widths, generator) for _ in range(NUM_NETWORKS)]
    return flat, perms


def _non_identity(width, generator):
    perm = torch.randperm(width, generator=generator)
    while torch.equal(perm, torch.arange(width)):
        perm = torch.randperm(width, generator=generator)
    return perm.tolist()


def non_symmetries(widths, seed=0):
    """``(description, flat source)`` for permutations that move neurons but are not symmetries."""
    generator = torch.Generator().manual_seed(seed)
    last = len(widths) - 1
    cases = []
    if widths[0] > 1:
        cases.append(("input neurons", permutation_source(widths, {0: _non_identity(widths[0], generator)})))
    if widths[last] > 1:
        cases.append(("output neurons", permutation_source(widths, {last: _non_identity(widths[last], generator)})))
    for k in range(1, last):
        if widths[k] == 1:
            continue
        perm = {k: _non_identity(widths[k], generator)}
        cases.append((f"layer {k} on W{k}, b{k} only", permutation_source(widths, perm, objects={f"W{k}", f"b{k}"})))
        cases.append((f"layer {k} on W{k + 1} only", permutation_source(widths, perm, objects={f"W{k + 1}"})))
        cases.append((f"layer {k} on b{k} only", permutation_source(widths, perm, objects={f"b{k}"})))
    return cases


def _layer(widths, in_channels, out_channels, backend="scatter"):
    torch.manual_seed(sum(widths) + in_channels)
    return DWSLayer(in_channels, out_channels, len(widths) - 1, widths[0], widths[-1], backend=backend).double()


@pytest.mark.parametrize("backend", ["scatter", "dense"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids)
def test_layer_is_equivariant(case, backend):
    widths, in_channels, out_channels = case
    layer = _layer(widths, in_channels, out_channels, backend)
    flat, perms = _inputs(widths, in_channels, seed=len(widths))
    batch = graph_from_flat(flat, widths)
    with torch.no_grad():
        output = layer(batch)
        output_of_permuted = layer(permute_hidden(batch, perms=perms))
    permuted_output = permute_hidden(output, perms=perms)
    assert output.x.shape == (batch.num_nodes, out_channels)
    assert output.edge_attr.shape == (batch.num_edges, out_channels)
    torch.testing.assert_close(output_of_permuted.x, permuted_output.x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(output_of_permuted.edge_attr, permuted_output.edge_attr, rtol=1e-12, atol=1e-12)
    assert not input_node_features(output).any()

    # The same statement on the flat layout, with the helper's own permutation representation.
    out_flat, out_flat_of_permuted = flat_from_graph(output), flat_from_graph(output_of_permuted)
    for network, network_perms in enumerate(perms):
        source = hidden_source(widths, network_perms)
        torch.testing.assert_close(out_flat_of_permuted[network], out_flat[network, source], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids)
def test_layer_is_sensitive_to_non_symmetries(case):
    widths, in_channels, out_channels = case
    layer = _layer(widths, in_channels, out_channels)
    flat, _ = _inputs(widths, in_channels, seed=7)
    with torch.no_grad():
        out_flat = flat_from_graph(layer(graph_from_flat(flat, widths)))
        cases = non_symmetries(widths)
        assert cases, f"{widths} admits no non-symmetry to test"
        for description, source in cases:
            moved = flat_from_graph(layer(graph_from_flat(flat[:, source], widths)))
            difference = (moved - out_flat[:, source]).abs().max() / out_flat.abs().max()
            assert difference > SENSITIVITY, f"{widths}: the layer commutes with the non-symmetry '{description}'"


def _readout(widths, channels, reduce):
    return InvariantReadout(channels, len(widths) - 1, widths[0], widths[-1], reduce=reduce).double()


@pytest.mark.parametrize("reduce", ["mean", "max", "sum"])
@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids)
def test_readout_is_invariant_and_keeps_folded_neurons(case, reduce):
    widths, channels, _ = case
    readout = _readout(widths, channels, reduce)
    flat, perms = _inputs(widths, channels, seed=11)
    batch = graph_from_flat(flat, widths)
    with torch.no_grad():
        features = readout(batch)
        assert features.shape == (NUM_NETWORKS, readout.out_features)
        assert readout.out_features == channels * design_constant_dimension(widths)
        torch.testing.assert_close(readout(permute_hidden(batch, perms=perms)), features, rtol=1e-12, atol=1e-12)
        for description, source in non_symmetries(widths):
            if description in ("input neurons", "output neurons"):
                moved = readout(graph_from_flat(flat[:, source], widths))
                difference = (moved - features).abs().max() / features.abs().max()
                assert difference > SENSITIVITY, f"{widths}: readout '{reduce}' ignores the order of {description}"


@pytest.mark.parametrize("reduce", ["mean", "sum"])
@pytest.mark.parametrize("widths", [(2, 3), (1, 2, 1), (2, 1, 3), (2, 3, 4, 2), (2, 2, 2, 2, 1)], ids=_ids)
def test_linear_readout_is_a_complete_invariant(widths, reduce):
    """Mean/sum readouts are linear and invariant; their rank is the number of invariant directions."""
    readout = _readout(widths, 1, reduce)
    size = FlatLayout(widths).size
    basis = torch.cat([torch.zeros(1, size), torch.eye(size)]).to(torch.float64).unsqueeze(-1)
    with torch.no_grad():
        features = readout(graph_from_flat(basis, widths)).numpy()
    assert np.abs(features[0]).max() == 0
    rank = numerical_rank(features[1:])
    assert rank.gap > 1e6
    assert rank.rank == invariant_dimension(hidden_generators(widths), size).dim


def _dws_net(widths, readout):
    torch.manual_seed(5)
    model = DWSNet(
        len(widths) - 1,
        widths[0],
        widths[-1],
        out_features=4,
        in_channels=2,
        hidden_channels=6,
        depth=3,
        readout=readout,
        dropout=0.1,
    )
    return model.double().eval()


@pytest.mark.parametrize("readout", ["mean", "max", "sum"])
@pytest.mark.parametrize("widths", MODEL_ARCHITECTURES, ids=_ids)
def test_dwsnet_is_invariant(widths, readout):
    model = _dws_net(widths, readout)
    flat, perms = _inputs(widths, 2, seed=13)
    batch = graph_from_flat(flat, widths)
    with torch.no_grad():
        prediction = model(batch)
        assert prediction.shape == (NUM_NETWORKS, 4)
        torch.testing.assert_close(model(permute_hidden(batch, perms=perms)), prediction, rtol=1e-10, atol=1e-12)
        input_permutation = dict(non_symmetries(widths))["input neurons"]
        moved = model(graph_from_flat(flat[:, input_permutation], widths))
    assert (moved - prediction).abs().max() / prediction.abs().max() > SENSITIVITY


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("widths", MODEL_ARCHITECTURES, ids=_ids)
def test_dws_edit_net_is_equivariant(widths, residual):
    torch.manual_seed(17)
    model = DWSEditNet(len(widths) - 1, widths[0], widths[-1], hidden_channels=6, depth=3, residual=residual)
    model = model.double().eval()
    flat, perms = _inputs(widths, 1, seed=19)
    batch = graph_from_flat(flat, widths)
    with torch.no_grad():
        edited = model(batch)
        edited_permuted = model(permute_hidden(batch, perms=perms))
    assert edited.x.shape == (batch.num_nodes, 1) and edited.edge_attr.shape == (batch.num_edges, 1)
    edited_flat = flat_from_graph(edited)
    torch.testing.assert_close(
        flat_from_graph(edited_permuted), flat_from_graph(permute_hidden(edited, perms=perms)), rtol=1e-10, atol=1e-12
    )
    # The residual cancels in the difference, which therefore has the scale of the (small) edit.
    with torch.no_grad():
        for description, source in non_symmetries(widths):
            moved = flat_from_graph(model(graph_from_flat(flat[:, source], widths)))
            difference = (moved - edited_flat[:, source]).abs().max() / edited_flat.abs().max()
            assert difference > SENSITIVITY * 1e-2, f"{widths}: the editor commutes with '{description}'"
