"""SRC/activations.json: per-file hidden activations for state_dicts, checked against saved
modules' traces and against --activation, named when malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mlp_helpers import build_mlp
from torch import nn

from wsgraph.cli.main import main
from wsgraph.datasets import checkpoint_folders
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset


def _folder(tmp_path: Path, activations: object | None, module_activation: type[nn.Module] | None = None) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for number in range(4):
        mlp = build_mlp([2, 5, 1], activation=module_activation or nn.ReLU)
        torch.save(mlp if module_activation else mlp.state_dict(), src / f"net{number}.pt")
    if activations is not None:
        (src / "activations.json").write_text(json.dumps(activations))
    return src


def test_state_dicts_record_the_activation_the_file_gives(tmp_path: Path) -> None:
    src = _folder(tmp_path, {f"net{n}.pt": "sine(30)" for n in range(4)})
    convert_checkpoints(src, tmp_path / "out", split_ratios=(1.0, 0.0, 0.0), progress=False)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["activation"] == "sine(30.0)" and meta["activations"] == {"sine(30.0)": 4}
    assert meta["recipe"]["activations_files"] == [str((src / "activations.json").resolve())]
    assert WeightSpaceDataset(tmp_path / "out", split="train")[0].activation == "sine(30.0)"


def test_files_the_file_does_not_list_keep_their_own(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"net0.pt": "tanh"})
    convert_checkpoints(src, tmp_path / "out", split_ratios=(1.0, 0.0, 0.0), progress=False)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["activations"] == {"tanh": 1, "unknown": 3} and meta["activation"] == "unknown"


def test_an_agreeing_flag_is_accepted_and_a_contradicting_one_refused(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"net0.pt": "relu", "net1.pt": "relu", "net2.pt": "tanh"})
    with pytest.raises(ValueError, match=r"^--activation relu: .*activations.json records tanh for 1 of the "):
        convert_checkpoints(src, tmp_path / "out", activation="relu", progress=False)
    assert not (tmp_path / "out").exists()
    (src / "net2.pt").unlink()
    convert_checkpoints(src, tmp_path / "out", activation="relu", split_ratios=(1.0, 0.0, 0.0), progress=False)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["activations"] == {"relu": 3}


def test_a_saved_module_whose_trace_contradicts_its_entry_is_a_bad_file(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"net1.pt": "relu"}, module_activation=nn.Tanh)
    with pytest.raises(ValueError, match=r"net1.pt: the saved module's hidden activation is tanh, not relu as activ"):
        convert_checkpoints(src, tmp_path / "out", progress=False)
    report = convert_checkpoints(src, tmp_path / "out", skip_bad=True, progress=False)
    assert [skipped.path for skipped in report.skipped] == ["net1.pt"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected an object of checkpoint path -> activation name"),
        ('{"net0.pt": 3}', "entry 'net0.pt' is 3, not an activation name"),
        ('{"net0.pt": "swish"}', "entry 'net0.pt': unknown activation 'swish'"),
        ('{"net0.pt": "sine(nan)"}', "entry 'net0.pt': unknown activation 'sine(nan)'"),
        ("{", "not a readable JSON file"),
        ('{"../net0.pt": "relu"}', "entry '../net0.pt' is not a path below "),
        ('{"/abs/net0.pt": "relu"}', "entry '/abs/net0.pt' is not a path below "),
        ('{"./net0.pt": "relu"}', "entry './net0.pt' is not a path below "),
        ('{"net0.pt": "relu", "net0.pt": "tanh"}', "not a readable JSON file (entry 'net0.pt' is given twice)"),
    ],
)
def test_a_malformed_file_is_named_before_anything_is_written(tmp_path: Path, capsys, content, message) -> None:
    src = _folder(tmp_path, None)
    (src / "activations.json").write_text(content)
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert f"{src / 'activations.json'}: {message}" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_nearest_file_above_a_checkpoint_speaks_for_it(tmp_path: Path) -> None:
    src = _folder(tmp_path, None)
    (src / "shard").mkdir()
    for number in range(2):
        (src / f"net{number}.pt").rename(src / "shard" / f"net{number}.pt")
    (src / "activations.json").write_text(json.dumps({"shard/net0.pt": "tanh", "shard/net1.pt": "tanh"}))
    # Converting the sub-folder alone finds the zoo's file one level up.
    convert_checkpoints(src / "shard", tmp_path / "out", split_ratios=(1.0, 0.0, 0.0), progress=False)
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["activations"] == {"tanh": 2}
    # A nearer file decides, even where it lists nothing for a checkpoint.
    (src / "shard" / "activations.json").write_text(json.dumps({"net0.pt": "relu"}))
    convert_checkpoints(src / "shard", tmp_path / "near", split_ratios=(1.0, 0.0, 0.0), progress=False)
    assert json.loads((tmp_path / "near" / "meta.json").read_text())["activations"] == {"relu": 1, "unknown": 1}


def test_info_shows_the_activation_a_file_beside_a_state_dict_records(tmp_path: Path, capsys) -> None:
    src = _folder(tmp_path, {"net0.pt": "tanh"})
    assert main(["info", str(src / "net0.pt")]) == 0
    assert f"activation  tanh (as {src / 'activations.json'} records it)" in capsys.readouterr().out
    assert main(["info", str(src / "net1.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["activation"] == "unknown"


def test_a_file_reached_through_a_symlink_finds_the_entry_where_it_really_is(tmp_path: Path) -> None:
    src = _folder(tmp_path, {"net0.pt": "tanh", "net1.pt": "tanh", "net2.pt": "tanh", "net3.pt": "tanh"})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link").symlink_to(src)
    convert_checkpoints(tmp_path / "elsewhere", tmp_path / "out", split_ratios=(1.0, 0.0, 0.0), progress=False)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["activations"] == {"tanh": 4}
    assert meta["recipe"]["activations_files"] == [str((src / "activations.json").resolve())]


def test_shards_written_after_a_second_activation_carry_their_codes_at_once(tmp_path: Path, monkeypatch) -> None:
    order = ["relu", "relu", "relu", "tanh", "relu", "tanh"]
    src = tmp_path / "src"
    src.mkdir()
    for number in range(len(order)):
        torch.save(build_mlp([2, 5, 1]).state_dict(), src / f"net{number}.pt")
    (src / "activations.json").write_text(json.dumps({f"net{n}.pt": name for n, name in enumerate(order)}))
    written: list[int] = []
    real_write_shard = checkpoint_folders.write_shard

    def counting_write_shard(root, number, shard):
        written.append(number)
        return real_write_shard(root, number, shard)

    monkeypatch.setattr(checkpoint_folders, "write_shard", counting_write_shard)
    convert_checkpoints(src, tmp_path / "out", shard_size=2, progress=False)
    # Shard 0 was written before tanh was met and is rewritten with its codes; shards 1 and 2 once.
    assert written == [0, 1, 2, 0]
    dataset = WeightSpaceDataset(tmp_path / "out")
    paths = json.loads((tmp_path / "out" / "checkpoints.json").read_text())["paths"]
    assert [order[int(paths[str(int(i))][3:-3])] for i in dataset.source_id] == dataset.activations
