"""``wsgraph convert`` on folders of CNN state_dicts (the zoo trainer's layout), exact through the dataset."""

from __future__ import annotations

import json

import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn
from torch_geometric.loader import DataLoader

from wsgraph import cnn_to_graph, graph_specs, graph_to_cnn, graph_to_params, pad_kernels
from wsgraph.cli.main import main
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_meta


def zoo_member(kernel: int, width: int, seed: int) -> nn.Sequential:
    """``Conv2d, act, Conv2d, act, Conv2d, act, AdaptiveAvgPool2d(1), Flatten, Linear`` on 1-channel images."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, width, kernel),
        nn.ReLU(),
        nn.Conv2d(width, width, kernel),
        nn.ReLU(),
        nn.Conv2d(width, width, kernel),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, 10),
    )


@pytest.fixture
def zoo_folder(tmp_path):
    src = tmp_path / "zoo"
    members = [zoo_member(3, 4, 0), zoo_member(3, 6, 1), zoo_member(5, 4, 2), zoo_member(3, 4, 3)]
    for number, member in enumerate(members):
        (src / f"run{number}").mkdir(parents=True)
        torch.save(member.state_dict(), src / f"run{number}" / "model.pt")
    (tmp_path / "labels.csv").write_text("".join(f"run{n}/model.pt,{n % 2}\n" for n in range(len(members))))
    return src, members


def test_zoo_state_dicts_convert_into_one_cnn_root_exactly(zoo_folder, tmp_path):
    src, members = zoo_folder
    report = convert_checkpoints(
        src, tmp_path / "out", labels=tmp_path / "labels.csv", split_ratios=(1.0, 0.0, 0.0), progress=False
    )
    assert report.num_networks == 4 and len(report.roots) == 1
    meta = read_meta(tmp_path / "out")
    assert meta["weight_space"] == "cnn" and meta["kernel_grid"] == [5, 5] and meta["signature"] == [4, 1, 10]
    assert sorted(meta["architectures"]) == ["1-4-4-4-10 (conv 3x3,3x3,3x3)", "1-4-4-4-10 (conv 5x5,5x5,5x5)",
                                             "1-6-6-6-10 (conv 3x3,3x3,3x3)"]  # fmt: skip
    dataset = WeightSpaceDataset(tmp_path / "out", log=False)
    paths = json.loads((tmp_path / "out" / "checkpoints.json").read_text())["paths"]
    images = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    assert len(dataset) == 4
    for graph in dataset:
        member = members[int(paths[str(int(graph.source_id))].split("/")[0].removeprefix("run"))]
        expected = pad_kernels(cnn_to_graph(member.state_dict()), 5)
        assert torch.equal(graph.edge_attr, expected.edge_attr) and torch.equal(graph.x, expected.x)
        assert graph_specs(graph) == graph_specs(expected)
        for (weight, bias), module in zip(graph_to_params(graph), [member[0], member[2], member[4], member[8]]):
            assert torch.equal(weight, module.weight.detach()) and torch.equal(bias, module.bias.detach())
        rebuilt = graph_to_cnn(graph, "relu", stride=1, padding=0, dilation=1)
        with torch.no_grad():
            assert torch.equal(rebuilt(images), member(images))
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch.num_graphs == 4 and batch.edge_attr.size(-1) == 25
    assert sorted(batch.kernel_size[:, 0].tolist()) == [[3, 3]] * 3 + [[5, 5]]


def test_mlps_and_cnns_go_to_separate_roots(zoo_folder, tmp_path):
    src, _ = zoo_folder
    torch.save(build_mlp([2, 4, 10]).state_dict(), src / "mlp.pt")
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 0
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert sorted(entry["name"] for entry in index["datasets"]) == ["cnn-4layers-1in-10out", "mlp-2layers-2in-10out"]
    assert "weight_space" not in read_meta(tmp_path / "out" / "mlp-2layers-2in-10out")


def test_a_cnn_with_batch_norm_is_refused_naming_the_key(zoo_folder, tmp_path, capsys):
    src, _ = zoo_folder
    with_norm = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                              nn.Linear(4, 10))  # fmt: skip
    torch.save(with_norm.state_dict(), src / "norm.pt")
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 1
    error = capsys.readouterr().err.strip()
    assert "norm.pt" in error and "'1.running_mean'" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()
