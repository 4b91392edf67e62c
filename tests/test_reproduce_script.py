"""benchmarks/reproduce.py: two chains that share an INR set, and --status."""

import importlib.util
import sys
from pathlib import Path

import pytest
from lock_helpers import lock_held_by_another

from wsgraph.locks import lock_path, write_lock

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "reproduce.py"


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_a_fitting_step_waits_for_another_fitter_of_the_same_inrs(reproduce, tmp_path, capsys, monkeypatch):
    out = tmp_path / "mnist-inrs"
    holder = "a dataset writer (wsgraph fit-inrs / fit-sines)"
    with lock_held_by_another(out, holder) as held:
        real_write_lock = reproduce.write_lock

        def released_once_waited_for(target, who, wait=False):
            if wait:
                held.release_soon()
            return real_write_lock(target, who, wait=wait)

        monkeypatch.setattr(reproduce, "write_lock", released_once_waited_for)
        reproduce.wait_for_another_fitter(["fit-inrs", "--source", "mnist", "--out", str(out)])
        held.events.append("this chain fits")
    assert held.events == ["released", "this chain fits"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"  waiting: {out}: a dataset writer (wsgraph fit-inrs / fit-sines) (process ")
    assert printed.count("\n") == 1 and not lock_path(out).exists()


def test_a_free_folder_or_a_training_step_does_not_wait(reproduce, tmp_path, capsys):
    out = tmp_path / "mnist-inrs"
    reproduce.wait_for_another_fitter(["fit-inrs", "--out", str(out)])
    with write_lock(out, "someone"):
        # Only fitting steps share a folder across chains; bench writes its own tables.
        reproduce.wait_for_another_fitter(["bench", "--data", str(out), "--out", str(tmp_path / "t.md")])
    assert capsys.readouterr().out == "" and not lock_path(out).exists()


def test_status_reports_shards_runs_and_tables_from_the_files(reproduce, tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    (tmp_path / "ds" / "shards").mkdir(parents=True)
    (tmp_path / "ds" / "meta.json").write_text('{"num_shards": 3}')
    (tmp_path / "ds" / "shards" / "shard-00000.pt").write_bytes(b"")
    fit = reproduce.step_status(["fit-inrs", "--source", "mnist", "--out", "ds"])
    assert len(fit) == 1 and fit[0].startswith("ds: 1/3 shards; updated ")
    (tmp_path / "ds" / "summary.json").write_text("{}")
    assert reproduce.step_status(["fit-inrs", "--out", "ds"]) == ["ds: 1/3 shards, finished"]
    assert reproduce.step_status(["fit-inrs", "--out", "elsewhere"]) == ["elsewhere: not started"]

    runs = tmp_path / "runs"
    (runs / "m-seed0").mkdir(parents=True)
    (runs / "m-seed0" / "result.json").write_text(
        '{"metric": "accuracy", "test_metric": 91.234, "best_epoch": 5, "epochs_run": 9}'
    )
    (runs / "m-seed1").mkdir()
    header = "epoch,train_loss,val_loss,val_accuracy,lr,train_seconds,eval_seconds,train_networks_per_second"
    rows = ["1,2.0,1.9,30.5,0.001,10,1,250.4", "2,1.8,1.7,41.25,0.001,10,1,260.6", "3,1.7,1.8,40.0,0.001,10,1,255"]
    (runs / "m-seed1" / "metrics.csv").write_text("\n".join([header, *rows]) + "\n")
    (tmp_path / "t.md").write_text("# Results on `ds`: classify\n")
    argv = ["bench", "--data", "ds", "--models", "m", "--out", "t.md", "--runs-dir", "runs", "--seeds", "3"]
    lines = reproduce.step_status([*argv, "--epochs", "200", "--patience", "20"])
    assert lines[0] == "runs/m-seed0: finished: test accuracy 91.23 at its best validation epoch 5, 9 epochs"
    assert lines[1].startswith(
        "runs/m-seed1: epoch 3/200, best val_accuracy 41.25 (epoch 2), 255 networks/s in the last;"
    )
    # 11 s per epoch: early stopping at epoch 22 at the soonest (19 epochs on), epoch 200 at the latest.
    assert lines[1].endswith(
        "; 0.2 min/epoch lately: it ends at epoch 22 at the soonest (in about 0.1 h), "
        "at epoch 200 at the latest (in about 0.6 h)"
    )
    assert lines[2:] == ["runs/m-seed2: not started", "t.md: written"]
    without_early_stopping = reproduce.step_status([*argv, "--epochs", "200", "--patience", "0"])[1]
    assert without_early_stopping.endswith("; 0.2 min/epoch lately: it ends at epoch 200 (in about 0.6 h)")


def test_status_writes_nothing(reproduce, tmp_path, capsys):
    data, docs = tmp_path / "data", tmp_path / "docs"
    assert (
        reproduce.main(["--profile", "cpu", "--tasks", "sines", "--status", "--data", str(data), "--docs", str(docs)])
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "sines:" and printed[1].endswith("sine-inrs: not started")
    assert all(line.endswith(("not started", "not written yet")) for line in printed[1:])
    assert not data.exists() and not docs.exists()


def test_every_planned_step_is_a_command_wsgraph_takes(reproduce):
    from wsgraph.cli.main import build_parser

    parser = build_parser()
    for name, profile in reproduce.PROFILES.items():
        plan = reproduce.steps(profile, Path("data/reproduce") / name, Path("docs/results"))
        assert set(plan) == set(reproduce.ALL_TASKS)
        for task, steps in plan.items():
            for step in steps:
                parsed = parser.parse_args(step)
                assert parsed.command == step[0], (name, task)
    editing = reproduce.steps(reproduce.PROFILES["full-cpu"], Path("d"), Path("r"))["dilation-ng"][0]
    parsed = parser.parse_args(editing)
    assert (parsed.task, parsed.models, parsed.epochs, parsed.batch_size) == ("dilate", ["dwsnet"], 200, 128)
    assert (parsed.warmup_steps, parsed.clip_grad_norm, parsed.amsgrad) == (10000, 1.0, True)


def test_paths_inside_the_root_are_written_relative_to_it_even_through_a_symlink(reproduce, tmp_path, monkeypatch):
    # A checkout whose data folder links to another disk still prints the commands every machine can run.
    root, disk = tmp_path / "checkout", tmp_path / "disk"
    (disk / "reproduce").mkdir(parents=True)
    root.mkdir()
    (root / "data").symlink_to(disk)
    monkeypatch.setattr(reproduce, "ROOT", root)
    assert reproduce.inside_root(root / "data" / "reproduce") == Path("data/reproduce")
    assert reproduce.inside_root(disk / "reproduce") == disk / "reproduce"
    assert reproduce.inside_root(root / "docs" / ".." / "docs") == Path("docs")
