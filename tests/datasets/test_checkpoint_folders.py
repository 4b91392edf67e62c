import errno
import json
import math
import os
import re
from pathlib import Path

import pytest
import torch
from mlp_helpers import OutputOffsetMLP, build_mlp, linear_params
from torch import nn

from wsgraph import graph_to_params
from wsgraph.datasets import checkpoint_folders
from wsgraph.datasets.checkpoint_folders import assign_splits, convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_meta, read_shard, shard_paths
from wsgraph.io import make_staging_folder

BAD_FILES = ("bad/conv.pt", "bad/corrupt.pt", "bad/empty.pth", "bad/nan.pt")


def save_good(src, count=6):
    """State_dicts ``cat/<i>.pt`` / ``dog/<i>.pt`` of 2-h-1 MLPs (two hidden widths) and a saved tanh module."""
    networks = {}
    for number in range(count):
        network = build_mlp((2, 4 + number % 2, 1), seed=number)
        name = f"{'cat' if number % 2 else 'dog'}/net{number}.pt"
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), src / name)
        networks[name] = network
    module = build_mlp((2, 3, 1), activation=nn.Tanh, seed=99)
    (src / "modules").mkdir()
    torch.save(module, src / "modules" / "tanh.pth")
    networks["modules/tanh.pth"] = module
    return networks


def save_bad(src):
    (src / "bad").mkdir()
    torch.save(nn.Conv2d(1, 2, 3).state_dict(), src / "bad/conv.pt")
    (src / "bad/corrupt.pt").write_bytes(b"\x80\x04not a checkpoint at all")
    (src / "bad/empty.pth").write_bytes(b"")
    nan = build_mlp((2, 4, 1), seed=5).state_dict()
    nan["0.weight"][0, 0] = math.nan
    torch.save(nan, src / "bad/nan.pt")


@pytest.fixture
def good_folder(tmp_path):
    src = tmp_path / "checkpoints"
    src.mkdir()
    return src, save_good(src)


@pytest.fixture
def mixed_folder(good_folder):
    save_bad(good_folder[0])
    return good_folder


def converted_networks(root):
    """``{relative path: (widths, params, y)}`` of every network in a converted root."""
    paths = json.loads((root / "checkpoints.json").read_text())["paths"]
    dataset = WeightSpaceDataset(root, log=False)
    return {
        paths[str(int(graph.source_id))]: (tuple(graph.layer_widths[0].tolist()), graph_to_params(graph), graph.y)
        for graph in dataset
    }


def test_converts_state_dicts_and_saved_modules_exactly(good_folder, tmp_path):
    src, networks = good_folder
    report = convert_checkpoints(src, tmp_path / "out", progress=False)
    assert report.num_networks == len(networks) == report.num_files and not report.skipped
    converted = converted_networks(tmp_path / "out")
    assert set(converted) == set(networks)
    for name, network in networks.items():
        _, params, y = converted[name]
        for (weight, bias), (expected_weight, expected_bias) in zip(params, linear_params(network)):
            assert torch.equal(weight, expected_weight) and torch.equal(bias, expected_bias)
        assert int(y) == -1
    meta = read_meta(tmp_path / "out")
    assert meta["kind"] == "checkpoints" and "task" not in meta
    assert meta["architectures"] == {"2-3-1": 1, "2-4-1": 3, "2-5-1": 3}
    assert meta["activations"] == {"tanh": 1, "unknown": 6} and meta["activation"] == "unknown"
    dataset = WeightSpaceDataset(tmp_path / "out", log=False)
    assert dataset.signature == (2, 2, 1) and len(dataset.architectures) == 3


def test_default_mode_stops_at_the_first_bad_file_and_leaves_nothing(mixed_folder, tmp_path):
    src, _ = mixed_folder
    before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(ValueError, match=r"bad/conv\.pt: .*weight has shape \(2, 1, 3, 3\).*--skip-bad"):
        convert_checkpoints(src, tmp_path / "out", progress=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_skip_bad_converts_the_rest_and_lists_each_bad_file_with_its_reason(mixed_folder, tmp_path):
    src, networks = mixed_folder
    report = convert_checkpoints(src, tmp_path / "out", skip_bad=True, progress=False)
    assert report.num_networks == len(networks)
    reasons = {item.path: item.reason for item in report.skipped}
    assert tuple(sorted(reasons)) == BAD_FILES
    assert "2-D" in reasons["bad/conv.pt"]
    assert "corrupt" in reasons["bad/corrupt.pt"] and "corrupt" in reasons["bad/empty.pth"]
    assert "NaN" in reasons["bad/nan.pt"]
    written = json.loads((tmp_path / "out" / "skipped.json").read_text())["skipped"]
    assert {item["path"]: item["reason"] for item in written} == reasons
    assert set(converted_networks(tmp_path / "out")) == set(networks)


def test_labels_from_csv_class_names_and_unlabeled(good_folder, tmp_path):
    src, networks = good_folder
    rows = ["path,label"] + [f"{name},{name.split('/')[0]}" for name in networks if name.endswith(".pt")]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    convert_checkpoints(src, tmp_path / "out", labels=tmp_path / "labels.csv", progress=False)
    meta = read_meta(tmp_path / "out")
    assert meta["task"] == "classification" and meta["class_names"] == ["cat", "dog"] and meta["num_classes"] == 2
    assert meta["unlabeled"] == 1
    for name, (_, _, y) in converted_networks(tmp_path / "out").items():
        expected = {"cat": 0, "dog": 1}.get(name.split("/")[0], -1)
        assert y.tolist() == [expected]


def test_numeric_csv_labels_are_regression_targets(good_folder, tmp_path):
    src, networks = good_folder
    names = sorted(networks)
    rows = [f"./{name},{position * 0.5},{-position}" for position, name in enumerate(names[:-1])]
    (tmp_path / "targets.csv").write_text("\n".join(rows))
    convert_checkpoints(src, tmp_path / "out", labels=tmp_path / "targets.csv", progress=False)
    converted = converted_networks(tmp_path / "out")
    for position, name in enumerate(names[:-1]):
        assert converted[name][2].tolist() == [[position * 0.5, -position]]
    assert all(math.isnan(value) for value in converted[names[-1]][2].flatten().tolist())
    assert WeightSpaceDataset(tmp_path / "out", log=False).num_classes == 2


def test_labels_from_a_regex_on_the_path(good_folder, tmp_path):
    src, _ = good_folder
    convert_checkpoints(src, tmp_path / "out", label_regex=r"net(\d)\.pt$", progress=False)
    converted = converted_networks(tmp_path / "out")
    assert converted["dog/net4.pt"][2].tolist() == [4]
    assert converted["modules/tanh.pth"][2].tolist() == [-1]
    assert read_meta(tmp_path / "out")["num_classes"] == 6


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("dog/net0.pt,1\nmissing.pt,2\n", r"line 2: 'missing\.pt' is not a checkpoint file"),
        ("dog/net0.pt,1\ndog/net0.pt,2\n", "a second label"),
        ("dog/net0.pt\n", "expected 'path,label'"),
        ("dog/net0.pt,1\ndog/net2.pt,\n", r"line 2: an empty label for 'dog/net2\.pt'"),
        ("path,a,b\ndog/net0.pt,1.5,\n", r"line 2: an empty label for 'dog/net0\.pt'"),
        ("dog/net0.pt,-3\n", "negative"),
        ("dog/net0.pt,99999999999999999999999\n", "class label 99999999999999999999999 of 'dog/net0.pt' would make"),
    ],
)
def test_bad_label_files_are_reported_by_line(good_folder, tmp_path, csv_text, message):
    (tmp_path / "labels.csv").write_text(csv_text)
    with pytest.raises(ValueError, match=message):
        convert_checkpoints(good_folder[0], tmp_path / "out", labels=tmp_path / "labels.csv", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe\x00 not text", b'dog/net0.pt,"' + b"x" * 200_000 + b'"\n'],
    ids=["binary", "cell-past-the-csv-limit"],
)
def test_an_unreadable_label_file_is_an_error_naming_it(good_folder, tmp_path, content):
    (tmp_path / "labels.csv").write_bytes(content)
    with pytest.raises(ValueError, match=r"labels\.csv: not a readable CSV labels file"):
        convert_checkpoints(good_folder[0], tmp_path / "out", labels=tmp_path / "labels.csv", progress=False)
    assert not (tmp_path / "out").exists()


def test_several_signatures_get_one_root_each_and_an_index(good_folder, tmp_path):
    src, _ = good_folder
    torch.save(build_mlp((3, 4, 4, 2), seed=1).state_dict(), src / "deep.pt")
    report = convert_checkpoints(src, tmp_path / "out", progress=False)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    names = [entry["name"] for entry in index["datasets"]]
    assert names == ["mlp-2layers-2in-1out", "mlp-3layers-3in-2out"]
    assert [entry["networks"] for entry in index["datasets"]] == [7, 1]
    assert [root.path for root in report.roots] == [tmp_path / "out" / name for name in names]
    assert WeightSpaceDataset(tmp_path / "out" / names[1], log=False).widths == (3, 4, 4, 2)
    # --force replaces such a folder whole, but not one to which files were added, at either level.
    for added in (tmp_path / "out" / "notes.md", tmp_path / "out" / names[0] / "notes.md"):
        added.write_text("mine")
        with pytest.raises(FileExistsError, match=re.escape(f"holds {added.relative_to(tmp_path / 'out')}, which")):
            convert_checkpoints(src, tmp_path / "out", force=True, progress=False)
        added.unlink()
    convert_checkpoints(src, tmp_path / "out", force=True, progress=False)


def test_networks_without_biases_keep_has_bias(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    networks = [build_mlp((2, 4, 1), bias=[True, False], seed=0), build_mlp((2, 4, 1), seed=1)]
    for number, network in enumerate(networks):
        torch.save(network.state_dict(), src / f"{number}.pt")
    convert_checkpoints(src, tmp_path / "out", split_ratios=(1, 0, 0), progress=False)
    dataset = WeightSpaceDataset(tmp_path / "out", log=False)
    assert dataset[0].has_bias.tolist() == [[True, False]]
    assert graph_to_params(dataset[0])[1][1] is None
    assert dataset[1].has_bias.tolist() == [[True, True]]


def test_streams_into_bounded_shards_deterministically(good_folder, tmp_path):
    src, _ = good_folder
    for run in ("a", "b"):
        convert_checkpoints(src, tmp_path / run, shard_size=2, seed=3, progress=False)
    shards_a, shards_b = shard_paths(tmp_path / "a"), shard_paths(tmp_path / "b")
    assert len(shards_a) == len(shards_b) == 5  # 3 + 3 + 1 networks of three architectures
    for path_a, path_b in zip(shards_a, shards_b):
        a, b = read_shard(path_a), read_shard(path_b)
        assert len(a) <= 2
        fields_a, fields_b = [*a.weights, a.y, a.split, a.index], [*b.weights, b.y, b.split, b.index]
        assert all(torch.equal(x, y) for x, y in zip(fields_a, fields_b))


def test_split_assignment_has_exact_proportions():
    codes = assign_splits(1000, (0.7, 0.2, 0.1), seed=0)
    assert [int((codes == code).sum()) for code in range(3)] == [700, 200, 100]
    assert not (codes[:700] == 0).all(), "the split must be drawn at random, not by position"
    assert (assign_splits(1000, (0.7, 0.2, 0.1), seed=0) == codes).all()


def test_existing_output_is_refused_unless_forced(good_folder, tmp_path):
    src, networks = good_folder
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty; pass --force"):
        convert_checkpoints(src, out, progress=False)
    # --force replaces an earlier dataset, not a folder of someone's files.
    with pytest.raises(FileExistsError, match="holds files but no wsgraph dataset"):
        convert_checkpoints(src, out, force=True, progress=False)
    assert os.listdir(out) == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    convert_checkpoints(src, out, progress=False)
    (out / "processed").mkdir()
    (out / "notes.md").write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(f"{out}: holds notes.md, which is not part of a wsgraph")):
        convert_checkpoints(src, out, force=True, progress=False)
    (out / "notes.md").unlink()
    convert_checkpoints(src, out, force=True, progress=False)
    assert not (out / "processed").exists() and len(WeightSpaceDataset(out, log=False)) == len(networks)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "out"]


def test_a_dataset_moved_aside_by_a_killed_replacement_is_put_back(good_folder, tmp_path):
    src, networks = good_folder
    out = tmp_path / "out"
    convert_checkpoints(src, out, progress=False)
    # Killed between its two renames: the earlier dataset waits beside OUT, and OUT is gone.
    aside = make_staging_folder(out, ".replaced")
    os.replace(out, aside)
    with pytest.raises(FileExistsError, match="exists and is not empty; pass --force"):
        convert_checkpoints(src, out, progress=False)
    assert len(WeightSpaceDataset(out, log=False)) == len(networks)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "out"]


def test_a_symlinked_output_gets_the_dataset_where_it_points(good_folder, tmp_path):
    src, networks = good_folder
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    convert_checkpoints(src, tmp_path / "link", progress=False)
    convert_checkpoints(src, tmp_path / "link", force=True, progress=False)
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "meta.json").is_file()
    assert len(WeightSpaceDataset(tmp_path / "link", log=False)) == len(networks)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "link", "real"]


def test_a_mount_point_is_refused_before_any_work(good_folder, tmp_path, monkeypatch):
    src, _ = good_folder
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda path: os.fspath(path) == os.fspath(out))
    with pytest.raises(ValueError, match=re.escape(f"{out}: a mount point, which cannot be replaced by renaming")):
        convert_checkpoints(src, out, progress=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "out"]


@pytest.mark.parametrize("kind", ["labels", "splits"])
def test_a_labels_or_splits_file_inside_the_output_is_refused_before_force_replaces_it(good_folder, tmp_path, kind):
    src, networks = good_folder
    out = tmp_path / "out"
    convert_checkpoints(src, out, progress=False)
    listed = tmp_path / "listed.csv"
    if kind == "labels":
        listed.write_text("path,label\n" + "".join(f"{path},1\n" for path in networks))
    else:
        listed = listed.with_suffix(".json")
        listed.write_text(json.dumps({"train": {"path": list(networks), "label": [1] * len(networks)}}))
    inside = out / listed.name
    inside.write_bytes(listed.read_bytes())
    with pytest.raises(ValueError, match=re.escape(f"{inside}: the {kind} file is inside the output folder {out}")):
        convert_checkpoints(src, out, force=True, progress=False, **{kind: inside})
    assert inside.read_bytes() == listed.read_bytes()
    # Still there, so not replaced even once the file read is the one outside.
    with pytest.raises(FileExistsError, match=re.escape(f"{out}: holds {inside.name}, which is not part of")):
        convert_checkpoints(src, out, force=True, progress=False, **{kind: listed})
    inside.unlink()
    convert_checkpoints(src, out, force=True, progress=False, **{kind: listed})
    assert len(WeightSpaceDataset(out, log=False)) == len(networks)


def test_output_inside_the_source_folder_is_refused(good_folder, tmp_path):
    src, _ = good_folder
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    before = sorted(path.relative_to(src) for path in src.rglob("*"))
    for out in (src / "dataset", src / "cat" / "dataset", tmp_path / "link" / "dataset"):
        with pytest.raises(
            ValueError, match=re.escape(f"{out}: inside the source folder {src}; choose an output folder")
        ):
            convert_checkpoints(src, out, force=True, progress=False)
    assert sorted(path.relative_to(src) for path in src.rglob("*")) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "link"]


def test_safetensors_files(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    src = tmp_path / "src"
    src.mkdir()
    network = build_mlp((2, 4, 1), seed=0)
    safetensors.save_file(network.state_dict(), src / "net.safetensors")
    convert_checkpoints(src, tmp_path / "out", progress=False)
    ((_, params, _),) = converted_networks(tmp_path / "out").values()
    assert all(torch.equal(w, e) for (w, _), (e, _) in zip(params, linear_params(network)))


def test_missing_source_and_empty_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        convert_checkpoints(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no checkpoint files"):
        convert_checkpoints(tmp_path / "empty", tmp_path / "out", progress=False)


def _state_dict(widths, dtypes, seed):
    """A state_dict of an MLP of ``widths`` whose layer ``l`` has dtype ``dtypes[l]``."""
    network = build_mlp(widths, seed=seed).double()
    state = {}
    for key, value in network.state_dict().items():
        state[key] = value.to(dtypes[int(key.split(".")[0]) // 2])
    return state


def test_mixed_dtypes_are_stored_in_the_widest_one_exactly(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Sorted first, and alone in its shard: written in float16 before the wider networks come.
    half = _state_dict((2, 4, 1), [torch.float16, torch.float16], seed=0)
    mixed = _state_dict((2, 4, 1), [torch.float16, torch.float32], seed=1)
    single = _state_dict((2, 4, 1), [torch.float32, torch.float32], seed=2)
    for name, state in (("a_half.pt", half), ("b_mixed.pt", mixed), ("c_single.pt", single)):
        torch.save(state, src / name)
    report = convert_checkpoints(src, tmp_path / "out", shard_size=1, progress=False)
    assert report.roots[0].dtype == "float32" and report.roots[0].widened == {"float16": 2}
    assert read_meta(tmp_path / "out")["dtype"] == "float32"
    assert {weight.dtype for path in shard_paths(tmp_path / "out") for weight in read_shard(path).weights} == {
        torch.float32
    }
    converted = converted_networks(tmp_path / "out")
    for name, state in (("a_half.pt", half), ("b_mixed.pt", mixed), ("c_single.pt", single)):
        params = converted[name][1]
        for layer, (weight, bias) in enumerate(params):
            expected_weight, expected_bias = state[f"{2 * layer}.weight"], state[f"{2 * layer}.bias"]
            assert torch.equal(weight.double(), expected_weight.double())
            assert torch.equal(bias.double(), expected_bias.double())
    # The float32 layer, bit for bit.
    stored = converted["b_mixed.pt"][1][1][0]
    assert torch.equal(stored.view(torch.int32), mixed["2.weight"].view(torch.int32))


def test_float64_stays_float64_and_a_float16_folder_stays_float16(tmp_path):
    wide, narrow = tmp_path / "wide", tmp_path / "narrow"
    wide.mkdir()
    narrow.mkdir()
    float64 = _state_dict((2, 3, 1), [torch.float64, torch.float64], seed=0)
    torch.save(float64, wide / "a.pt")
    torch.save(_state_dict((2, 3, 1), [torch.float32, torch.float16], seed=1), wide / "b.pt")
    report = convert_checkpoints(wide, tmp_path / "wide-out", progress=False)
    assert report.roots[0].dtype == "float64" and report.roots[0].widened == {"float16+float32": 1}
    stored = converted_networks(tmp_path / "wide-out")["a.pt"][1][0][0]
    assert stored.dtype == torch.float64 and torch.equal(stored, float64["0.weight"])
    torch.save(_state_dict((2, 3, 1), [torch.float16, torch.float16], seed=2), narrow / "a.pt")
    report = convert_checkpoints(narrow, tmp_path / "narrow-out", progress=False)
    assert report.roots[0].dtype == "float16" and report.roots[0].widened == {}
    assert read_meta(tmp_path / "narrow-out")["dtype"] == "float16"


def test_symlinked_folders_are_read_and_each_folder_once(tmp_path):
    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    for folder, count in ((src / "real", 2), (elsewhere, 3)):
        folder.mkdir(parents=True)
        for number in range(count):
            torch.save(build_mlp((2, 4, 1), seed=number).state_dict(), folder / f"net{number}.pt")
    (src / "again").symlink_to(elsewhere, target_is_directory=True)
    (src / "linked").symlink_to(elsewhere, target_is_directory=True)
    (src / "real" / "loop").symlink_to(src / "real", target_is_directory=True)
    (src / "real" / "up").symlink_to("..", target_is_directory=True)
    report = convert_checkpoints(src, tmp_path / "out", progress=False)
    assert report.num_files == report.num_networks == 5 and not report.skipped
    assert report.repeated == [("linked/", "again/"), ("real/loop/", "real/"), ("real/up/", "./")]
    paths = json.loads((tmp_path / "out" / "checkpoints.json").read_text())["paths"]
    assert sorted(paths.values()) == [*(f"again/net{n}.pt" for n in range(3)), "real/net0.pt", "real/net1.pt"]


def make_unreadable(folder, monkeypatch):
    """``chmod 000`` on ``folder``; where that does not stop this process (root), listing it fails as it would."""
    folder.chmod(0)
    if os.access(folder, os.R_OK | os.X_OK):
        listing = os.scandir

        def scandir(path="."):
            if not isinstance(path, int) and Path(os.fsdecode(path)) == folder:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
            return listing(path)

        monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture
def locked_folder(good_folder, monkeypatch):
    src, networks = good_folder
    locked = src / "locked"
    locked.mkdir()
    torch.save(build_mlp((2, 4, 1), seed=0).state_dict(), locked / "hidden-from-us.pt")
    make_unreadable(locked, monkeypatch)
    yield src, networks
    locked.chmod(0o755)


def test_an_unreadable_folder_stops_the_conversion_naming_it(locked_folder, tmp_path):
    src, _ = locked_folder
    before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(ValueError) as error:
        convert_checkpoints(src, tmp_path / "out", progress=False)
    assert str(error.value) == (
        f"{src / 'locked'}: folder cannot be read: Permission denied (pass --skip-bad to convert the other files)"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_skip_bad_lists_an_unreadable_folder(locked_folder, tmp_path):
    src, networks = locked_folder
    report = convert_checkpoints(src, tmp_path / "out", skip_bad=True, progress=False)
    assert report.num_networks == report.num_files == len(networks)
    assert [vars(item) for item in report.skipped] == [
        {"path": "locked/", "reason": "folder cannot be read: Permission denied"}
    ]
    written = json.loads((tmp_path / "out" / "skipped.json").read_text())["skipped"]
    assert written == [vars(item) for item in report.skipped]


def test_a_symlink_to_nothing_is_not_passed_over(good_folder, tmp_path):
    src, networks = good_folder
    (src / "disk").symlink_to(tmp_path / "unmounted", target_is_directory=True)
    with pytest.raises(
        ValueError, match=r"disk: a symlink to \S*unmounted: No such file or directory \(pass --skip-bad"
    ):
        convert_checkpoints(src, tmp_path / "out", progress=False)
    report = convert_checkpoints(src, tmp_path / "out", skip_bad=True, progress=False)
    assert [item.path for item in report.skipped] == ["disk"] and report.num_networks == len(networks)
    (src / "disk").unlink()
    (src / "disk").symlink_to("disk")
    with pytest.raises(ValueError, match="disk: a symlink to disk: Too many levels of symbolic links"):
        convert_checkpoints(src, tmp_path / "out2", progress=False)


def test_an_output_written_during_the_conversion_is_not_replaced(good_folder, tmp_path, monkeypatch):
    src, networks = good_folder
    out = tmp_path / "out"
    arrange = checkpoint_folders._arrange

    def first_run_finishes_meanwhile(*args):
        out.mkdir(exist_ok=True)
        (out / "meta.json").write_text("the first run's")
        return arrange(*args)

    monkeypatch.setattr(checkpoint_folders, "_arrange", first_run_finishes_meanwhile)
    message = f"{out}: written by another program while this conversion ran; nothing replaced (pass --force"
    with pytest.raises(FileExistsError, match=re.escape(message)):
        convert_checkpoints(src, out, progress=False)
    assert (out / "meta.json").read_text() == "the first run's"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "out"]
    (out / "meta.json").unlink()
    convert_checkpoints(src, out, force=True, progress=False)
    assert len(WeightSpaceDataset(out, log=False)) == len(networks)


def test_the_staging_folder_of_a_killed_conversion_is_removed_by_the_next(good_folder, tmp_path):
    src, networks = good_folder
    out = tmp_path / "out"
    stale = tmp_path / ".out.k1ll3d9x.converting"  # what a conversion killed by SIGKILL leaves
    (stale / "shards").mkdir(parents=True)
    (stale / "shards" / "shard-00000.pt").write_bytes(b"half")
    others = [tmp_path / ".out.k1ll3d9x.renaming", tmp_path / ".outer.k1ll3d9x.converting"]
    for other in others:
        other.mkdir()
    convert_checkpoints(src, out, progress=False)
    assert not stale.exists() and all(other.is_dir() for other in others)
    assert len(WeightSpaceDataset(out, log=False)) == len(networks)


def test_an_output_written_before_the_lock_is_taken_is_refused(good_folder, tmp_path, monkeypatch):
    src, _ = good_folder
    out = tmp_path / "out"
    find = checkpoint_folders.find_checkpoints

    def first_run_finishes_meanwhile(*args, **kwargs):
        out.mkdir()
        (out / "meta.json").write_text("the first run's")
        return find(*args, **kwargs)

    monkeypatch.setattr(checkpoint_folders, "find_checkpoints", first_run_finishes_meanwhile)
    with pytest.raises(FileExistsError, match="exists and is not empty; pass --force"):
        convert_checkpoints(src, out, progress=False)
    assert (out / "meta.json").read_text() == "the first run's"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "out"]


def test_an_unreadable_source_folder_is_an_error_even_with_skip_bad(good_folder, tmp_path, monkeypatch):
    src, _ = good_folder
    make_unreadable(src, monkeypatch)
    try:
        with pytest.raises(ValueError) as error:
            convert_checkpoints(src, tmp_path / "out", skip_bad=True, progress=False)
    finally:
        src.chmod(0o755)
    assert str(error.value) == f"{src}: folder cannot be read: Permission denied"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints"]


def test_a_given_activation_that_contradicts_a_saved_module_is_refused(tmp_path):
    from wsgraph import Sine

    src = tmp_path / "src"
    src.mkdir()
    torch.save(build_mlp((2, 4, 1), activation=nn.ReLU, seed=0), src / "relu.pt")
    torch.save(build_mlp((2, 4, 1), seed=1).state_dict(), src / "plain.pt")
    with pytest.raises(ValueError, match=re.escape("relu.pt: the saved module's hidden activation is relu, not the given --activation tanh")):  # fmt: skip
        convert_checkpoints(src, tmp_path / "out", activation="tanh", progress=False)
    assert not (tmp_path / "out").exists()
    report = convert_checkpoints(src, tmp_path / "out", activation="tanh", skip_bad=True, progress=False)
    assert [item.path for item in report.skipped] == ["relu.pt"] and report.num_networks == 1
    assert read_meta(tmp_path / "out")["activations"] == {"tanh": 1}
    convert_checkpoints(src, tmp_path / "agreed", activation="relu", progress=False)
    # A network without hidden layers has no activation to contradict.
    single = tmp_path / "single"
    single.mkdir()
    torch.save(nn.Sequential(nn.Linear(2, 1)), single / "linear.pt")
    convert_checkpoints(single, tmp_path / "single-out", activation="tanh", progress=False)
    # A sine's frequency is compared as a number: 'sine(30)' is the recorded 'sine(30.0)'.
    sine = tmp_path / "sine"
    sine.mkdir()
    torch.save(nn.Sequential(nn.Linear(2, 4), Sine(30.0), nn.Linear(4, 1)), sine / "siren.pt")
    convert_checkpoints(sine, tmp_path / "sine-out", activation="sine(30)", progress=False)
    assert read_meta(tmp_path / "sine-out")["activation"] == "sine(30.0)"


def test_a_given_activation_the_trace_cannot_rule_out_is_accepted(tmp_path):
    # Every pre-activation positive: relu, elu, gelu, ... all act as the identity on the probe.
    module = build_mlp((2, 4, 1), activation=nn.ReLU, seed=0)
    with torch.no_grad():
        module[0].weight.zero_()
        module[0].bias.fill_(100.0)
    src = tmp_path / "src"
    src.mkdir()
    torch.save(module, src / "positive.pt")
    convert_checkpoints(src, tmp_path / "elu", activation="elu", progress=False)
    assert read_meta(tmp_path / "elu")["activation"] == "elu"
    with pytest.raises(ValueError, match="hidden activation is relu, not the given --activation tanh"):
        convert_checkpoints(src, tmp_path / "tanh", activation="tanh", progress=False)


def test_a_saved_module_adding_an_undeclared_output_offset_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    torch.manual_seed(0)
    torch.save(OutputOffsetMLP(), src / "inr.pt")
    torch.save(build_mlp((2, 4, 1), seed=1).state_dict(), src / "plain.pt")
    with pytest.raises(ValueError, match=re.escape("inr.pt: the module adds 0.5 to the output of its last layer 'last'") + r".*--output-offset 0\.5 \(pass --skip-bad"):  # fmt: skip
        convert_checkpoints(src, tmp_path / "out", trust_pickles=True, progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"--output-offset 0\.25 was declared, but the module adds 0\.5"):
        convert_checkpoints(src, tmp_path / "out", trust_pickles=True, output_offset=0.25, progress=False)
    convert_checkpoints(src, tmp_path / "out", trust_pickles=True, output_offset=0.5, progress=False)
    assert read_meta(tmp_path / "out")["output_offset"] == 0.5
