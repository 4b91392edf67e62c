"""`wsgraph info ROOT`: what a dataset folder holds, from meta.json and the shard files alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn

from wsgraph.cli.main import main
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset


def info_lines(path: Path, capsys: pytest.CaptureFixture) -> list[str]:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out.splitlines()


def info_json(path: Path, capsys: pytest.CaptureFixture) -> dict:
    assert main(["info", "--json", str(path)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def digit_inrs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("info") / "digits"
    arguments = ["fit-inrs", "--source", "digits", "--out", str(root), "--limit", "4", "--steps", "5"]
    assert main([*arguments, "--shard-size", "5", "--dilated", "--no-progress"]) == 0
    return root


def test_info_on_image_inrs(digit_inrs: Path, capsys) -> None:
    lines = info_lines(digit_inrs, capsys)
    assert lines[0] == f"dataset     {digit_inrs} (wsgraph dataset, version 1)"
    assert "content     INRs of images (digits: sklearn.datasets.load_digits)" in lines
    assert "task        classification, 10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" in lines
    assert "networks    12 (train 4, val 4, test 4)" in lines
    assert any(line.startswith("shards      3 of 3 (") for line in lines)
    assert "widths      2-32-32-1 (M=3 weight layers), 1,185 parameters" in lines
    assert "activation  sine(30.0)" in lines
    assert "output      adds 0.5 to the last layer's output" in lines
    assert "recipe      init dwsnets, adam lr 0.0005, up to 5 steps, stopping at MSE 0.0001" in lines
    made = next(line for line in lines if line.startswith("made with"))
    assert "the first 4 images of each split" in made and "3x3-dilated images stored" in made
    assert any(line.startswith("fit         PSNR mean ") for line in lines)
    info = info_json(digit_inrs, capsys)
    assert info["split_sizes"] == {"train": 4, "val": 4, "test": 4}
    assert info["shards"]["recorded"] == info["shards"]["present"] == 3 and info["shards"]["missing"] == []
    assert info["signature"] == {"num_weight_layers": 3, "in_dim": 2, "out_dim": 1}
    assert info["recipe"]["steps"] == 5 and info["fit"]["psnr_db"]["all"]["count"] == 12


def test_info_names_the_missing_shards_of_a_cut_short_fit(digit_inrs: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    (copy / "shards").mkdir(parents=True)
    (copy / "meta.json").write_bytes((digit_inrs / "meta.json").read_bytes())
    (copy / "shards" / "shard-00001.pt").write_bytes((digit_inrs / "shards" / "shard-00001.pt").read_bytes())
    shards = next(line for line in info_lines(copy, capsys) if line.startswith("shards"))
    assert shards.startswith("shards      1 of 3 (")
    assert "shards/shard-00000.pt and 1 more missing: a fit still running or cut short" in shards
    assert info_json(copy, capsys)["shards"]["missing"] == ["shard-00000.pt", "shard-00002.pt"]
    # A meta.json that records an absurd number of shards is described from what is there, at once.
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps({**meta, "num_shards": 10**30}))
    shards = next(line for line in info_lines(copy, capsys) if line.startswith("shards"))
    assert f"1 of {10**30:,} (" in shards and f"shards/shard-00000.pt and {10**30 - 2:,} more missing" in shards
    described = info_json(copy, capsys)["shards"]
    assert described["missing_count"] == 10**30 - 1 and len(described["missing"]) == 100
    with pytest.raises(ValueError, match=f"shard-00000.pt and {10**30 - 2:,} more missing"):
        WeightSpaceDataset(copy, log=False)


def test_info_on_sine_inrs(tmp_path: Path, capsys) -> None:
    root = tmp_path / "sines"
    assert main(["fit-sines", "--out", str(root), "--count", "10", "--steps", "5", "--no-progress"]) == 0
    lines = info_lines(root, capsys)
    assert "content     INRs of sine waves (a * sin(b * x))" in lines
    assert "task        regression of amplitude a, frequency b" in lines
    assert "widths      1-32-32-1 (M=3 weight layers), 1,153 parameters" in lines
    assert any(line.startswith("fit         MSE mean ") for line in lines)


def test_info_on_converted_checkpoints(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for number in range(4):
        torch.save(build_mlp((2, 8 if number % 2 else 16, 1), seed=number).state_dict(), src / f"mlp{number}.pt")
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    torch.save(cnn.state_dict(), src / "cnn.pt")
    out = tmp_path / "out"
    convert_checkpoints(src, out, split_ratios=(1.0, 0.0, 0.0), progress=False)
    mlps = info_lines(out / "mlp-2layers-2in-1out", capsys)
    assert f"content     converted checkpoints from {src.resolve()}" in mlps
    assert "networks    4 (train 4, val 0, test 0)" in mlps
    assert "widths      2 architectures (M=2 weight layers): 2-16-1 (2), 2-8-1 (2)" in mlps
    assert "activation  unknown (state_dicts do not record it; convert --activation names it)" in mlps
    assert not any(line.startswith(("task", "recipe", "made with", "fit")) for line in mlps)
    cnns = info_lines(out / "cnn-2layers-1in-3out", capsys)
    assert "widths      1-4-3 (M=2 weight layers), CNN kernels up to 3x3" in cnns
    assert info_json(out / "cnn-2layers-1in-3out", capsys)["weight_space"] == "cnn"
    # The folder convert writes the roots into is not one; info names what it holds.
    assert main(["info", str(out)]) == 1
    error = capsys.readouterr().err
    assert error == (
        f"wsgraph info: error: {out}: a folder of datasets (cnn-2layers-1in-3out, mlp-2layers-2in-1out); "
        "give one of them\n"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, "a folder without meta.json, best.pt or last.pt; give a checkpoint file, a dataset folder"),
        (lambda root: (root / "meta.json").write_text("[1]"), "meta.json: not a wsgraph dataset (a JSON list"),
        (lambda root: (root / "meta.json").write_text("{"), "meta.json: not valid JSON"),
        (
            lambda root: (root / "meta.json").write_text('{"format": "wsgraph-weights", "widths": [2]}'),
            "meta.json: 'widths' must be a list of at least two positive integers, got [2]",
        ),
    ],
    ids=["no-meta", "not-an-object", "not-json", "bad-entry"],
)
def test_info_on_a_folder_that_is_not_a_dataset_is_one_line(tmp_path: Path, capsys, make, message) -> None:
    root = tmp_path / "folder"
    root.mkdir()
    make(root)
    assert main(["info", str(root)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"wsgraph info: error: {root}") and message in captured.err


def test_info_survives_a_strangers_meta_json(tmp_path: Path, capsys) -> None:
    # Entries read_meta leaves unchecked, of unexpected types, and text that would rewrite the terminal.
    meta = {
        "format": "wsgraph-weights",
        "kind": "inr",
        "task": "regression",
        "target_names": 3,
        "activation": "relu",
        "signature": ["a", 1, 1],
        "architectures": {"2-4-1": "many", "2-8-1": 2},
        "source": {"name": ["x"], "function": 7},
        "recipe": {"init": 1, "optimizer": "adam", "lr": "fast", "steps": -1, "early_stop_loss": "x"},
        "plan": {"seed": "zero", "limit_per_split": 2.5, "dilated": "yes"},
        "psnr_db": {"all": {"mean": "high", "min": 1, "max": 2}},
        "num_shards": 2,
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    lines = info_lines(tmp_path, capsys)
    assert "content     INRs of images" in lines
    assert "task        regression" in lines
    assert "widths      1 architectures: 2-8-1 (2)" in lines
    assert "activation  relu" in lines
    assert "recipe      recorded in meta.json" in lines and "made with   recorded in meta.json" in lines
    assert not any(line.startswith("fit") for line in lines)
    assert "shards      0 of 2 (0 bytes); shards/shard-00000.pt and 1 more missing" in lines[4]
    assert info_json(tmp_path, capsys)["architectures"] == {"2-4-1": "many", "2-8-1": 2}
    # An activation that is no known name (here one that would clear the terminal) is refused, shown escaped.
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "activation": "relu\x1b[2J"}))
    assert main(["info", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "'activation' must be a known activation name" in error and "\x1b" not in error and error.count("\n") == 1
