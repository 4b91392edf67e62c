"""Saved CNN modules load without --trust-pickles; crafted ones still run no code and allocate nothing unbounded."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_security import SHELL_GLOBAL, RunsShell, assert_refusal
from torch import nn

from wsgraph import CheckpointError, cnn_to_graph, load_network_file
from wsgraph.cli.main import main
from wsgraph.core.extract_cnn import MAX_PROBE_ELEMENTS
from wsgraph.core.extract_mlp import NotAnMLPError
from wsgraph.datasets.checkpoint_folders import convert_checkpoints, read_network


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER"


class BuildsConv:
    """Pickles as a call of an allowed class, ``nn.Conv2d(3, 3, 3)``, instead of a restored instance."""

    def __reduce__(self):
        return (nn.Conv2d, (3, 3, 3))


def zoo_cnn(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def test_a_saved_cnn_module_loads_and_converts_without_the_opt_in(tmp_path, capsys):
    src = tmp_path / "zoo"
    src.mkdir()
    torch.save(zoo_cnn(0), src / "a.pt")
    torch.save(zoo_cnn(1), src / "b.pt")
    loaded = load_network_file(src / "a.pt")
    assert isinstance(loaded[0], nn.Conv2d) and loaded[0].stride == (2, 2)
    images = torch.randn(2, 1, 12, 12)
    assert torch.equal(loaded(images), zoo_cnn(0)(images))
    assert main(["info", "--json", str(src / "a.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["activation"] == "relu"
    convert_checkpoints(src, tmp_path / "out", progress=False)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["weight_space"] == "cnn" and meta["conv_geometry"]["padding"] == [[1, 1], [1, 1]]


def test_a_cnn_module_that_runs_a_command_is_refused(tmp_path, marker):
    path = tmp_path / "net.pt"
    network = zoo_cnn()
    network[0].payload = RunsShell(marker)
    torch.save(network, path)
    with pytest.raises(CheckpointError) as error:
        load_network_file(path)
    assert_refusal(str(error.value), path)
    assert SHELL_GLOBAL in str(error.value)
    assert not marker.exists()


def test_a_file_may_not_call_the_convolution_class(tmp_path):
    path = tmp_path / "net.pt"
    torch.save({"model": BuildsConv()}, path)
    with pytest.raises(CheckpointError, match=r"the file calls torch\.nn\.modules\.conv\.Conv2d\(\.\.\.\)"):
        load_network_file(path)


def crafted(tmp_path, edit) -> object:
    """A saved CNN whose first convolution (or its pooling) ``edit`` changed behind torch's constructors."""
    network = zoo_cnn()
    edit(network)
    path = tmp_path / "crafted.pt"
    torch.save(network, path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda n: setattr(n[0], "kernel_size", (1, 1)), r"weight of shape \(4, 1, 3, 3\), not the \(4, 1, 1, 1\)"),
        (lambda n: setattr(n[0], "stride", (0, 2)), r"malformed 'stride' \(\(0, 2\)\)"),
        (lambda n: setattr(n[0], "padding", "everything"), r"malformed 'padding' \('everything'\)"),
        (lambda n: setattr(n[0], "groups", 2**40), r"malformed 'groups'"),
        (
            lambda n: (
                setattr(n[0], "padding_mode", "reflect"),
                setattr(n[0], "_reversed_padding_repeated_twice", [10**6] * 4),
            ),
            r"malformed '_reversed_padding_repeated_twice'",
        ),
        (lambda n: setattr(n[4], "output_size", (10**5, 10**5)), r"pools to \(100000, 100000\); only a global average"),
        (lambda n: setattr(n[5], "start_dim", "1"), r"malformed 'start_dim' or 'end_dim'"),
    ],
)
def test_crafted_layer_options_are_refused_on_loading(tmp_path, edit, message):
    path = crafted(tmp_path, edit)
    with pytest.raises(CheckpointError, match=message) as error:
        load_network_file(path)
    assert str(error.value).startswith(f"{path}: the saved ") and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("edit", "culprit"),
    [
        (lambda n: setattr(n[2], "stride", (2**30, 2**30)), r"convolution 2: stride \(1073741824"),  # a 2**60 probe
        (lambda n: setattr(n[0], "padding", (2**30, 2**30)), r"convolution 1 \(stride \(2, 2\), padding \(1073741824"),
        (lambda n: setattr(n[2], "dilation", (2**20, 2**20)), r"convolution 2: stride \(2, 2\), dilation \(1048576"),
    ],
)
def test_convolutions_that_would_need_a_huge_probe_are_refused_before_running(tmp_path, edit, culprit, monkeypatch):
    path = crafted(tmp_path, edit)
    probe_sizes, convolutions_run = [], []
    real_randn, real_forward = torch.randn, nn.Conv2d.forward

    def recording_randn(*size, **options):
        probe_sizes.append(math.prod(size[0] if len(size) == 1 else size))
        return real_randn(*size, **options)

    def recording_forward(conv, input):
        convolutions_run.append(conv)
        return real_forward(conv, input)

    monkeypatch.setattr(torch, "randn", recording_randn)
    monkeypatch.setattr(nn.Conv2d, "forward", recording_forward)
    with pytest.raises(
        NotAnMLPError, match=rf"{culprit}.* would need a probe of over 67,108,864 values to trace; not read"
    ):
        read_network(path)
    assert convolutions_run == []
    assert all(size <= MAX_PROBE_ELEMENTS for size in probe_sizes)


def test_the_probe_budget_leaves_real_cnns_alone():
    large = nn.Sequential(nn.Conv2d(3, 64, 7, stride=4, padding=3, dilation=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(64, 10))  # fmt: skip
    assert cnn_to_graph(large).edge_attr.shape == (3 * 64 + 64 * 10, 49)
