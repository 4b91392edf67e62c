import json

import pytest
import torch
from mlp_helpers import build_mlp

from wsgraph.cli.main import main
from wsgraph.datasets.dataset import WeightSpaceDataset


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "zoo"
    for number in range(5):
        path = folder / f"class{number % 2}" / f"net{number}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(build_mlp((2, 4, 1), seed=number).state_dict(), path)
    return folder


def test_convert_writes_a_dataset_and_prints_a_summary(src, tmp_path, capsys):
    out = tmp_path / "dataset"
    argv = ["convert", str(src), str(out), "--label-regex", r"class(\d)/", "--split-ratios", "0.6,0.2,0.2"]
    assert main([*argv, "--activation", "relu", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("converted 5 of 5 checkpoints in ") and lines[0].endswith(f"-> {out}")
    assert lines[1] == f"  {out}: train 3, val 1, test 1; architectures 2-4-1 (5)"
    dataset = WeightSpaceDataset(out, log=False)
    assert dataset.num_classes == 2 and dataset.meta["activation"] == "relu"
    assert sorted(dataset.y.tolist()) == [0, 0, 0, 1, 1]


def test_missing_source_is_a_one_line_error(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"wsgraph convert: error: {tmp_path / 'nowhere'}: no such folder\n"


def test_a_bad_checkpoint_stops_with_exit_1_and_nothing_written(src, tmp_path, capsys):
    (src / "class1" / "broken.pt").write_bytes(b"truncated")
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph convert: error: {src / 'class1' / 'broken.pt'}: ")
    assert "--skip-bad" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["zoo"]


def test_skip_bad_lists_the_skipped_files(src, tmp_path, capsys):
    (src / "class1" / "broken.pt").write_bytes(b"truncated")
    assert main(["convert", str(src), str(tmp_path / "out"), "--skip-bad", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "converted 5 of 6 checkpoints" in out
    assert f"skipped 1 (listed in {tmp_path / 'out' / 'skipped.json'}):\n  class1/broken.pt: " in out
    assert [item["path"] for item in json.loads((tmp_path / "out" / "skipped.json").read_text())["skipped"]] == [
        "class1/broken.pt"
    ]


def test_non_empty_output_needs_force(src, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert main(["convert", str(src), str(out), "--quiet"]) == 1
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    assert main(["convert", str(src), str(out), "--quiet", "--force"]) == 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--split-ratios", "0.5,0.5,0.5"], "three non-negative fractions summing to 1"),
        (["--split-ratios", "a,b,c"], "three non-negative fractions summing to 1"),
        (["--label-regex", "(a)(b)"], "needs exactly one"),
        (["--label-regex", "(unclosed"], "does not compile"),
        (["--labels", "x.csv", "--label-regex", "(a)"], "not allowed with argument"),
        (["--activation", "swishy"], "unknown activation"),
        (["--shard-size", "0"], "positive integer"),
    ],
)
def test_bad_flags_exit_2(src, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(src), str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
