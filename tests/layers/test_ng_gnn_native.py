"""The compiled loops of NeuralGraphGNN's fused backend: the switch, the fallback, argument checks, and a whole
model computing the same as with torch operations."""

import itertools
import os
import threading
import time

import pytest
import torch
from torch_geometric.data import Batch

from wsgraph import mlp_to_graph
from wsgraph.layers import NeuralGraphGNN, neural_graph_fused, neural_graph_native, pna_degree_histogram
from wsgraph.layers.neural_graph_native import native_kernels


@pytest.fixture
def compiled():
    module = native_kernels()
    if module is None:
        pytest.skip("the compiled kernels could not be built here")
    return module


@pytest.fixture
def fresh_cache():
    """``native_kernels`` is cached per process: clear it around a test that changes how it resolves."""
    native_kernels.cache_clear()
    yield
    native_kernels.cache_clear()


def test_the_switch_turns_the_compiled_kernels_off(monkeypatch, fresh_cache):
    monkeypatch.setenv(neural_graph_native.SWITCH, "0")
    assert native_kernels() is None


def test_a_failed_build_warns_in_one_line_and_falls_back(monkeypatch, fresh_cache, tmp_path):
    from torch.utils import cpp_extension

    attempts = []

    def fail(**arguments):
        attempts.append(arguments["extra_cflags"])
        raise RuntimeError("Error building extension 'x'\nc++: fatal error: no input files")

    monkeypatch.delenv(neural_graph_native.SWITCH, raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", fail)
    with pytest.warns(RuntimeWarning) as caught:
        assert native_kernels() is None
    (warning,) = caught
    message = str(warning.message)
    assert "Error building extension 'x': c++: fatal error: no input files" in message and "\n" not in message
    assert neural_graph_native.SWITCH in message
    assert attempts == neural_graph_native.FLAG_SETS  # every flag set tried, in order


def test_a_failed_build_is_told_by_its_compiler_error_not_by_the_ninja_command():
    text = (
        "Error building extension 'wsgraph_x': [1/2] c++ -MMD -MF neural_graph_edges.o.d -O3 -c neural_graph_edges.cpp\n"
        "FAILED: neural_graph_edges.o\nc++ -MMD -O3 -c neural_graph_edges.cpp\n"
        "neural_graph_edges.cpp:12:10: fatal error: torch/extension.h: No such file or directory\n"
        "compilation terminated.\nninja: build stopped: subcommand failed."
    )
    assert neural_graph_native._build_failure(text) == (
        "Error building extension 'wsgraph_x': neural_graph_edges.cpp:12:10: fatal error: torch/extension.h: "
        "No such file or directory"
    )
    assert neural_graph_native._build_failure("ninja: command not found") == "ninja: command not found"
    assert neural_graph_native._build_failure("  ") == ""


def test_a_compiler_that_refuses_the_first_flags_gets_the_portable_ones(monkeypatch, fresh_cache, tmp_path):
    from torch.utils import cpp_extension

    def load(**arguments):
        if arguments["extra_cflags"] == neural_graph_native.FLAG_SETS[0]:
            raise RuntimeError("clang: error: the clang compiler does not support '-march=native'")
        return arguments["extra_cflags"]

    monkeypatch.delenv(neural_graph_native.SWITCH, raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", load)
    if len(neural_graph_native.FLAG_SETS) < 2:
        pytest.skip("one flag set on this platform")
    assert native_kernels() == neural_graph_native.FLAG_SETS[1]


def _fake_build(monkeypatch, tmp_path, on_load):
    """``native_kernels`` building into ``tmp_path`` (as ``$TORCH_EXTENSIONS_DIR``) with ``on_load`` as torch's
    build; returns the folder of the first flag set's build."""
    from torch.utils import cpp_extension

    monkeypatch.delenv(neural_graph_native.SWITCH, raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(cpp_extension, "load", on_load)
    directory = tmp_path / neural_graph_native._build_name(neural_graph_native.FLAG_SETS[0])
    directory.mkdir()
    return directory


def test_the_build_goes_where_torch_extensions_dir_says(monkeypatch, fresh_cache, tmp_path):
    calls = []
    directory = _fake_build(monkeypatch, tmp_path, lambda **arguments: calls.append(arguments) or "built")
    assert native_kernels() == "built"
    assert calls[0]["build_directory"] == str(directory)


def test_a_lock_left_by_a_killed_build_is_cleared(monkeypatch, fresh_cache, tmp_path):
    """torch's build lock is a file only the builder removes; one left by a killed process must not make every
    later build wait forever."""
    directory = _fake_build(monkeypatch, tmp_path, lambda **arguments: not (directory / "lock").exists())
    lock = directory / "lock"
    lock.touch()
    old = time.time() - neural_graph_native.STALE_LOCK_SECONDS - 60
    os.utime(lock, (old, old))
    assert native_kernels() is True


def test_a_recent_lock_is_waited_for_not_removed(monkeypatch, fresh_cache, tmp_path):
    """A lock younger than any build may belong to a compiler still running (a killed builder's child)."""
    directory = _fake_build(monkeypatch, tmp_path, lambda **arguments: "built")
    lock = directory / "lock"
    lock.touch()
    finisher = threading.Timer(1.5, lock.unlink)
    finisher.start()
    started = time.monotonic()
    assert native_kernels() == "built"
    finisher.join()
    assert time.monotonic() - started >= 1.4


def test_the_build_name_changes_with_the_cpu(monkeypatch):
    flags = neural_graph_native.FLAG_SETS[0]
    first = neural_graph_native._build_name(flags)
    monkeypatch.setattr(neural_graph_native, "_cpu_features", lambda: "flags : sse2")
    assert neural_graph_native._build_name(flags) != first


def test_the_compiled_loops_reject_what_they_cannot_read(compiled):
    edges, weight, bias = torch.zeros(2, 3, 4, 5), torch.zeros(8, 5), torch.zeros(8)
    rows, cols = torch.zeros(2, 3, 4), torch.zeros(2, 4, 4)
    empty = torch.empty(0)

    def forward(edges=edges, weight=weight, bias=bias, rows=rows, axis=1, statistics=(empty,) * 6, stop=2):
        compiled.messages_forward_range(edges, weight, bias, rows, cols, axis, *statistics, 0, stop, 1)

    with pytest.raises(RuntimeError, match="axis must be 1 or 2"):
        forward(axis=3)
    with pytest.raises(RuntimeError, match="contiguous"):
        forward(rows=rows.transpose(1, 2))
    with pytest.raises(RuntimeError, match="channels"):
        forward(weight=weight[:6].contiguous())
    with pytest.raises(RuntimeError, match="one dtype"):
        forward(rows=rows.double())
    with pytest.raises(RuntimeError, match=r"bias must be"):
        forward(bias=bias[:4])
    with pytest.raises(RuntimeError, match=r"\[B, R, F\]"):
        forward(statistics=(torch.zeros(5), torch.zeros(5), *[empty] * 4))
    with pytest.raises(RuntimeError, match="bad range"):
        forward(stop=3)
    with pytest.raises(RuntimeError, match=r"\[B, p, F\], \[B, q, F\]"):
        compiled.endpoint_sums(edges[..., :4].contiguous(), rows[0], cols)
    update_weight, updated = torch.zeros(4, 5), torch.zeros(2, 3, 4, 4)
    film_weight = torch.zeros(8, 4)

    def update(update_weight=update_weight, updated=updated, pre=updated):
        compiled.update_messages_forward_range(
            edges, update_weight, rows, cols, film_weight, bias, rows, cols, 1, *(empty,) * 6, updated, pre, 0, 2, 1
        )

    with pytest.raises(RuntimeError, match="update weight"):
        update(update_weight=torch.zeros(6, 5))
    with pytest.raises(RuntimeError, match="updated edges must be"):
        update(updated=torch.zeros(2, 3, 4, 6))
    with pytest.raises(RuntimeError, match="pre must be given"):
        update(pre=empty)
    raw, frequencies = torch.zeros(2, 3, 1), torch.zeros(4, 1)
    with pytest.raises(RuntimeError, match=r"frequencies must be \[K, C\]"):
        compiled.fourier_forward_range(raw, torch.zeros(4, 2), torch.zeros(5, 8), empty, torch.zeros(2, 3, 5), 0, 2, 1)
    with pytest.raises(RuntimeError, match=r"weight must be \[F, 2K\]"):
        compiled.fourier_forward_range(raw, frequencies, torch.zeros(5, 6), empty, torch.zeros(2, 3, 5), 0, 2, 1)
    with pytest.raises(RuntimeError, match="out must be"):
        compiled.fourier_forward_range(raw, frequencies, torch.zeros(5, 8), empty, torch.zeros(2, 3, 4), 0, 2, 1)


# Mixed widths run one group per architecture; the whole-batch norm runs the fused kernels on one architecture only.
@pytest.mark.parametrize(
    "widths, norm", [([(2, 5, 4, 1), (2, 3, 6, 1)] * 2, "graph"), ([(2, 5, 4, 1)] * 3, "minibatch")]
)
def test_a_model_computes_the_same_with_compiled_loops_and_torch_operations(compiled, monkeypatch, widths, norm):
    """A whole NeuralGraphGNN (32 channels, both directions, every statistic, two architectures) in float64:
    outputs and the gradient of every parameter, on chunks of one network so that every chunk boundary is
    crossed."""
    generator = torch.Generator().manual_seed(0)
    graphs = []
    for architecture in widths:
        pairs = [
            (
                torch.randn(out, inp, generator=generator, dtype=torch.float64),
                torch.randn(out, generator=generator, dtype=torch.float64),
            )
            for inp, out in itertools.pairwise(architecture)
        ]
        graphs.append(mlp_to_graph(pairs, activation="sine(30.0)"))
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(0)
    degree = pna_degree_histogram(sorted(set(widths)), both_directions=False)
    model = NeuralGraphGNN(3, 2, 1, 10, degree, hidden_channels=32, dropout=0.0, norm=norm).double().eval()
    monkeypatch.setattr(neural_graph_fused, "CHUNK_ELEMENTS", 1)
    calls = []
    fused_apply = neural_graph_fused._FusedMessages.apply
    monkeypatch.setattr(neural_graph_fused._FusedMessages, "apply", _counting(fused_apply, calls))
    results = []
    for kernels in (lambda: compiled, lambda: None):
        monkeypatch.setattr(neural_graph_fused, "native_kernels", kernels)
        model.zero_grad()
        output = model(batch)
        output.square().sum().backward()
        results.append((output.detach(), [parameter.grad.clone() for parameter in model.parameters()]))
    assert calls, "the model did not run the fused kernels"
    (native_output, native_grads), (torch_output, torch_grads) = results
    torch.testing.assert_close(native_output, torch_output, rtol=1e-12, atol=1e-12)
    for got, want in zip(native_grads, torch_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-11)


def _counting(function, calls):
    def counted(*args):
        calls.append(1)
        return function(*args)

    return counted


def test_only_cpu_tensors_reach_the_compiled_loops(compiled):
    """The loops are CPU code: on any other device (a GPU) the fused kernels run torch operations."""
    assert neural_graph_fused.native_kernels_for(torch.empty(0)) is compiled
    assert neural_graph_fused.native_kernels_for(torch.empty(0, device="meta")) is None
