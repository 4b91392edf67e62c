"""On a CUDA device DWSNet computes what it computes on the CPU: outputs and every gradient.

In float64, on mixed-width batches (scatter backend) and one-architecture batches (dense
backend), with batch norm in training mode and both pooling reductions. CUDA sums in
another order (atomics), so the two agree to rounding, not bitwise. Skipped without CUDA.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.data import Batch

from wsgraph.layers import DWSNet

from .test_dws_batching import MIXED_GROUPS, _ids, _networks, _signature

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CHANNELS = 2
TOL = {"rtol": 1e-9, "atol": 1e-10}


def _outputs_and_gradients(model, batch, cotangent):
    model.zero_grad()
    output = model(batch)
    (output * cotangent).sum().backward()
    gradients = {name: parameter.grad.detach().cpu() for name, parameter in model.named_parameters()}
    return output.detach().cpu(), gradients


@pytest.mark.parametrize("readout", ["mean", "max"])
@pytest.mark.parametrize("backend", ["scatter", "dense"])
@pytest.mark.parametrize("group", MIXED_GROUPS, ids=_ids)
def test_dwsnet_on_cuda_equals_dwsnet_on_cpu(group, backend, readout):
    # The dense backend takes one architecture per batch: three networks of the group's first.
    architectures = group if backend == "scatter" else [group[0]] * 3
    _, graphs = _networks(architectures, CHANNELS, seed=3)
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    on_cpu = DWSNet(*_signature(group), 5, CHANNELS, 8, 2, readout=readout, backend=backend).double()
    on_gpu = copy.deepcopy(on_cpu).to("cuda")
    cotangent = torch.randn(len(graphs), 5, dtype=torch.float64)

    cpu_output, cpu_gradients = _outputs_and_gradients(on_cpu, batch, cotangent)
    gpu_output, gpu_gradients = _outputs_and_gradients(on_gpu, batch.to("cuda"), cotangent.to("cuda"))

    torch.testing.assert_close(gpu_output, cpu_output, **TOL)
    assert gpu_gradients.keys() == cpu_gradients.keys()
    for name, gradient in cpu_gradients.items():
        assert gradient.abs().max() > 0, f"{name} gets no gradient"
        torch.testing.assert_close(
            gpu_gradients[name], gradient, **TOL, msg=lambda message, name=name: f"{name}: {message}"
        )


def test_ng_gnn_fused_backend_on_cuda_runs_the_dense_composition_and_equals_the_cpu(monkeypatch):
    """The fused kernels are chunked for a CPU; on CUDA the default backend computes with the dense composition."""
    from wsgraph.layers import neural_graph

    from .test_ng_gnn import make_batch, make_model

    batch = make_batch(4, widths=[(2, 5, 4, 1)])
    on_cpu = make_model()
    on_gpu = copy.deepcopy(on_cpu).to("cuda")
    cotangent = torch.randn(batch.num_graphs, 3, dtype=torch.float64)
    cpu_output, cpu_gradients = _outputs_and_gradients(on_cpu, batch, cotangent)

    def refuse(*args, **kwargs):
        raise AssertionError("a fused kernel ran on CUDA")

    for name in ("fused_fourier_linear", "fused_messages", "fused_update_messages"):
        monkeypatch.setattr(neural_graph, name, refuse)
    gpu_output, gpu_gradients = _outputs_and_gradients(on_gpu, batch.to("cuda"), cotangent.to("cuda"))
    torch.testing.assert_close(gpu_output, cpu_output, **TOL)
    for name, gradient in cpu_gradients.items():
        torch.testing.assert_close(gpu_gradients[name], gradient, **TOL, msg=lambda m, name=name: f"{name}: {m}")
