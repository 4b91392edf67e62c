"""torch.compile(fullgraph=True) of DWSNet on batches straight from PyG: one graph, forward and backward as eager.

Most tests compile with the ``aot_eager`` backend, which traces forward and backward
as inductor would but skips code generation (seconds instead of tens of seconds); one
slow test runs inductor itself.
"""

import itertools

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend
from torch_geometric.data import Batch

from wsgraph.core.graph import assemble
from wsgraph.layers import DWSNet


def _batch(widths_list, seed=0, dtype=torch.float64) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    graphs = []
    for widths in widths_list:
        weights = [torch.randn(1, a, b, 1, generator=generator, dtype=dtype) for a, b in itertools.pairwise(widths)]
        biases = [torch.randn(1, b, 1, generator=generator, dtype=dtype) for b in widths[1:]]
        graphs.append(assemble(weights, biases).to_data_list()[0])
    return Batch.from_data_list(graphs)


def _mixed(seed: int) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    widths = [(2, *torch.randint(2, 6, (2,), generator=generator).tolist(), 1) for _ in range(3 + seed)]
    return _batch(widths, seed)


def _model(backend: str, dtype=torch.float64, depth: int = 2) -> DWSNet:
    torch.manual_seed(0)
    return DWSNet(3, 2, 1, 4, hidden_channels=4, depth=depth, head_hidden=8, backend=backend).to(dtype)


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    out = model(batch)
    (out.square().sum() + out[:, 0].sum()).backward()
    return out.detach(), {name.removeprefix("_orig_mod."): p.grad.clone() for name, p in model.named_parameters()}


def _assert_same(compiled, eager, **tolerance):
    torch.testing.assert_close(compiled[0], eager[0], **tolerance)
    assert compiled[1].keys() == eager[1].keys()
    for name in eager[1]:
        torch.testing.assert_close(compiled[1][name], eager[1][name], **tolerance)


@pytest.fixture(autouse=True)
def _fresh_compiler():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# fullgraph=True raises at the first graph break, so every compile below is one graph.


def test_fullgraph_forward_and_backward_equal_eager():
    # The scatter backend: the one that needs the traceable index ops (the dense one is
    # compiled by inductor in the slow test below).
    model = _model("scatter")
    batch = _batch([(2, 3, 4, 1)] * 3)
    eager = _loss_and_grads(model, batch)
    compiled_model = torch.compile(model, fullgraph=True, backend="aot_eager")
    _assert_same(_loss_and_grads(compiled_model, batch), eager, rtol=1e-10, atol=1e-12)
    # A new batch of the same architecture reuses the graph and gets its own answer.
    other = _batch([(2, 3, 4, 1)] * 3, seed=1)
    _assert_same(_loss_and_grads(compiled_model, other), _loss_and_grads(model, other), rtol=1e-10, atol=1e-12)


def test_dynamic_compile_takes_mixed_architectures():
    model = _model("scatter", depth=1)
    counter = CompileCounterWithBackend("aot_eager")
    compiled_model = torch.compile(model, fullgraph=True, dynamic=True, backend=counter)
    compilations = []
    for seed in range(3):
        batch = _mixed(seed)
        _assert_same(_loss_and_grads(compiled_model, batch), _loss_and_grads(model, batch), rtol=1e-10, atol=1e-12)
        compilations.append(counter.frame_count)
    # The first graph is specialised to its batch size; the one compiled for the second
    # batch is general, so the third (another size, other widths) compiles nothing.
    assert compilations[0] > 0 and compilations[2] == compilations[1]


@pytest.mark.slow
def test_inductor_training_step_equals_eager():
    # 10-25 s: inductor generates C++ for forward and backward (one DWS layer keeps it short).
    model = _model("dense", torch.float32, depth=1)
    batch = _batch([(2, 3, 4, 1)] * 4, dtype=torch.float32)
    eager = _loss_and_grads(model, batch)
    compiled = _loss_and_grads(torch.compile(model, fullgraph=True), batch)
    _assert_same(compiled, eager, rtol=1e-4, atol=1e-5)
