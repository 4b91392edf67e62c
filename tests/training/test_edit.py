"""``wsgraph edit``: a trained editing model applied to files, folders and datasets, with the
run's own evaluation as the reference, and an output folder that is never left half-written."""

from __future__ import annotations

import csv
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from wsgraph import graph_to_mlp, load_network_file, mlp_to_graph
from wsgraph.cli.main import main
from wsgraph.datasets import WeightSpaceDataset
from wsgraph.io import make_staging_folder
from wsgraph.locks import write_lock
from wsgraph.training import edit as edit_module
from wsgraph.training import train
from wsgraph.training.edit import EDITS_CSV, EDITS_PNG, edit_networks
from wsgraph.training.predict import load_predictor
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .conftest import tiny_config
from .test_models import dilation_root


@pytest.fixture(scope="module")
def editor(tmp_path_factory) -> tuple[Path, Path, dict]:
    """A DWSNet trained to dilate: ``(root, run folder, result)``."""
    folder = tmp_path_factory.mktemp("edit")
    root = dilation_root(folder / "inrs")
    result = train(tiny_config(root, folder / "run", "dwsnet", task="dilate", epochs=2))
    return root, folder / "run", result


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def save_test_networks(root: Path, folder: Path, state_dicts: bool = False) -> list[Path]:
    """The test split's networks as files (saved modules, or state_dicts); their paths in split order."""
    dataset = WeightSpaceDataset(root, split="test", log=False)
    folder.mkdir(parents=True)
    paths = []
    for index in range(len(dataset)):
        network = graph_to_mlp(dataset[index])
        paths.append(folder / f"inr{index:02d}.pt")
        torch.save(network.state_dict() if state_dicts else network, paths[-1])
    return paths


def test_a_dataset_split_is_edited_as_the_run_evaluated_it(editor, tmp_path, capsys) -> None:
    root, run, result = editor
    out = tmp_path / "edited"
    assert main(["edit", str(run), str(root), "--out", str(out)]) == 0
    rows = read_rows(out / EDITS_CSV)
    test = WeightSpaceDataset(root, split="test", log=False)
    assert [row["network"] for row in rows] == [f"{root}[test][{i}]" for i in range(len(test))]
    assert [row["file"] for row in rows] == [f"networks/{root.name}/test/{i}.pt" for i in range(len(test))]
    edited_mse = sum(float(row["image_mse"]) for row in rows) / len(rows)
    assert edited_mse == pytest.approx(result["test_metric"], rel=1e-4)
    assert edited_mse < sum(float(row["unedited_image_mse"]) for row in rows) / len(rows)
    assert (out / EDITS_PNG).stat().st_size > 0
    assert f"image MSE {edited_mse:.4g} against the dataset's dilated images" in capsys.readouterr().err
    # Each file holds the network the model made, readable without unpickling code.
    model = load_predictor(run).model
    with torch.no_grad():
        edited = model(Batch.from_data_list([test[i] for i in range(len(test))]))
    for row, expected in zip(rows, graph_to_mlp(edited)):
        saved = load_network_file(out / row["file"])
        assert str(saved) == str(expected)
        for name, tensor in expected.state_dict().items():
            assert torch.equal(saved.state_dict()[name], tensor)
    assert sorted(os.listdir(tmp_path)) == ["edited"], "no staging folder may stay behind"


def test_files_are_edited_like_the_same_networks_in_a_dataset(editor, tmp_path) -> None:
    root, run, _ = editor
    save_test_networks(root, tmp_path / "files")
    predictor = load_predictor(run)
    from_files = edit_networks(predictor, [tmp_path / "files"], tmp_path / "from-files", preview=0)
    from_dataset = edit_networks(predictor, [root], tmp_path / "from-dataset", preview=0)
    assert from_files.files[0] == "networks/files/inr00.pt"
    assert not (tmp_path / "from-files" / EDITS_PNG).exists()
    for by_file, by_index in zip(from_files.files, from_dataset.files):
        a = load_network_file(tmp_path / "from-files" / by_file).state_dict()
        b = load_network_file(tmp_path / "from-dataset" / by_index).state_dict()
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # Files carry no dilated images: no error is measured, but the training data tells the image shape.
    assert from_files.image_mse == [None] * len(from_files.files) and not from_files.notes
    # A single file is named after itself.
    single = edit_networks(predictor, [tmp_path / "files" / "inr01.pt"], tmp_path / "single")
    assert single.files == ["networks/inr01.pt"] and (tmp_path / "single" / EDITS_PNG).exists()


def test_state_dicts_need_the_activation(editor, tmp_path, capsys) -> None:
    root, run, _ = editor
    paths = save_test_networks(root, tmp_path / "files", state_dicts=True)
    out = tmp_path / "out"
    assert main(["edit", str(run), str(paths[0]), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error == (
        f"wsgraph edit: error: {paths[0]}: the file does not record the hidden activation, which the edited "
        "network is saved and rendered with; pass --activation (activation= in Python), e.g. 'sine(30.0)'\n"
    )
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["files"]
    assert main(["edit", str(run), str(paths[0]), "--out", str(out), "--activation", "sine(30)"]) == 0
    assert "Sine(omega_0=30.0)" in str(load_network_file(out / "networks" / "inr00.pt"))


def test_an_existing_out_is_replaced_only_with_force_and_only_if_edit_wrote_it(editor, tmp_path, capsys) -> None:
    root, run, _ = editor
    out = tmp_path / "out"
    assert main(["edit", str(run), str(root), "--out", str(out), "--split", "val"]) == 0
    assert main(["edit", str(run), str(root), "--out", str(out)]) == 1
    assert f"error: --out {out} exists; pass --force to replace it" in capsys.readouterr().err
    assert read_rows(out / EDITS_CSV)[0]["network"].endswith("[val][0]")
    os.chmod(out, 0o750)
    assert main(["edit", str(run), str(root), "--out", str(out), "--force"]) == 0
    assert read_rows(out / EDITS_CSV)[0]["network"].endswith("[test][0]")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o750, "the replaced folder's permissions carry over"
    assert not (out / "networks" / root.name / "val").exists(), "the earlier edit is replaced, not merged"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["edit", str(run), str(root), "--out", str(foreign), "--force"]) == 1
    assert "holds files wsgraph edit did not write" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["foreign", "out"]


def test_a_failure_part_way_leaves_nothing_behind(editor, tmp_path, capsys) -> None:
    root, run, _ = editor
    out = tmp_path / "deep" / "out"
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["edit", str(run), str(root), str(tmp_path / "bad.pt"), "--out", str(out)]) == 1
    assert f"{tmp_path / 'bad.pt'}" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bad.pt"]
    assert main(["edit", str(run), str(root), str(tmp_path / "bad.pt"), "--out", str(out), "--skip-bad"]) == 0
    assert f"skipped {tmp_path / 'bad.pt'}" in capsys.readouterr().err


def test_two_inputs_that_would_write_one_file_are_refused(editor, tmp_path) -> None:
    root, run, _ = editor
    paths = save_test_networks(root, tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "inr00.pt").write_bytes(paths[0].read_bytes())
    with pytest.raises(ValueError, match=r"b/inr00\.pt and .*a/inr00\.pt would both be written to networks/inr00\.pt"):
        edit_networks(load_predictor(run), [paths[0], tmp_path / "b" / "inr00.pt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_networks_the_model_does_not_take_are_named(editor, tmp_path) -> None:
    _, run, _ = editor
    torch.save(
        graph_to_mlp(
            mlp_to_graph(
                [(torch.randn(8, 3), torch.randn(8)), (torch.randn(1, 8), torch.randn(1))], activation="sine(30.0)"
            )
        ),
        tmp_path / "wide.pt",
    )
    with pytest.raises(ValueError, match=r"wide\.pt: a network 3-8-1; the dwsnet model takes networks 2-\*-\*-1"):
        edit_networks(load_predictor(run), [tmp_path / "wide.pt"], tmp_path / "out")


def test_a_model_that_does_not_edit_is_sent_to_predict(tmp_path, capsys) -> None:
    from .conftest import write_store

    root = write_store(tmp_path / "classes")
    train(tiny_config(root, tmp_path / "run", "mlp", epochs=1))
    assert main(["edit", str(tmp_path / "run"), str(root), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        "wsgraph edit: error: the model does not edit networks (--task classify); use wsgraph predict\n"
    )
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_and_inputs_that_are_all_bad_are_refused(editor, tmp_path, capsys) -> None:
    root, run, _ = editor
    (tmp_path / "out.txt").write_text("mine")
    assert main(["edit", str(run), str(root), "--out", str(tmp_path / "out.txt")]) == 1
    assert f"error: --out {tmp_path / 'out.txt'} exists and is not a folder" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.pt").write_bytes(b"junk")
    assert main(["edit", str(run), str(tmp_path / "bad"), "--out", str(tmp_path / "out"), "--skip-bad"]) == 1
    assert "error: none of the 1 networks could be edited (first: " in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bad", "out.txt"] and (tmp_path / "out.txt").read_text() == "mine"


def test_the_out_folder_is_as_a_mkdir_makes_it_and_a_killed_edits_staging_is_cleared(editor, tmp_path) -> None:
    root, run, _ = editor
    killed = make_staging_folder(tmp_path / "out", ".editing")
    (killed / "edits.csv").write_text("half")
    edit_networks(load_predictor(run), [root], tmp_path / "out", preview=0)
    (tmp_path / "plain").mkdir()
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["out", "plain"]


def test_an_empty_out_keeps_its_permissions_and_a_mount_point_is_refused_before_any_work(
    editor, tmp_path, monkeypatch, capsys
) -> None:
    root, run, _ = editor
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    edit_networks(load_predictor(run), [root], out, preview=0)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o700 and (out / EDITS_CSV).is_file()
    mount = tmp_path / "mount"
    mount.mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda path: os.fspath(path) == os.fspath(mount))
    monkeypatch.setattr(edit_module, "_edit_into", lambda *args: pytest.fail("edited before refusing"))
    assert main(["edit", str(run), str(root), "--out", str(mount)]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph edit: error: --out {mount}: a mount point, which cannot be replaced by renaming; "
        "give a folder inside it\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["mount", "out"] and not os.listdir(mount)


def test_a_second_edit_into_the_same_out_is_refused_while_one_runs(editor, tmp_path, capsys) -> None:
    root, run, _ = editor
    with write_lock(tmp_path / "out", "wsgraph edit"):
        assert main(["edit", str(run), str(root), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"wsgraph edit: error: {tmp_path / 'out'}") and "wsgraph edit" in error[20:]
    assert len(error.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_an_earlier_edit_inside_an_input_folder_is_not_read_as_input(editor, tmp_path) -> None:
    root, run, _ = editor
    save_test_networks(root, tmp_path / "nets")
    predictor = load_predictor(run)
    first = edit_networks(predictor, [tmp_path / "nets"], tmp_path / "nets" / "edited", preview=0)
    again = edit_networks(predictor, [tmp_path / "nets"], tmp_path / "nets" / "edited", force=True, preview=0)
    assert again.files == first.files == [f"networks/nets/inr{i:02d}.pt" for i in range(len(first.files))]


def test_the_current_folder_is_refused_as_out(editor, tmp_path, monkeypatch, capsys) -> None:
    root, run, _ = editor
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for out in (".", str(tmp_path)):
        assert main(["edit", str(run), str(root), "--out", out]) == 1
        assert capsys.readouterr().err == (
            f"wsgraph edit: error: --out {out}: the current folder or one that holds it; give a folder to create "
            "or replace\n"
        )
    assert os.listdir(tmp_path / "here") == [] and sorted(os.listdir(tmp_path)) == ["here"]


def test_a_symlinked_out_gets_the_edit_where_it_points(editor, tmp_path) -> None:
    root, run, _ = editor
    predictor = load_predictor(run)
    edit_networks(predictor, [root], tmp_path / "real", split="val", preview=0)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    edit_networks(predictor, [root], tmp_path / "link", force=True, preview=0)
    assert (tmp_path / "link").is_symlink()
    assert read_rows(tmp_path / "real" / EDITS_CSV)[0]["network"].endswith("[test][0]")


def test_files_that_come_into_out_while_the_edit_runs_are_kept(editor, tmp_path, monkeypatch) -> None:
    root, run, _ = editor
    out = tmp_path / "out"
    out.mkdir()
    real_edit_into = edit_module._edit_into

    def meanwhile(folder, *args):
        result = real_edit_into(folder, *args)
        (out / "theirs.txt").write_text("written while the edit ran")
        return result

    monkeypatch.setattr(edit_module, "_edit_into", meanwhile)
    with pytest.raises(FileExistsError, match="files came into it while the edit ran; they are kept"):
        edit_networks(load_predictor(run), [root], out)
    assert os.listdir(out) == ["theirs.txt"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_an_earlier_edit_moved_aside_by_a_killed_edit_is_put_back(editor, tmp_path) -> None:
    root, run, _ = editor
    predictor = load_predictor(run)
    edit_networks(predictor, [root], tmp_path / "out", split="val", preview=0)
    # Killed between its two renames: the earlier edit waits beside out, and out is gone.
    aside = make_staging_folder(tmp_path / "out", ".edit-replaced")
    os.replace(tmp_path / "out", aside)
    with pytest.raises(FileExistsError, match="exists; pass --force"):
        edit_networks(predictor, [root], tmp_path / "out")
    assert read_rows(tmp_path / "out" / EDITS_CSV)[0]["network"].endswith("[val][0]")
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_checkpoints_record_the_image_shape_so_files_render_from_anywhere(editor, tmp_path, monkeypatch) -> None:
    root, run, _ = editor
    assert load_run_checkpoint(run / "best.pt")["image_rendering"] == {"image_shape": [4, 4, 1], "output_offset": 0.5}
    save_test_networks(root, tmp_path / "nets")
    monkeypatch.chdir(tmp_path)
    edits = edit_networks(load_predictor(run), ["nets"], "out")
    assert (tmp_path / "out" / EDITS_PNG).exists() and not edits.notes
    # An older checkpoint (no record) whose training data is not found: the edits, and a note saying why.
    document = torch.load(run / "best.pt", weights_only=True)
    del document["image_rendering"]
    document["config"]["data"] = "elsewhere/inrs"
    torch.save(document, tmp_path / "old.pt")
    older = edit_networks(load_predictor(tmp_path / "old.pt"), ["nets"], "older")
    assert older.notes == [
        "nets/inr00.pt: no image shape that fits the networks is known (neither the model's checkpoint nor, for an "
        "older one, the training data it names (where found) records one); edits are written but not rendered"
    ]
    assert not (tmp_path / "older" / EDITS_PNG).exists() and len(older.files) == len(edits.files)


def test_files_of_one_name_and_other_suffixes_stay_apart(editor, tmp_path) -> None:
    root, run, _ = editor
    paths = save_test_networks(root, tmp_path / "nets")
    (tmp_path / "nets" / "inr00.pth").write_bytes(paths[0].read_bytes())
    edits = edit_networks(load_predictor(run), [tmp_path / "nets"], tmp_path / "out", preview=0)
    assert edits.files[:2] == ["networks/nets/inr00.pt", "networks/nets/inr00.pth.pt"]


@pytest.mark.parametrize(
    "recorded",
    [
        {"image_shape": [True, True], "output_offset": 0.5},
        {"image_shape": [0, 4, 1], "output_offset": 0.5},
        {"image_shape": [4, 4, 3], "output_offset": 0.5},
        {"image_shape": [200000, 200000], "output_offset": 0.5},
        {"image_shape": [4, 4, 1], "output_offset": "x"},
        {"image_shape": [4, 4, 1], "output_offset": float("nan")},
    ],
)
def test_a_recorded_image_shape_that_does_not_fit_is_not_used(editor, tmp_path, recorded) -> None:
    root, run, _ = editor
    document = torch.load(run / "best.pt", weights_only=True)
    document["image_rendering"] = recorded
    torch.save(document, tmp_path / "crafted.pt")
    save_test_networks(root, tmp_path / "nets")
    edits = edit_networks(load_predictor(tmp_path / "crafted.pt"), [tmp_path / "nets"], tmp_path / "out")
    assert len(edits.notes) == 1 and "no image shape that fits the networks is known" in edits.notes[0]
    assert not (tmp_path / "out" / EDITS_PNG).exists()


def test_an_out_through_a_symlinked_folder_goes_where_the_os_finds_it(editor, tmp_path, monkeypatch) -> None:
    root, run, _ = editor
    (tmp_path / "real" / "a").mkdir(parents=True)
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "link").symlink_to(tmp_path / "real" / "a")
    monkeypatch.chdir(tmp_path / "here")
    edit_networks(load_predictor(run), [root], "link/../viaLink", preview=0)
    assert (tmp_path / "real" / "viaLink" / EDITS_CSV).is_file() and os.listdir(tmp_path / "here") == ["link"]


def test_info_describes_an_edit_folder(editor, tmp_path, capsys) -> None:
    root, run, result = editor
    assert main(["edit", str(run), str(root), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    test_size = len(WeightSpaceDataset(root, split="test", log=False))
    assert lines[0] == f"edits       {tmp_path / 'out'} (what wsgraph edit wrote)"
    assert lines[1] == f"networks    {test_size} edited networks under networks/"
    assert lines[2].startswith(f"image MSE   {result['test_metric']:.4g} against {test_size} dilated images")
    assert lines[3] == "picture     edits.png"
    (tmp_path / "out" / EDITS_CSV).write_text("network,file\n")
    assert main(["info", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"wsgraph info: error: {tmp_path / 'out' / EDITS_CSV}: not the table wsgraph edit writes "
        "(network, file, image_mse, unedited_image_mse)\n"
    )


def test_a_reader_that_goes_away_ends_the_command_quietly(editor) -> None:
    _, run, _ = editor
    # A pipe whose reader has gone: the first write fails, as under ``wsgraph info ... | head -1``.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        command = [sys.executable, "-m", "wsgraph", "info", str(run / "best.pt"), "--json"]
        ended = subprocess.run(
            command, stdout=write_end, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    finally:
        os.close(write_end)
    assert ended.returncode == 141 and ended.stderr == ""


def test_an_editing_run_draws_its_first_test_edits(editor) -> None:
    _, run, _ = editor
    assert (run / EDITS_PNG).stat().st_size > 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe\x00junk", "not the table wsgraph edit writes"),
        (b"network,file,image_mse,unedited_image_mse\na," + b"x" * 200_000 + b",1,2\n", "not the table"),
        (b'network,file,image_mse,unedited_image_mse\n"a,b,1,2\n', "not the table"),
        (b"network,file,image_mse,unedited_image_mse\na,b,nan,2\n", "an image MSE that is not finite"),
        (b"network,file,image_mse,unedited_image_mse\na,b,one,2\n", "an image MSE that is not a number"),
    ],
)
def test_info_names_a_damaged_edits_csv(editor, tmp_path, capsys, content, problem) -> None:
    root, run, _ = editor
    edit_networks(load_predictor(run), [root], tmp_path / "out", preview=0)
    (tmp_path / "out" / EDITS_CSV).write_bytes(content)
    assert main(["info", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"wsgraph info: error: {tmp_path / 'out' / EDITS_CSV}: {problem}")
    assert error.count("\n") == 1


def test_a_broken_pipe_that_is_not_stdout_is_an_error(monkeypatch, capsys) -> None:
    from wsgraph.cli import info

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe: a worker's socket")

    monkeypatch.setattr(info, "run", broken)
    assert main(["info", "anything"]) == 1
    assert capsys.readouterr().err == "wsgraph info: error: [Errno 32] Broken pipe: a worker's socket\n"


def test_an_edit_that_overflows_is_named_or_skipped_never_written(editor, tmp_path, capsys) -> None:
    root, run, _ = editor
    paths = save_test_networks(root, tmp_path / "files")
    huge = load_network_file(paths[1])
    with torch.no_grad():
        huge[0].weight.fill_(3e38)  # finite, but the editor's arithmetic overflows on it
    torch.save(huge, paths[1])
    out = tmp_path / "out"
    # A trace through weights this large cannot tell the activation: give it.
    command = ["edit", str(run), str(tmp_path / "files"), "--out", str(out), "--activation", "sine(30.0)"]
    assert main(command) == 1
    assert capsys.readouterr().err == (
        f"wsgraph edit: error: {paths[1]}: the edited network's weights are not finite (NaN or infinite; are its "
        "weights huge?) (pass --skip-bad to edit the others)\n"
    )
    assert not out.exists()
    assert main([*command, "--skip-bad"]) == 0
    assert f"skipped {paths[1]}: the edited network's weights are not finite" in capsys.readouterr().err
    rows = read_rows(out / "edits.csv")
    assert [row["network"] for row in rows] == [str(path) for path in paths if path != paths[1]]
    for row in rows:
        edited = load_network_file(out / row["file"])
        assert all(bool(parameter.isfinite().all()) for parameter in edited.parameters())
