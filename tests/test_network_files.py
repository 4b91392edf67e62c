import contextlib
import os
import sys
import threading

import pytest
import torch
from mlp_helpers import assert_params_equal, build_mlp, linear_params
from torch import Tensor, nn

from wsgraph import CheckpointError, NotAnMLPError, Sine, graph_to_params, load_network_file
from wsgraph.core.network_files import graph_from_network_file


class SineNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.omega_0 = 30.0
        self.first = nn.Linear(2, 8)
        self.last = nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.last(torch.sin(self.omega_0 * self.first(x)))


class Tracker:
    """Records every time pickle rebuilds one: loading must never get that far."""

    rebuilt = 0

    def __reduce__(self):
        return (Tracker._rebuild, ())

    @staticmethod
    def _rebuild() -> "Tracker":
        Tracker.rebuilt += 1
        return Tracker()


def assert_one_line_naming(error: pytest.ExceptionInfo, path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(path))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_state_dict_file(tmp_path, suffix):
    mlp = build_mlp([2, 6, 1])
    path = tmp_path / f"net{suffix}"
    torch.save(mlp.state_dict(), path)
    loaded = load_network_file(path)
    assert isinstance(loaded, dict) and list(loaded) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(torch.equal(loaded[key], value) for key, value in mlp.state_dict().items())


@pytest.mark.parametrize("container", ["state_dict", "model_state_dict", "model", "net", "weights"])
def test_common_containers_are_unwrapped_and_extras_dropped(tmp_path, container):
    mlp = build_mlp([2, 6, 1])
    path = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 7, "optimizer": {"lr": 0.1, "state": {}}, container: mlp.state_dict()}, path)
    assert_params_equal(graph_to_params(graph_from_network_file(path)), linear_params(mlp))


def test_nested_containers_and_top_level_extras(tmp_path):
    mlp = build_mlp([3, 2])
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {"state_dict": mlp.state_dict(), "step": 3}}, path)
    assert set(load_network_file(path)) == {"0.weight", "0.bias"}
    torch.save({**mlp.state_dict(), "epoch": 2, "note": "best"}, path)
    assert set(load_network_file(path)) == {"0.weight", "0.bias"}


def test_saved_module_keeps_its_activation(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(2, 8), Sine(30.0), nn.Linear(8, 1))
    path = tmp_path / "siren.pt"
    torch.save(module, path)
    assert isinstance(load_network_file(path), nn.Sequential)
    graph = graph_from_network_file(path)
    assert graph.activation == "sine(30.0)"
    assert_params_equal(graph_to_params(graph), linear_params(module))
    torch.save({"model": build_mlp([2, 3, 1]), "epoch": 1}, path)
    assert isinstance(load_network_file(path), nn.Sequential)


def test_a_module_class_of_your_own_needs_trust_pickles(tmp_path):
    torch.manual_seed(0)
    module = SineNet()
    path = tmp_path / "siren.pt"
    torch.save(module, path)
    with pytest.raises(
        CheckpointError, match=r"refuses to unpickle 'test_network_files\.SineNet'.*--trust-pickles"
    ) as error:
        load_network_file(path)
    assert_one_line_naming(error, path)
    assert isinstance(load_network_file(path, trust_pickles=True), SineNet)
    graph = graph_from_network_file(path, trust_pickles=True)
    assert graph.activation == "sine(30.0)"
    assert_params_equal(graph_to_params(graph), linear_params(module))


def test_saved_module_whose_class_is_gone(tmp_path, monkeypatch):
    path = tmp_path / "siren.pt"
    torch.save(SineNet(), path)
    monkeypatch.delattr(sys.modules[__name__], "SineNet")
    with pytest.raises(CheckpointError, match=r"cannot unpickle it \(even trusting its pickles\): .*SineNet") as error:
        load_network_file(path, trust_pickles=True)
    assert_one_line_naming(error, path)


def test_pickled_objects_that_are_not_modules_are_never_unpickled(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": {"0.weight": torch.ones(2, 2)}, "extra": Tracker()}, path)
    Tracker.rebuilt = 0
    with pytest.raises(CheckpointError, match=r"refuses to unpickle .*'test_network_files\.Tracker'") as error:
        load_network_file(path)
    assert Tracker.rebuilt == 0
    assert_one_line_naming(error, path)


def test_safetensors_file(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    mlp = build_mlp([2, 4, 1])
    path = tmp_path / "net.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in mlp.state_dict().items()}, str(path))
    assert_params_equal(graph_to_params(graph_from_network_file(path)), linear_params(mlp))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as error:
        load_network_file(path)
    assert_one_line_naming(error, path)


def test_safetensors_without_the_package(tmp_path, monkeypatch):
    path = tmp_path / "net.safetensors"
    path.write_bytes(b"{}")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(CheckpointError, match="needs the 'safetensors' package"):
        load_network_file(path)


def write_truncated(path):
    torch.save(build_mlp([4, 8, 1]).state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda path: None, "no such file"),
        (lambda path: path.mkdir(), "is a directory"),
        (lambda path: path.write_bytes(b""), "corrupt or truncated"),
        (lambda path: path.write_bytes(bytes(range(256)) * 4), "corrupt, truncated or a plain pickle"),
        (write_truncated, "corrupt or truncated"),
        (lambda path: torch.save({"epoch": 3, "lr": 0.1}, path), r"holds no tensors \(keys: epoch, lr\)"),
        (lambda path: torch.save({"model": {}}, path), "holds no tensors"),
        (lambda path: torch.save([torch.ones(2)], path), "holds a list, expected a state_dict or an nn.Module"),
        (lambda path: torch.save(3, path), "holds an int, expected a state_dict or an nn.Module"),
    ],
    ids=["missing", "directory", "empty", "garbage", "truncated", "no-tensors", "empty-container", "list", "int"],
)
def test_unreadable_files(tmp_path, make, match):
    path = tmp_path / "net.pt"
    make(path)
    with pytest.raises(CheckpointError, match=match) as error:
        load_network_file(path)
    assert_one_line_naming(error, path)
    assert isinstance(error.value, ValueError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_or_a_device_is_refused_without_reading_it(tmp_path):
    pipe = tmp_path / "pipe.pt"
    os.mkfifo(pipe)  # opening it to read waits for a writer, forever if none comes

    def release_a_waiting_reader():
        with contextlib.suppress(OSError):  # nobody is reading: the pipe was refused (or is gone)
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))

    rescue = threading.Timer(10, release_a_waiting_reader)
    rescue.daemon = True
    rescue.start()
    device = tmp_path / "zero.pt"
    device.symlink_to(os.devnull)
    for path in (pipe, device):
        with pytest.raises(CheckpointError, match="not a regular file") as error:
            load_network_file(path)
        assert_one_line_naming(error, path)


def test_unknown_extension(tmp_path):
    path = tmp_path / "net.h5"
    path.write_bytes(b"\x89HDF")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint extension '\.h5'; expected one of") as error:
        load_network_file(path)
    assert_one_line_naming(error, path)


def test_graph_from_network_file_names_the_file_when_it_holds_no_mlp(tmp_path):
    path = tmp_path / "conv.pt"
    torch.save(nn.Conv2d(1, 2, 3).state_dict(), path)
    with pytest.raises(NotAnMLPError, match=r"conv\.pt: 'weight': weight has shape \(2, 1, 3, 3\)"):
        graph_from_network_file(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_an_unreadable_file_is_named_as_unreadable_not_corrupt(tmp_path, suffix):
    path = tmp_path / f"net{suffix}"
    path.write_bytes(b"not read")
    path.chmod(0)
    try:
        with contextlib.suppress(PermissionError), path.open("rb"):
            pytest.skip("this user reads files whatever their permissions (root)")
        with pytest.raises(CheckpointError, match="cannot be read \\(Permission denied\\)") as error:
            load_network_file(path)
        assert_one_line_naming(error, path)
    finally:
        path.chmod(0o600)


def test_a_file_of_several_state_dicts_says_so(tmp_path):
    path = tmp_path / "pair.pt"
    state = build_mlp([2, 3, 1]).state_dict()
    torch.save({"generator": state, "discriminator": state}, path)
    with pytest.raises(
        CheckpointError, match=r"holds several networks or dicts \(keys: generator, discriminator\), not one state_dict"
    ) as error:
        load_network_file(path)
    assert_one_line_naming(error, path)
