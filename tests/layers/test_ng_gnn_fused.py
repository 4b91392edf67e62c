"""The fused kernels of NeuralGraphGNN and its dense helpers against the torch operations they replace, in float64."""

import math

import pytest
import torch

from wsgraph.layers.neural_graph_dense import pairwise_extreme
from wsgraph.layers.neural_graph_fused import (
    fused_edge_update,
    fused_fourier_linear,
    fused_messages,
    fused_update_messages,
)

B, P, Q, F, FE = 3, 4, 5, 6, 7


@pytest.fixture(autouse=True, params=["compiled", "torch"])
def kernel_path(request, monkeypatch):
    """Every test runs the chunks' per-edge work both ways: the compiled loops and the torch operations."""
    from wsgraph.layers import neural_graph_fused
    from wsgraph.layers.neural_graph_native import native_kernels

    if request.param == "torch":
        monkeypatch.setattr(neural_graph_fused, "native_kernels", lambda: None)
    elif native_kernels() is None:
        pytest.skip("the compiled kernels could not be built here")
    return request.param


def leaves(*shapes, generator):
    return [torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_() for shape in shapes]


def gradients(outputs, inputs, generator):
    """The gradients of a random linear function of ``outputs`` (``None`` entries ignored)."""
    loss = sum(
        (output * torch.randn(output.shape, generator=generator, dtype=output.dtype)).sum()
        for output in outputs
        if output is not None
    )
    return torch.autograd.grad(loss, inputs)


def reference_messages(edges, weight, bias, rows, cols, axis, tied=False):
    scale_shift = edges @ weight.t() + bias
    hidden = rows.unsqueeze(2) + cols.unsqueeze(1)
    channels = rows.size(-1)
    messages = scale_shift[..., :channels] * hidden + scale_shift[..., channels:]
    if tied:  # the inputs were made to tie every extreme: the test checks ties only if they really are ties
        assert torch.equal(messages, messages.narrow(axis, 0, 1).expand_as(messages))
    return messages.sum(axis), messages.square().sum(axis), messages.amin(axis), messages.amax(axis)


def round_to_grid(tensor, step, bound):
    """Round ``tensor`` in place to multiples of ``step`` in [-bound, bound] (powers of two).

    Ties need messages that are bitwise equal along the reduced axis. Equal inputs do not guarantee that: a CPU's
    matrix-product kernel may add the products of equal rows in different orders (MKL does on AMD EPYC), so the
    tied tests use values on a coarse binary grid, whose every product and sum here is exact in float64.
    """
    with torch.no_grad():
        tensor.copy_((tensor / step).round().clamp(-bound / step, bound / step) * step)


# 32 channels: the width the compiled loops fix at compile time (the Neural Graphs default); 6: any other.
@pytest.mark.parametrize("channels", [F, 32])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("axis", [1, 2])
def test_fused_messages_match_their_composition_with_gradients(axis, tied, channels):
    generator = torch.Generator().manual_seed(axis)
    edges, weight, bias, rows, cols = leaves(
        (B, P, Q, FE), (2 * channels, FE), (2 * channels,), (B, P, channels), (B, Q, channels), generator=generator
    )
    if tied:
        # Equal edges and endpoints along the reduced axis: every extreme is a tie, whose gradient is shared.
        for tensor in (edges, weight, bias, rows, cols):
            round_to_grid(tensor, 0.25, 1.0)
        with torch.no_grad():
            edges.copy_(edges.narrow(axis, 0, 1).expand_as(edges))
            (rows if axis == 1 else cols).copy_(
                (rows if axis == 1 else cols)[:, :1].expand_as(rows if axis == 1 else cols)
            )
    inputs = (edges, weight, bias, rows, cols)
    outputs = fused_messages(*inputs, axis, True, True)
    expected = reference_messages(*inputs, axis, tied)
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference, rtol=1e-12, atol=1e-12)
    seed = torch.Generator().manual_seed(7)
    for got, want in zip(
        gradients(outputs, inputs, seed), gradients(expected, inputs, torch.Generator().manual_seed(7))
    ):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("moments, extremes", [(True, False), (False, True)])
def test_fused_messages_compute_only_what_is_asked(moments, extremes):
    generator = torch.Generator().manual_seed(3)
    inputs = leaves((B, P, Q, FE), (2 * F, FE), (2 * F,), (B, P, F), (B, Q, F), generator=generator)
    total, squares, minimum, maximum = fused_messages(*inputs, 1, moments, extremes)
    assert (total is not None, squares is not None) == (moments, moments)
    assert (minimum is not None, maximum is not None) == (extremes, extremes)
    expected = [
        value if keep else None
        for value, keep in zip(reference_messages(*inputs, 1), (moments, moments, extremes, extremes))
    ]
    outputs = [total, squares, minimum, maximum]
    got = gradients(outputs, inputs, torch.Generator().manual_seed(4))
    for gradient, reference in zip(got, gradients(expected, inputs, torch.Generator().manual_seed(4))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("channels", [F, 32])
def test_fused_edge_update_matches_its_composition_with_gradients(channels):
    generator = torch.Generator().manual_seed(5)
    inputs = leaves((B, P, Q, FE), (channels, FE), (B, P, channels), (B, Q, channels), generator=generator)
    edges, weight, rows, cols = inputs
    output = fused_edge_update(*inputs)
    expected = torch.nn.functional.silu(edges @ weight.t() + rows.unsqueeze(2) + cols.unsqueeze(1))
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    got = gradients([output], inputs, torch.Generator().manual_seed(6))
    for gradient, reference in zip(got, gradients([expected], inputs, torch.Generator().manual_seed(6))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


# One input channel (a weight) takes the outer-product path of the compiled loops; three, the matrix product.
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_fourier_linear_matches_its_composition_with_gradients(in_channels, with_bias):
    generator = torch.Generator().manual_seed(8)
    raw = torch.randn(B, P, Q, in_channels, generator=generator, dtype=torch.float64)
    frequencies = 2 * math.pi * torch.randn(16, in_channels, generator=generator, dtype=torch.float64)
    weight, bias = leaves((F, 32), (F,), generator=generator)
    parameters = (weight, bias) if with_bias else (weight,)
    output = fused_fourier_linear(raw, frequencies, *parameters)
    angles = raw @ frequencies.t()
    expected = torch.cat([angles.cos(), angles.sin()], dim=-1) @ weight.t() + (bias if with_bias else 0)
    assert output.shape == (B, P, Q, F)
    torch.testing.assert_close(output, expected, rtol=1e-12, atol=1e-12)
    got = gradients([output], parameters, torch.Generator().manual_seed(9))
    for gradient, reference in zip(got, gradients([expected], parameters, torch.Generator().manual_seed(9))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


# 16 and 128 frequencies: whole vectors, which the compiled loops' own cosines and sines take; 12: torch's functions.
@pytest.mark.parametrize("num_frequencies", [16, 128, 12])
def test_fourier_features_of_float_weights_are_within_a_rounding_of_the_exact_ones(num_frequencies):
    """In float32, with the angles an outer product of the weights and the frequencies: within about one rounding
    of the float64 values of the same float angles, for angles up to thousands of radians (the compiled loops'
    reduction) and beyond, and for infinite and NaN angles."""
    generator = torch.Generator().manual_seed(14)
    frequencies = 2 * math.pi * 3.0 * torch.randn(num_frequencies, 1, generator=generator)
    # Angles spread up to 8,500 radians: both sides of where the compiled loops hand over to float64 functions.
    spread = 8500.0 / frequencies.abs().max().item()
    weights = torch.cat([
        torch.randn(200, generator=generator),
        spread * (2 * torch.rand(2000, generator=generator) - 1),
        torch.tensor([0.0, -0.0, 1e-30, 1e-3, 3.7, 1e4, -2e5, 3e7, float("inf"), float("-inf"), float("nan")]),
    ])  # fmt: skip
    raw = weights.view(-1, 1, 1, 1)
    identity = torch.eye(2 * num_frequencies)
    features = fused_fourier_linear(raw, frequencies, identity).view(-1, 2 * num_frequencies)
    angles = (raw.view(-1, 1) * frequencies.view(1, -1)).double()  # the float products, exactly
    expected = torch.cat([angles.cos(), angles.sin()], dim=1)
    torch.testing.assert_close(features.double(), expected, rtol=0, atol=1.5e-7, equal_nan=True)


@pytest.mark.parametrize("channels", [F, 32])
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("axis", [1, 2])
@pytest.mark.parametrize("keep_updated", [True, False])
def test_fused_update_messages_match_the_update_then_the_messages(keep_updated, axis, tied, channels):
    """Values and every gradient, with the updated edges' own gradient (a later round reads them) or without."""
    generator = torch.Generator().manual_seed(11 + axis)
    inputs = leaves(
        (B, P, Q, FE), (channels, FE), (B, P, channels), (B, Q, channels), (2 * channels, channels),
        (2 * channels,), (B, P, channels), (B, Q, channels), generator=generator,
    )  # fmt: skip
    edges, update_weight, update_rows, update_cols, weight, bias, rows, cols = inputs
    if tied:
        # Equal updated edges and message endpoints along the reduced axis: every extreme is a tie.
        for tensor in (edges, update_weight, update_rows, update_cols, bias, rows, cols):
            round_to_grid(tensor, 0.25, 1.0)
        round_to_grid(weight, 2.0**-8, 2.0**-4)
        with torch.no_grad():
            # SiLU rounds to the identity above about 37 (the sigmoid to 1), so the updated edges stay on the grid.
            update_rows += 64.0
            edges.copy_(edges.narrow(axis, 0, 1).expand_as(edges))
            for tensor in (update_rows, rows) if axis == 1 else (update_cols, cols):
                tensor.copy_(tensor[:, :1].expand_as(tensor))
    outputs = fused_update_messages(*inputs, axis, True, True, keep_updated=keep_updated)
    updated = torch.nn.functional.silu(edges @ update_weight.t() + update_rows.unsqueeze(2) + update_cols.unsqueeze(1))
    expected = (updated if keep_updated else None, *reference_messages(updated, weight, bias, rows, cols, axis, tied))
    assert (outputs[0] is None) == (not keep_updated)
    for output, reference in zip(outputs, expected):
        if reference is not None:
            torch.testing.assert_close(output, reference, rtol=1e-12, atol=1e-12)
    got = gradients(outputs, inputs, torch.Generator().manual_seed(12))
    for gradient, reference in zip(got, gradients(expected, inputs, torch.Generator().manual_seed(12))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


def test_fused_update_messages_with_messages_wider_than_the_edges():
    """The statistics take the messages' width (FiLM's weight's), not the updated edges'."""
    generator = torch.Generator().manual_seed(14)
    inputs = leaves(
        (B, P, Q, FE), (F, FE), (B, P, F), (B, Q, F), (4 * F, F), (4 * F,), (B, P, 2 * F), (B, Q, 2 * F),
        generator=generator,
    )  # fmt: skip
    edges, update_weight, update_rows, update_cols, weight, bias, rows, cols = inputs
    outputs = fused_update_messages(*inputs, 1, True, True)
    updated = torch.nn.functional.silu(edges @ update_weight.t() + update_rows.unsqueeze(2) + update_cols.unsqueeze(1))
    expected = (updated, *reference_messages(updated, weight, bias, rows, cols, 1))
    assert outputs[1].shape == (B, Q, 2 * F)
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference, rtol=1e-12, atol=1e-12)
    got = gradients(outputs, inputs, torch.Generator().manual_seed(15))
    for gradient, reference in zip(got, gradients(expected, inputs, torch.Generator().manual_seed(15))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("moments, extremes", [(True, False), (False, True)])
def test_fused_update_messages_compute_only_what_is_asked(moments, extremes):
    generator = torch.Generator().manual_seed(13)
    inputs = leaves(
        (B, P, Q, FE), (F, FE), (B, P, F), (B, Q, F), (2 * F, F), (2 * F,), (B, P, F), (B, Q, F), generator=generator
    )
    updated, total, squares, minimum, maximum = fused_update_messages(*inputs, 2, moments, extremes)
    assert updated is not None
    assert (total is not None, squares is not None) == (moments, moments)
    assert (minimum is not None, maximum is not None) == (extremes, extremes)
    outputs = [output for output in (total, squares, minimum, maximum) if output is not None]
    assert all(gradient is not None for gradient in gradients(outputs, inputs, generator))


@pytest.mark.parametrize("largest", [True, False])
def test_pairwise_extreme_matches_torch_with_its_gradient_at_ties(largest):
    generator = torch.Generator().manual_seed(10)
    first, second = leaves((40,), (40,), generator=generator)
    with torch.no_grad():
        second[:10] = first[:10]
    grad = torch.randn(40, generator=generator, dtype=torch.float64)
    output = pairwise_extreme(first, second, largest)
    expected = (torch.maximum if largest else torch.minimum)(first, second)
    assert torch.equal(output, expected)
    for got, want in zip(
        torch.autograd.grad(output, (first, second), grad), torch.autograd.grad(expected, (first, second), grad)
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-15)


def test_chunks_on_two_threads_give_the_one_thread_result_and_keep_the_thread_count(monkeypatch):
    from wsgraph.layers import neural_graph_fused

    monkeypatch.setattr(neural_graph_fused, "CHUNK_ELEMENTS", 1)  # one network per chunk
    generator = torch.Generator().manual_seed(11)
    inputs = leaves((B, P, Q, FE), (F, FE), (B, P, F), (B, Q, F), generator=generator)
    previous = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            output = fused_edge_update(*inputs)
            results[threads] = (output, gradients([output], inputs, torch.Generator().manual_seed(12)))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(previous)
    assert torch.equal(results[1][0], results[2][0])
    for one, two in zip(results[1][1], results[2][1]):
        torch.testing.assert_close(one, two, rtol=0, atol=1e-13)


def test_chunks_on_two_threads_under_inference_mode_give_the_no_grad_result(monkeypatch):
    """Inference mode is per thread, and the workers write into the caller's inference tensors."""
    from wsgraph.layers import neural_graph_fused

    monkeypatch.setattr(neural_graph_fused, "CHUNK_ELEMENTS", 1)  # one network per chunk
    generator = torch.Generator().manual_seed(16)
    edges, update_weight, update_rows, update_cols, weight, bias, rows, cols, raw, frequencies, encoder = (
        tensor.detach()
        for tensor in leaves(
            (B, P, Q, FE), (F, FE), (B, P, F), (B, Q, F), (2 * F, F), (2 * F,), (B, P, F), (B, Q, F), (B, P, Q, 1),
            (8, 1), (F, 16), generator=generator,
        )
    )  # fmt: skip

    def everything():
        return (
            fused_edge_update(edges, update_weight, update_rows, update_cols),
            *fused_messages(edges[..., :F], weight, bias, rows, cols, 2, True, True),
            *fused_update_messages(
                edges, update_weight, update_rows, update_cols, weight, bias, rows, cols, 1, True, True
            ),
            fused_fourier_linear(raw, frequencies, encoder),
        )

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with torch.no_grad():
            expected = everything()
        with torch.inference_mode():
            got = everything()
    finally:
        torch.set_num_threads(previous)
    for output, reference in zip(got, expected, strict=True):
        assert output.is_inference()
        assert torch.equal(output, reference)


@pytest.mark.parametrize("used", ["minimum", "maximum", "squares"])
def test_fused_messages_backward_with_one_statistic_used(used):
    """Autograd hands the backward pass ``None`` for the statistics the loss does not read."""
    generator = torch.Generator().manual_seed(13)
    inputs = leaves((B, P, Q, FE), (2 * F, FE), (2 * F,), (B, P, F), (B, Q, F), generator=generator)
    index = ["total", "squares", "minimum", "maximum"].index(used)
    output = fused_messages(*inputs, 2, True, True)[index]
    expected = reference_messages(*inputs, 2)[index]
    got = gradients([output], inputs, torch.Generator().manual_seed(14))
    for gradient, reference in zip(got, gradients([expected], inputs, torch.Generator().manual_seed(14))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


def test_a_nan_message_is_the_extreme_as_in_torch():
    generator = torch.Generator().manual_seed(15)
    inputs = leaves((B, P, Q, FE), (2 * F, FE), (2 * F,), (B, P, F), (B, Q, F), generator=generator)
    with torch.no_grad():
        inputs[3][0, 1, 2] = math.nan  # every message from row 1 of network 0, channel 2
    outputs = fused_messages(*inputs, 2, True, True)
    for output, reference in zip(outputs, reference_messages(*inputs, 2)):
        assert torch.isnan(output[0, 1, 2]) and torch.isnan(reference[0, 1, 2])
        torch.testing.assert_close(output, reference, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_gradients_of_the_extremes_may_arrive_in_any_layout():
    """A consumer that reads a statistic transposed hands the backward pass a non-contiguous gradient."""
    generator = torch.Generator().manual_seed(16)
    inputs = leaves((B, P, Q, FE), (2 * F, FE), (2 * F,), (B, P, F), (B, Q, F), generator=generator)
    outputs = [statistic.transpose(1, 2) for statistic in fused_messages(*inputs, 1, True, True)]
    expected = [statistic.transpose(1, 2) for statistic in reference_messages(*inputs, 1)]
    got = gradients(outputs, inputs, torch.Generator().manual_seed(17))
    for gradient, reference in zip(got, gradients(expected, inputs, torch.Generator().manual_seed(17))):
        torch.testing.assert_close(gradient, reference, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_the_torch_operations(dtype):
    generator = torch.Generator().manual_seed(18)
    inputs = [
        tensor.detach().to(dtype)
        for tensor in leaves((B, P, Q, FE), (F, FE), (B, P, F), (B, Q, F), generator=generator)
    ]
    output = fused_edge_update(*inputs)
    edges, weight, rows, cols = (tensor.float() for tensor in inputs)
    expected = torch.nn.functional.silu(edges @ weight.t() + rows.unsqueeze(2) + cols.unsqueeze(1))
    assert output.dtype == dtype
    torch.testing.assert_close(output.float(), expected, rtol=0.05, atol=0.05)
