"""Bad input to ``wsgraph train`` ends in one clear line and a nonzero exit, with nothing trained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from wsgraph.cli.main import main
from wsgraph.datasets.store import read_meta, read_shard, write_meta, write_shard
from wsgraph.training import train

from .conftest import tiny_config, write_store

TINY = ["--epochs", "1", "--batch-size", "8", "--hidden-channels", "8", "--depth", "2", "--no-progress"]


def run(capsys: pytest.CaptureFixture, arguments: list[str]) -> tuple[int, str]:
    try:
        status = main(arguments)
    except SystemExit as exit:  # argparse's own usage errors
        status = exit.code
    return status, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "resnet"], "argument --model: invalid choice: 'resnet'"),
        (["--model", "mlp", "--epochs", "three"], "argument --epochs: invalid int value: 'three'"),
        (["--model", "mlp", "--warmup-steps", "3", "--warmup-epochs", "1"], "not allowed with argument"),
    ],
)
def test_usage_errors_exit_2(classification_root: Path, tmp_path: Path, capsys, flags, message) -> None:
    status, error = run(capsys, ["train", "--data", str(classification_root), "--out", str(tmp_path / "r"), *flags])
    assert status == 2
    # One line, not argparse's usage above it (sixteen lines for train), and where the usage is.
    assert message in error and "\n" not in error and error.endswith("; see 'wsgraph train --help'")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "mlp", "--epochs", "0"], "--epochs must be in 1..1,000,000, got 0"),
        (["--model", "mlp", "--epochs", "100000000000"], "--epochs must be in 1..1,000,000, got 100000000000"),
        (["--model", "dwsnet", "--model-options", "head_hidden=10000000"], "--model-options head_hidden=10000000: "),
        (["--model", "dwsnet", "--model-options", "head_hidden=-1"], "sizes and counts must be in 0..65,536"),
        (["--model", "dwsnet", "--model-options", "backend=bogus"], "--model-options backend: DWSNet takes it from "),
        (["--model", "dwsnet", "--depth", "100000"], "--depth must be in 1..1,000, got 100000"),
        (["--model", "mlp", "--hidden-channels", str(10**12)], f"--hidden-channels must be in 1..65,536, got {10**12}"),
        (["--model", "gine", "--probe-features", "-1"], "--probe-features must be in 0..65,536, got -1"),
        (
            ["--model", "gatv2", "--hidden-channels", "6"],
            "--model gatv2 with --hidden-channels 6 and --depth 2: heads=4 must divide hidden_channels=6",
        ),
        (["--model", "mlp", "--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
        (["--model", "mlp", "--dropout", "nan"], "--dropout must be in [0, 1), got nan"),
        (["--model", "mlp", "--lr", "inf"], "--lr must be a positive number up to 3.403e+38, got inf"),
        (["--model", "mlp", "--lr", "1e300"], "--lr must be a positive number up to 3.403e+38, got 1e+300"),
        (["--model", "mlp", "--lr", "nan"], "--lr must be a positive number up to 3.403e+38, got nan"),
        (["--model", "mlp", "--lr", "0"], "--lr must be a positive number up to 3.403e+38, got 0.0"),
        (
            ["--model", "mlp", "--weight-decay", "-0.1"],
            "--weight-decay must be a number >= 0 up to 3.403e+38, got -0.1",
        ),
        (["--model", "mlp", "--weight-decay", "inf"], "--weight-decay must be a number >= 0 up to 3.403e+38, got inf"),
        (["--model", "mlp", "--seed", "-1"], "--seed must be in 0..9223372036854775807, got -1"),
        (["--model", "mlp", "--seed", str(10**23)], "--seed must be in 0..9223372036854775807, got 1" + "0" * 23),
        (["--model", "mlp", "--warmup-epochs", "inf"], "--warmup-epochs must be finite, >= 0, got inf"),
        (["--model", "mlp", "--schedule", "constant", "--warmup-steps", "3"], "--schedule constant has no warmup"),
        (["--model", "mlp", "--clip-grad-norm", "0"], "--clip-grad-norm must be a positive finite number, got 0.0"),
        (["--model", "mlp", "--clip-grad-norm", "nan"], "--clip-grad-norm must be a positive finite number, got nan"),
        (["--model", "mlp", "--augment", "permute,flip"], "unknown augmentation 'flip'"),
        (["--model", "mlp", "--readout", "max"], "--readout applies to dwsnet and the GNNs, not to --model mlp"),
        (["--model", "gine", "--task", "dilate"], "--model gine predicts per-network outputs and cannot edit weights"),
        (["--model", "mlp", "--task", "dilate"], "the dataset has no dilation targets"),
        (["--model", "mlp", "--task", "regress"], "the labels are class indices, not regression targets"),
        (["--model", "mlp", "--targets", "1"], "--targets selects regression targets; it needs --task regress"),
        (["--model", "mlp", "--task", "regress", "--targets", "0,0"], "--targets names 0 twice"),
        (["--model", "mlp", "--targets", "a,b"], "--targets a: "),
        (["--model", "mlp", "--device", "tpu"], "--device tpu: unknown device; expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_settings_exit_1_in_one_line(classification_root: Path, tmp_path: Path, capsys, flags, message) -> None:
    status, error = run(
        capsys, ["train", "--data", str(classification_root), "--out", str(tmp_path / "r"), *TINY, *flags]
    )
    assert status == 1
    assert error.startswith("wsgraph train: error: ") and len(error.splitlines()) == 1
    assert message in error
    assert not (tmp_path / "r").exists(), "a run that failed before training leaves no run folder"


def test_missing_data_path(tmp_path: Path, capsys) -> None:
    status, error = run(
        capsys, ["train", "--data", str(tmp_path / "nowhere"), "--model", "mlp", "--out", str(tmp_path / "r")]
    )
    assert status == 1
    assert error == f"wsgraph train: error: --data {tmp_path / 'nowhere'}: no such directory"
    (tmp_path / "net.pt").write_bytes(b"")
    status, error = run(capsys, ["train", "--data", str(tmp_path / "net.pt"), "--model", "mlp", "--out", str(tmp_path / "r")])  # fmt: skip
    assert status == 1
    assert error == f"wsgraph train: error: --data {tmp_path / 'net.pt'}: a file, not a dataset folder"


def test_a_failed_run_removes_only_the_empty_folders_it_made(tmp_path: Path, capsys) -> None:
    missing = ["train", "--data", str(tmp_path / "nowhere"), "--model", "mlp"]
    status, _ = run(capsys, [*missing, "--out", str(tmp_path / "runs" / "a" / "r")])
    assert status == 1 and not (tmp_path / "runs").exists()
    (tmp_path / "mine").mkdir()
    status, _ = run(capsys, [*missing, "--out", str(tmp_path / "mine")])
    assert status == 1 and (tmp_path / "mine").is_dir(), "a folder the user made stays"


def test_folder_that_is_not_a_dataset(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    status, error = run(
        capsys, ["train", "--data", str(tmp_path / "empty"), "--model", "mlp", "--out", str(tmp_path / "r")]
    )
    assert status == 1 and "no meta.json" in error


def test_required_flags_without_resume(capsys) -> None:
    status, error = run(capsys, ["train", "--model", "mlp"])
    assert status == 1
    assert error == "wsgraph train: error: --data, --out required (or --resume to continue a run)"


def test_mixed_widths_train_graph_models_only(tmp_path: Path, capsys) -> None:
    root = write_store(tmp_path / "mixed", widths=(2, 8, 8, 1), shards=1)
    write_store(tmp_path / "other", widths=(2, 6, 8, 1), seed=1)
    (tmp_path / "other" / "shards" / "shard-00000.pt").rename(root / "shards" / "shard-00001.pt")
    # As the writers record mixed widths: no single "widths" entry.
    meta = json.loads((root / "meta.json").read_text())
    del meta["widths"]
    (root / "meta.json").write_text(json.dumps(meta))
    for model in ("mlp", "dwsnet-dense"):
        status, error = run(
            capsys, ["train", "--data", str(root), "--model", model, "--out", str(tmp_path / model), *TINY]
        )
        assert status == 1 and "needs networks of one architecture" in error
    for model in ("dwsnet", "pna"):
        status, error = run(
            capsys, ["train", "--data", str(root), "--model", model, "--out", str(tmp_path / model), *TINY]
        )
        assert status == 0, error
        assert json.loads((tmp_path / model / "result.json").read_text())["dataset"]["architectures"] == [
            "2-6-8-1",
            "2-8-8-1",
        ]


def test_existing_run_and_conflicting_resume(classification_root: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "r")
    assert run(capsys, ["train", "--data", str(classification_root), "--model", "mlp", "--out", out, *TINY])[0] == 0
    status, error = run(capsys, ["train", "--data", str(classification_root), "--model", "mlp", "--out", out, *TINY])
    assert status == 1 and "already holds a run (last.pt, result.json, metrics.csv); pass --resume" in error
    status, error = run(capsys, ["train", "--out", out, "--resume", "--lr", "0.5"])
    assert status == 1 and "cannot resume with different settings (lr: 0.001 in the checkpoint, 0.5 now)" in error
    status, error = run(capsys, ["train", "--out", out, "--resume", "--num-workers", "1"])
    assert status == 0, error
    status, error = run(capsys, ["train", "--resume", str(tmp_path / "r" / "metrics.csv")])
    assert status == 1 and "not a readable checkpoint" in error


def test_config_renders_its_own_command(classification_root: Path, tmp_path: Path) -> None:
    config = tiny_config(classification_root, tmp_path / "r", "mlp-aug", augment=("rotate", "scale"), targets=None)
    command = config.command()
    assert command.startswith(f"wsgraph train --data {classification_root} --model mlp-aug --out {tmp_path / 'r'}")
    assert "--augment rotate,scale" in command and "--no-progress" in command and "--lr 0.01" in command


def test_a_loss_that_becomes_non_finite_stops_the_run(classification_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    status, error = run(
        capsys,
        ["train", "--data", str(classification_root), "--model", "mlp", "--out", str(out), *TINY, "--lr", "1e30"],
    )
    assert status == 1 and len(error.splitlines()) == 1
    assert error.startswith(f"wsgraph train: error: {out}: the training loss became non-finite at epoch 1, step ")
    assert "nothing was saved" in error and "try a lower --lr (now 1e+30)" in error
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def train_on(capsys: pytest.CaptureFixture, data: Path, out: Path) -> tuple[int, str]:
    status, error = run(capsys, ["train", "--data", str(data), "--model", "mlp", "--out", str(out), *TINY])
    assert status == 1 and error.startswith("wsgraph train: error: ") and len(error.splitlines()) == 1, error
    assert not (out / "last.pt").exists()
    return status, error.removeprefix("wsgraph train: error: ")


def test_a_missing_middle_shard_is_named(tmp_path: Path, capsys) -> None:
    root = write_store(tmp_path / "data", count=60, shards=4, record=True)
    (root / "shards" / "shard-00002.pt").unlink()
    _, error = train_on(capsys, root, tmp_path / "r")
    assert error == f"{root}: shards/shard-00002.pt missing (meta.json records 4 shards); the dataset is incomplete"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "not a wsgraph dataset (a JSON list, not an object)"),
        ('"meta"', "not a wsgraph dataset (a JSON str, not an object)"),
    ],
)
def test_meta_json_that_is_not_an_object(tmp_path: Path, capsys, text: str, message: str) -> None:
    root = write_store(tmp_path / "data")
    (root / "meta.json").write_text(text)
    _, error = train_on(capsys, root, tmp_path / "r")
    assert error == f"{root / 'meta.json'}: {message}"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"task": ["classification"]}, "'task' must be 'classification', 'regression' or null"),
        ({"num_classes": "3"}, "'num_classes' must be an integer in [0, 100000], got \"3\""),
        ({"num_shards": "1"}, "'num_shards' must be a positive integer"),
    ],
)
def test_meta_entries_of_the_wrong_type(tmp_path: Path, capsys, entry: dict, message: str) -> None:
    root = write_store(tmp_path / "data")
    meta = read_meta(root)
    write_meta(root, {**{k: v for k, v in meta.items() if k not in ("format", "version")}, **entry})
    _, error = train_on(capsys, root, tmp_path / "r")
    assert error.startswith(f"{root / 'meta.json'}: {message}")


def rewrite_first_shard(root: Path, change) -> Path:
    path = root / "shards" / "shard-00000.pt"
    shard = read_shard(path)
    change(shard)
    write_shard(root, 0, shard)
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.y.__setitem__(4, 57), "class label 57 is not below meta.json's num_classes 3"),
        (lambda s: s.y.__setitem__(4, 999999999999), "class label 999999999999 is not below meta.json's num_classes 3"),
        (lambda s: s.split.__setitem__(4, 7), "split code 7 is not 0 (train), 1 (val) or 2 (test)"),
        (lambda s: s.weights[1].__setitem__((3, 0, 0), float("nan")), "1 of 60 networks have NaN or infinite"),
    ],
)
def test_shard_values_that_cannot_train(tmp_path: Path, capsys, change, message: str) -> None:
    root = write_store(tmp_path / "data")
    path = rewrite_first_shard(root, change)
    _, error = train_on(capsys, root, tmp_path / "r")
    assert error.startswith(f"{path}: {message}")


def test_huge_labels_without_declared_classes(tmp_path: Path, capsys) -> None:
    root = write_store(tmp_path / "data")
    meta = read_meta(root)
    write_meta(root, {k: v for k, v in meta.items() if k not in ("format", "version", "num_classes")})
    path = rewrite_first_shard(root, lambda s: s.y.__setitem__(0, 999999999999))
    _, error = train_on(capsys, root, tmp_path / "r")
    assert error == f"{path}: class label 999999999999 would make 1,000,000,000,000 classes, more than 100,000"


def test_regression_targets_with_a_nan_train_on_the_labelled_networks(tmp_path: Path, capsys) -> None:
    root = write_store(tmp_path / "data", task="regression")
    rewrite_first_shard(root, lambda s: s.y.__setitem__((0, 1), float("nan")))
    status, error = run(capsys, ["train", "--data", str(root), "--model", "mlp", "--out", str(tmp_path / "r"), *TINY])
    assert status == 0, error
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["task"] == "regress" and sum(result["dataset"]["networks"].values()) == 59
    assert torch.isfinite(torch.tensor(result["test_metric"]))


def test_a_new_run_does_not_overwrite_files_it_did_not_write(classification_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "best.pt").write_bytes(b"my own model")
    (out / "learning_curves.png").write_bytes(b"my own plot")
    training = ["train", "--data", str(classification_root), "--model", "mlp", *TINY]
    status, error = run(capsys, [*training, "--out", str(out)])
    assert status == 1 and len(error.splitlines()) == 1
    assert f"--out {out} holds files a run would overwrite (best.pt, learning_curves.png)" in error
    assert (out / "best.pt").read_bytes() == b"my own model"
    assert sorted(path.name for path in out.iterdir()) == ["best.pt", "learning_curves.png"]
    # A best.pt that is a wsgraph checkpoint, left by a run stopped while saving its first epoch, is replaced.
    (out / "learning_curves.png").unlink()
    finished = tmp_path / "finished"
    assert run(capsys, [*training, "--out", str(finished)])[0] == 0
    (out / "best.pt").write_bytes((finished / "best.pt").read_bytes())
    status, error = run(capsys, [*training, "--out", str(out)])
    assert status == 0, error


def test_resume_on_other_data_is_refused(classification_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r"
    arguments = ["train", "--data", str(classification_root), "--model", "mlp", "--out", str(out), *TINY]
    assert run(capsys, arguments)[0] == 0
    result = (out / "result.json").read_bytes()
    other = write_store(tmp_path / "other", seed=1)
    status, error = run(capsys, ["train", "--out", str(out), "--resume", "--data", str(other)])
    assert status == 1 and len(error.splitlines()) == 1
    assert error.startswith(f"wsgraph train: error: {out / 'last.pt'}: the run trained on {classification_root} ")
    assert f"--data {other} holds other data" in error
    assert (out / "result.json").read_bytes() == result
    # Resumed into a new folder: refused before anything (the run's best.pt) is copied there.
    for data in (str(other), str(tmp_path / "nosuch")):
        status, error = run(capsys, ["train", "--out", str(tmp_path / "new" / "run"), "--resume", str(out / "last.pt"), "--data", data])  # fmt: skip
        assert status == 1 and len(error.splitlines()) == 1, error
        assert not (tmp_path / "new").exists()
    # The same data elsewhere (moved or copied, file times changed) is the same data.
    moved = tmp_path / "moved"
    shutil.copytree(classification_root, moved, ignore=shutil.ignore_patterns("processed"))
    status, error = run(capsys, ["train", "--out", str(out), "--resume", "--data", str(moved)])
    assert status == 0, error
    assert json.loads((out / "result.json").read_text())["config"]["data"] == str(moved)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/proc/wsgraph-run", "--out /proc/wsgraph-run: cannot write there (No such file or directory)"),
        ("/proc", "--out /proc: cannot write there (No such file or directory)"),
    ],
)
def test_an_unwritable_out_fails_before_training(classification_root: Path, capsys, out: str, message: str) -> None:
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, where nothing can be created")
    status, error = run(capsys, ["train", "--data", str(classification_root), "--model", "mlp", "--out", out, *TINY])
    assert status == 1 and error == f"wsgraph train: error: {message}"
    assert not (classification_root / "processed").exists(), "the data must not even be opened"


def test_an_out_that_is_a_file_fails_before_training(classification_root: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "taken").write_text("keep me")
    status, error = run(
        capsys, ["train", "--data", str(classification_root), "--model", "mlp", "--out", str(tmp_path / "taken"), *TINY]
    )
    assert (
        status == 1
        and error
        == f"wsgraph train: error: --out {tmp_path / 'taken'}: {tmp_path / 'taken'} exists and is not a folder"
    )
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny mlp run of 2 epochs, for the tests that resume crafted copies of its last.pt."""
    root = write_store(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("runs") / "run"
    train(tiny_config(root, out, "mlp", epochs=2))
    return out


def _set(key: str, value):
    return lambda document: document.update({key: value})


def _param_group(key: str, value):
    return lambda document: document["optimizer"]["param_groups"][0].update({key: value})


def _first_moment(document: dict) -> None:
    state = document["optimizer"]["state"][0]
    state["exp_avg"] = state["exp_avg"][:1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("epoch", "x"), "epoch: must be an integer in 0..2 (the run's epochs), got 'x'"),
        (_set("epoch", -5), "epoch: must be an integer in 0..2 (the run's epochs), got -5"),
        (_set("epoch", 7), "epoch: must be an integer in 0..2 (the run's epochs), got 7"),
        (_set("best_epoch", 3), "best_epoch: must be an integer in 1..2 or None, got 3"),
        (_set("history", [5]), "history: [5] is not a list of 2 rows, one per epoch"),
        (_set("history", [{"epoch": 1}, {"epoch": 2}]), "history: a row lacks train_loss, val_loss, val_accuracy"),
        (_set("random_states", [{"torch": torch.zeros(3, dtype=torch.uint8)}]), "random state: RuntimeError: "),
        (lambda document: document["optimizer"].pop("param_groups"), "optimizer state: KeyError: 'param_groups'"),
        (_param_group("lr", "x"), "optimizer state: param_groups[0]['lr'] is 'x', not a float"),
        (
            _first_moment,
            "optimizer state: exp_avg for a parameter of shape (8, 105) is torch.float32 of shape (1, 105)",
        ),
        (
            lambda document: document["scheduler"].update(last_epoch="x"),
            "scheduler state: scheduler['last_epoch'] is 'x', not a int",
        ),
        (_set("config", [1]), "config: the training settings are a list, not a dict"),
        (
            lambda document: document["config"].update(epochs="two"),
            "config: the training setting epochs must be int, got 'two'",
        ),
        (
            lambda document: document["model"].update({"mlp.0.weight": torch.zeros(16, 105)}),
            "model: mlp.0.weight: shape (8, 105) in the model its settings build, (16, 105) in the file",
        ),
    ],
)
def test_a_crafted_last_checkpoint_is_refused_in_one_line(
    finished_run: Path, tmp_path: Path, capsys, change, message: str
) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    document = torch.load(out / "last.pt", weights_only=True)
    change(document)
    torch.save(document, out / "last.pt")
    status, error = run(capsys, ["train", "--out", str(out), "--resume"])
    assert status == 1 and len(error.splitlines()) == 1, error
    assert error.startswith(f"wsgraph train: error: {out / 'last.pt'}: not a resumable run checkpoint ({message}"), (
        error
    )


def test_a_scheduler_entry_another_torch_kept_is_dropped(finished_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    document = torch.load(out / "last.pt", weights_only=True)
    # `verbose` was in LambdaLR's state in older torch; `step` would replace the method if loaded.
    document["scheduler"].update(verbose=False, step=5)
    torch.save(document, out / "last.pt")
    status, error = run(capsys, ["train", "--out", str(out), "--resume"])
    assert status == 0, error


def test_a_resumed_runs_best_checkpoint_of_another_model_is_named(finished_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    document = torch.load(out / "best.pt", weights_only=True)
    document["model"]["mlp.0.weight"] = torch.zeros(16, 105)
    torch.save(document, out / "best.pt")
    status, error = run(capsys, ["train", "--out", str(out), "--resume"])
    assert status == 1 and error == (
        f"wsgraph train: error: {out / 'best.pt'}: not this run's best model (mlp.0.weight: shape (8, 105) in the "
        "model the run's settings build, (16, 105) in the file)"
    )


def test_a_run_folder_given_as_checkpoint_is_named(finished_run: Path, capsys) -> None:
    status, error = run(capsys, ["train", "--resume", str(finished_run)])
    assert status == 1 and error == (
        f"wsgraph train: error: {finished_run}: a folder, not a checkpoint (a run folder holds last.pt and best.pt)"
    )


def test_too_few_training_networks_names_the_culprit(tmp_path: Path, capsys) -> None:
    data = tmp_path / "one"
    assert (
        main(["fit-inrs", "--source", "digits", "--out", str(data), "--limit", "1", "--steps", "2", "--no-progress"])
        == 0
    )
    capsys.readouterr()
    run_dir = str(tmp_path / "run")
    for flags, culprit in ((["--max-train", "100"], str(data)), ([], str(data))):
        status, error = run(capsys, ["train", "--data", str(data), "--model", "mlp", "--out", run_dir, *flags])
        assert status == 1 and f"error: {culprit}: 1 training networks are too few; training needs at least 2" in error
    status, error = run(capsys, ["train", "--data", str(data), "--model", "mlp", "--out", run_dir, "--max-train", "1"])
    assert status == 1 and "error: --max-train 1: 1 training networks are too few" in error


def test_an_out_inside_the_data_is_refused_before_anything_is_made(tmp_path: Path, capsys) -> None:
    root = write_store(tmp_path / "data")
    before = sorted(path.relative_to(root) for path in root.rglob("*"))
    bench = ["bench", "--data", str(root), "--models", "mlp", *TINY]
    for command, named in [
        (["train", "--data", str(root), "--model", "mlp", *TINY, "--out", str(root / "processed" / "run")], "--out"),
        ([*bench, "--out", str(root / "table.md")], "--out"),
        ([*bench, "--out", str(tmp_path / "table.md"), "--runs-dir", str(root / "runs")], "--runs-dir"),
    ]:
        status, error = run(capsys, command)
        assert status == 1 and "\n" not in error, error
        assert error.endswith(f": inside --data {root}; write it outside the folder the command reads"), error
        assert f"error: {named} {root}" in error
    assert sorted(path.relative_to(root) for path in root.rglob("*")) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]
