import errno
import json
import os
import stat
import subprocess
import sys

import pytest
import torch
from mlp_helpers import build_mlp

from wsgraph.cli.main import main
from wsgraph.core.convert_mlp import mlp_to_graph
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_shard, shard_paths
from wsgraph.inrs.render import image_grid_coords, render_inr


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


def test_non_empty_output_needs_force_and_force_replaces_only_a_dataset(src, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(src), str(out), "--quiet"]) == 0
    assert main(["convert", str(src), str(out), "--quiet"]) == 1
    assert "exists and is not empty; pass --force" in capsys.readouterr().err
    os.chmod(out, 0o750)
    assert main(["convert", str(src), str(out), "--quiet", "--force"]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o750
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("keep")
    assert main(["convert", str(src), str(theirs), "--quiet", "--force"]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph convert: error: {theirs}: holds files but no wsgraph dataset (no meta.json or index.json), "
        "so --force does not replace it; choose another output folder\n"
    )
    assert os.listdir(theirs) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["out", "theirs", "zoo"]


def test_output_inside_the_source_is_refused_in_one_line(src, capsys):
    assert main(["convert", str(src), str(src / "class0" / "dataset"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == f"wsgraph convert: error: {src / 'class0' / 'dataset'}: inside the source folder {src}; " + (
        "choose an output folder outside it\n"
    )
    assert not (src / "class0" / "dataset").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--split-ratios", "0.5,0.5,0.5"], "three non-negative fractions summing to 1"),
        (["--split-ratios", "a,b,c"], "three non-negative fractions summing to 1"),
        (["--label-regex", "(a)(b)"], "needs exactly one"),
        (["--label-regex", "(unclosed"], "does not compile"),
        (["--labels", "x.csv", "--label-regex", "(a)"], "not allowed with argument"),
        (["--activation", "swishy"], "unknown activation"),
        (["--activation", "sine(0)"], "argument --activation: activation 'sine(0)': omega_0 must be a finite number"),
        (["--activation", "sine(1e999)"], "omega_0 must be a finite number other than 0"),
        (["--shard-size", "0"], "positive integer"),
        (["--seed", "-1"], "argument --seed: expected a non-negative integer, got '-1'"),
    ],
)
def test_bad_flags_exit_2(src, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(src), str(tmp_path / "out"), *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_given_as_labels_file_is_named(src, tmp_path, capsys):
    assert main(["convert", str(src), str(tmp_path / "out"), "--labels", str(tmp_path), "--quiet"]) == 1
    assert capsys.readouterr().err == f"wsgraph convert: error: {tmp_path}: is a folder, not a labels file\n"
    assert not (tmp_path / "out").exists()


def _published_layout(root, items):
    """INR files as the DWSNets sets ship them: mnist_png_<split>/<label>_<n>/checkpoints/model_final.pth."""
    paths = {}
    for split, label, number in items:
        path = root / f"mnist_png_{split}" / f"{label}_{number}" / "checkpoints" / "model_final.pth"
        path.parent.mkdir(parents=True)
        widths = (2, 32, 32, 1)
        generator = torch.Generator().manual_seed(number)
        state = {}
        for layer in range(3):
            state[f"seq.{layer}.weight"] = torch.randn(widths[layer + 1], widths[layer], generator=generator)
            state[f"seq.{layer}.bias"] = torch.randn(widths[layer + 1], generator=generator)
        torch.save(state, path)
        paths[number] = path
    return paths


def test_convert_keeps_a_published_splits_file(tmp_path, capsys):
    src = tmp_path / "mnist-inrs"
    items = [("training", 3, 0), ("training", 7, 1), ("training", 1, 2), ("testing", 4, 3), ("testing", 9, 4)]
    paths = _published_layout(src, items)
    # Absolute paths of the machine that wrote the file, as generate_data_splits.py records them.
    elsewhere = lambda n: "/home/someone/DWSNets/dataset/mnist-inrs/" + paths[n].relative_to(src).as_posix()  # noqa: E731
    splits = {
        "train": {"path": [elsewhere(1), elsewhere(0)], "label": ["7", "3"]},
        "val": {"path": [elsewhere(2)], "label": ["1"]},
        "test": {"path": [elsewhere(3)], "label": ["4"]},
    }
    splits_file = tmp_path / "mnist_splits.json"
    splits_file.write_text(json.dumps(splits))
    out = tmp_path / "dataset"
    argv = ["convert", str(src), str(out), "--splits", str(splits_file), "--activation", "sine(30.0)"]
    assert main([*argv, "--output-offset", "0.5", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "converted 4 of 4 checkpoints" in printed and "train 2, val 1, test 1" in printed
    assert "left out 1 checkpoint files the splits file does not name" in printed
    dataset = WeightSpaceDataset(out, log=False)
    assert len(dataset) == 4 and dataset.num_classes == 8  # the largest label + 1
    names = json.loads((out / "checkpoints.json").read_text())["paths"]
    shard = read_shard(shard_paths(out)[0])
    by_name = {names[str(int(i))]: (int(y), int(split)) for i, y, split in zip(shard.index, shard.y, shard.split)}
    relative = lambda n: paths[n].relative_to(src).as_posix()  # noqa: E731
    assert by_name == {relative(0): (3, 0), relative(1): (7, 0), relative(2): (1, 1), relative(3): (4, 2)}
    assert dataset.meta["recipe"]["splits"] == str(splits_file.resolve())
    state = torch.load(paths[3], weights_only=True)
    row = [names[str(int(i))] for i in shard.index].index(relative(3))
    for layer in range(3):
        assert torch.equal(shard.weights[layer][row], state[f"seq.{layer}.weight"])
        assert torch.equal(shard.biases[layer][row], state[f"seq.{layer}.bias"])
    # Rendered through the recorded activation and offset, the stored network is the released class's forward.
    assert dataset.meta["output_offset"] == 0.5 and dataset.meta["activation"] == "sine(30.0)"
    coords = image_grid_coords(28, 28)
    graph = mlp_to_graph([(w[row : row + 1], b[row : row + 1]) for w, b in zip(shard.weights, shard.biases)])
    rendered = render_inr(graph, coords, dataset.meta["output_offset"], activation=dataset.meta["activation"])
    hidden = coords
    for layer in range(2):
        hidden = torch.sin(30.0 * (hidden @ state[f"seq.{layer}.weight"].T + state[f"seq.{layer}.bias"]))
    expected = hidden @ state["seq.2.weight"].T + state["seq.2.bias"] + 0.5
    torch.testing.assert_close(rendered.reshape(-1, 1), expected, rtol=1e-5, atol=1e-5)


def test_convert_splits_file_errors(tmp_path, capsys):
    src = tmp_path / "mnist-inrs"
    paths = _published_layout(src, [("training", 3, 0), ("testing", 4, 1)])
    splits_file = tmp_path / "splits.json"
    missing = "/elsewhere/mnist_png_training/5_9/checkpoints/model_final.pth"
    splits_file.write_text(json.dumps({"train": {"path": [str(paths[0]), missing], "label": [3, 5]}}))
    assert main(["convert", str(src), str(tmp_path / "out"), "--splits", str(splits_file), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{splits_file}: 1 entries name no checkpoint under {src}" in err
    assert not (tmp_path / "out").exists()
    assert (
        main(["convert", str(src), str(tmp_path / "out"), "--splits", str(splits_file), "--skip-bad", "--quiet"]) == 0
    )
    assert "skipped 1" in capsys.readouterr().out
    for document, message in [
        ("[1, 2]", 'expected {"train"'),
        ('{"train": {"path": ["a"], "label": []}}', "split 'train' has 1 paths but 0 labels"),
        ('{"training": {}}', "unknown split 'training'"),
        ("{not json", "not a JSON splits file"),
        ("[" * 100_000 + "]" * 100_000, f"{splits_file}: not a JSON splits file (JSON nested too deeply"),
    ]:
        splits_file.write_text(document)
        assert main(["convert", str(src), str(tmp_path / "o2"), "--splits", str(splits_file), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    splits_file.write_text(json.dumps({"train": {"path": [str(paths[0])], "label": ["3"]}}))
    argv = ["convert", str(src), str(tmp_path / "o3"), "--splits", str(splits_file), "--split-ratios", "1,0,0"]
    assert main(argv) == 1 and "give one" in capsys.readouterr().err


def test_a_checkpoint_with_float16_and_float32_layers_is_stored_in_float32(tmp_path, capsys):
    src = tmp_path / "zoo"
    src.mkdir()
    state = build_mlp((2, 4, 1), seed=0).state_dict()
    state["0.weight"], state["0.bias"] = state["0.weight"].half(), state["0.bias"].half()
    torch.save(state, src / "mixed.pt")
    out = tmp_path / "dataset"
    assert main(["convert", str(src), str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("; stored as float32, widened exactly (1 network with float16 layers)")
    assert json.loads((out / "meta.json").read_text())["dtype"] == "float32"
    shard = read_shard(shard_paths(out)[0])
    assert torch.equal(shard.weights[0][0], state["0.weight"].float())
    assert torch.equal(shard.weights[1][0].view(torch.int32), state["2.weight"].view(torch.int32))
    assert torch.equal(shard.biases[1][0].view(torch.int32), state["2.bias"].view(torch.int32))


def test_symlinked_folders_are_counted_and_unreadable_ones_named(src, tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for number in range(5):
        torch.save(build_mlp((2, 4, 1), seed=10 + number).state_dict(), elsewhere / f"net{number}.pt")
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (src / "linked" / "loop").symlink_to(src, target_is_directory=True)
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "converted 10 of 10 checkpoints" in printed
    assert "read once 1 folder reached again through symlinks:\n  linked/loop/ is ./\n" in printed

    listing = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and os.fsdecode(path) == str(src / "linked"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return listing(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert main(["convert", str(src), str(tmp_path / "out2"), "--quiet"]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph convert: error: {src / 'linked'}: folder cannot be read: Permission denied "
        "(pass --skip-bad to convert the other files)\n"
    )
    assert main(["convert", str(src), str(tmp_path / "out2"), "--quiet", "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "converted 5 of 5 checkpoints" in printed
    assert "skipped 1 (listed in" in printed and "  linked/: folder cannot be read: Permission denied" in printed


HOLD_THE_LOCK = """
import sys
from wsgraph.locks import write_lock
with write_lock(sys.argv[1], "wsgraph convert"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_convert_into_the_same_output_refuses_while_the_first_runs(src, tmp_path, capsys):
    out = tmp_path / "dataset"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert first.stdout.readline() == "locked\n"
        assert main(["convert", str(src), str(out), "--quiet", "--force"]) == 1
        assert capsys.readouterr().err == (
            f"wsgraph convert: error: {out}: wsgraph convert (process {first.pid}) is writing it; "
            "wait for it to end or choose another output folder\n"
        )
        assert not out.exists()
    finally:
        first.communicate("", timeout=60)
    assert first.returncode == 0
    assert main(["convert", str(src), str(out), "--quiet"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dataset", "zoo"]


@pytest.mark.parametrize("saved", ["module", "state_dict"])
@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors is a no-op")
def test_a_zero_width_layer_is_named_and_skipped_with_skip_bad(src, tmp_path, capsys, saved):
    network = build_mlp((2, 0, 1))
    path = src / "class1" / "empty-layer.pt"
    torch.save(network if saved == "module" else network.state_dict(), path)
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph convert: error: {path}: ")
    assert "shape (0, 2): a layer without neurons (pass --skip-bad to convert the other files)" in err
    assert sorted(item.name for item in tmp_path.iterdir()) == ["zoo"]
    assert main(["convert", str(src), str(tmp_path / "out"), "--quiet", "--skip-bad"]) == 0
    printed = capsys.readouterr().out
    assert "converted 5 of 6 checkpoints" in printed
    assert "\n  class1/empty-layer.pt: " in printed and "a layer without neurons" in printed
    skipped = json.loads((tmp_path / "out" / "skipped.json").read_text())["skipped"]
    assert [item["path"] for item in skipped] == ["class1/empty-layer.pt"]


@pytest.mark.parametrize("out", ["/proc/wsgraph-absent/out", "/proc/out"])
def test_an_output_folder_that_cannot_be_made_is_named(src, capsys, out):
    assert main(["convert", str(src), out, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsgraph convert: error: {out}: cannot ")
    assert ".converting" not in err


def test_the_current_folder_is_refused_as_output_before_any_work(src, tmp_path, monkeypatch, capsys):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert main(["convert", str(src), ".", "--quiet", "--force"]) == 1
    assert capsys.readouterr().err == (
        "wsgraph convert: error: .: the current folder or one that holds it; give a folder to create or replace\n"
    )
    assert os.listdir(here) == [] and sorted(os.listdir(tmp_path)) == ["here", "zoo"]
