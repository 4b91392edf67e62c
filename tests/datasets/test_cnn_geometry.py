"""``wsgraph convert`` records the CNNs' strides, paddings and dilations, so converted networks rebuild exactly."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from wsgraph import graph_to_cnn
from wsgraph.cli.main import main
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.conv_geometry import parse_geometry_text
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_meta


def strided_member(seed: int, convolutions: int = 3) -> nn.Sequential:
    """The Small CNN Zoo network: 3x3 convolutions with stride 2 and padding 1, pooling, a linear layer."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for position in range(convolutions):
        layers += [nn.Conv2d(1 if position == 0 else 4, 4, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


@pytest.fixture
def state_dicts(tmp_path):
    src = tmp_path / "zoo"
    src.mkdir()
    members = [strided_member(seed) for seed in range(3)]
    for number, member in enumerate(members):
        torch.save(member.state_dict(), src / f"m{number}.pt")
    return src, members


def rebuilt_outputs_match(out, members) -> None:
    dataset = WeightSpaceDataset(out, log=False)
    paths = json.loads((out / "checkpoints.json").read_text())["paths"]
    images = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for graph in dataset:
        member = members[int(paths[str(int(graph.source_id))][1:-3])]
        rebuilt = graph_to_cnn(graph, "relu")
        assert rebuilt[0].stride == (2, 2) and rebuilt[0].padding == (1, 1)
        assert torch.equal(rebuilt(images), member(images))


def test_flags_are_recorded_and_graph_to_cnn_defaults_to_them(state_dicts, tmp_path):
    src, members = state_dicts
    code = main(["convert", str(src), str(tmp_path / "out"), "--conv-stride", "2", "--conv-padding", "1", "--quiet"])
    assert code == 0
    meta = read_meta(tmp_path / "out")
    assert meta["conv_geometry"] == {"stride": [[2, 2]] * 3, "padding": [[1, 1]] * 3, "dilation": [[1, 1]] * 3}
    rebuilt_outputs_match(tmp_path / "out", members)


def test_geometry_json_next_to_the_checkpoints_is_read_and_flags_win(state_dicts, tmp_path):
    src, members = state_dicts
    (src / "geometry.json").write_text(json.dumps({"stride": [2, 2, "2x2"], "padding": 5}))
    convert_checkpoints(src, tmp_path / "out", conv_geometry={"padding": 1}, progress=False)
    assert read_meta(tmp_path / "out")["conv_geometry"]["padding"] == [[1, 1]] * 3
    rebuilt_outputs_match(tmp_path / "out", members)


def test_without_geometry_the_graphs_still_say_unknown(state_dicts, tmp_path):
    src, _ = state_dicts
    convert_checkpoints(src, tmp_path / "out", progress=False)
    assert "conv_geometry" not in read_meta(tmp_path / "out")
    graph = WeightSpaceDataset(tmp_path / "out", log=False)[0]
    with pytest.raises(ValueError, match="does not record the stride of convolution 1"):
        graph_to_cnn(graph, "relu")


def test_saved_modules_give_their_own_geometry_and_must_agree_with_the_flags(tmp_path):
    src = tmp_path / "zoo"
    src.mkdir()
    members = [strided_member(seed) for seed in range(2)]
    for number, member in enumerate(members):
        torch.save(member, src / f"m{number}.pt")
    convert_checkpoints(src, tmp_path / "out", progress=False)
    assert read_meta(tmp_path / "out")["conv_geometry"]["stride"] == [[2, 2]] * 3
    rebuilt_outputs_match(tmp_path / "out", members)
    with pytest.raises(
        ValueError, match=r"m0.pt: convolution 1 \(0\) has stride \(2, 2\), the given stride says \(1, 1\)"
    ):
        convert_checkpoints(src, tmp_path / "again", conv_geometry={"stride": 1}, progress=False)


def test_networks_with_fewer_convolutions_share_the_first_entries(tmp_path):
    src = tmp_path / "zoo"
    src.mkdir()
    # Four weight layers either way: three convolutions and one linear layer, or two and two.
    deep = strided_member(0)
    torch.manual_seed(1)
    shallow = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 10),
    )  # fmt: skip
    torch.save(deep.state_dict(), src / "m0.pt")
    torch.save(shallow.state_dict(), src / "m1.pt")
    convert_checkpoints(src, tmp_path / "out", conv_geometry={"stride": 2, "padding": 1}, progress=False)
    rebuilt_outputs_match(tmp_path / "out", [deep, shallow])
    with pytest.raises(ValueError, match=r"m1\.pt: 3 values of stride given for its 2 convolutions"):
        convert_checkpoints(src, tmp_path / "again", conv_geometry={"stride": [2, 2, 2]}, progress=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2", (2, 2)), ("2x1", (2, 1)), ("2,2,1", [(2, 2), (2, 2), (1, 1)]), ("2x1,1", [(2, 1), (1, 1)])],
)
def test_flag_values(text, expected):
    assert parse_geometry_text(text, "stride") == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--conv-stride", "0"], "stride (0, 0) must be at least 1"),
        (["--conv-padding", "two"], "cannot read a padding from 'two'"),
    ],
)
def test_bad_flags_exit_2_naming_the_value(state_dicts, tmp_path, capsys, flags, message):
    src, _ = state_dicts
    with pytest.raises(SystemExit) as raised:
        main(["convert", str(src), str(tmp_path / "out"), *flags])
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_geometry_file_is_named(state_dicts, tmp_path):
    src, _ = state_dicts
    (src / "geometry.json").write_text(json.dumps({"strides": 2}))
    with pytest.raises(ValueError, match=r"geometry\.json: unknown key 'strides'"):
        convert_checkpoints(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_geometry_file_nested_too_deeply_is_named(state_dicts, tmp_path):
    src, _ = state_dicts
    (src / "geometry.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"geometry\.json: not a readable JSON file \(JSON nested too deeply"):
        convert_checkpoints(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
