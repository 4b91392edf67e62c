"""``wsgraph bench`` on tiny data: the table, chart, JSON and CSV, and skipping finished runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from wsgraph.cli.main import main

from .conftest import write_store

TINY = ["--epochs", "1", "--batch-size", "8", "--hidden-channels", "8", "--depth", "2", "--no-progress"]


def test_bench_writes_table_chart_and_runs(classification_root: Path, tmp_path: Path, monkeypatch) -> None:
    table = tmp_path / "docs" / "results-tiny.md"
    runs = tmp_path / "runs"
    arguments = ["bench", "--data", str(classification_root), "--models", "mlp,gine", "--seeds", "2"]
    arguments += ["--out", str(table), "--runs-dir", str(runs), *TINY]
    assert main(arguments) == 0

    text = table.read_text()
    command = text.split("Reproduce: `", 1)[1].split("`", 1)[0]
    assert command.startswith(f"wsgraph bench --data {classification_root} --models mlp,gine --seeds 2")
    assert "--epochs 1" in command and "--no-progress" not in command
    rows = [line for line in text.splitlines() if line.startswith("| mlp") or line.startswith("| gine")]
    assert len(rows) == 2 and all(" ± " in row for row in rows)
    assert "- Reference, learning nothing from the weights (always the most frequent training class): " in text
    assert (tmp_path / "docs" / "results-tiny.png").stat().st_size > 1000
    document = json.loads((tmp_path / "docs" / "results-tiny-runs.json").read_text())
    assert document["command"] == command
    assert [(r["model"], r["config"]["seed"]) for r in document["runs"]] == [
        ("mlp", 0),
        ("mlp", 1),
        ("gine", 0),
        ("gine", 1),
    ]
    with open(tmp_path / "docs" / "results-tiny-runs.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 4
    assert sorted(path.name for path in runs.iterdir()) == ["gine-seed0", "gine-seed1", "mlp-seed0", "mlp-seed1"]
    curves = tmp_path / "docs" / "results-tiny-curves"
    assert "- Per-epoch metrics of every run: `results-tiny-curves/<model>-seed<seed>.csv`." in text
    assert sorted(path.name for path in curves.iterdir()) == [
        f"{name}.csv" for name in sorted(p.name for p in runs.iterdir())
    ]
    for folder in runs.iterdir():
        assert (curves / f"{folder.name}.csv").read_bytes() == (folder / "metrics.csv").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("wsgraph.training.bench.train", no_training)
    assert main(arguments) == 0
    assert table.read_text() == text


def test_bench_into_a_folder_completes_a_run_without_result(classification_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    arguments = ["bench", "--data", str(classification_root), "--models", "mlp", "--seeds", "1", "--out", str(out)]
    assert main([*arguments, *TINY]) == 0
    assert {path.name for path in out.iterdir()} == {
        "results.md",
        "results.png",
        "runs.json",
        "runs.csv",
        "runs",
        "curves",
    }
    (out / "runs" / "mlp-seed0" / "result.json").unlink()
    assert main([*arguments, *TINY]) == 0  # resumes from last.pt, which has finished its epochs
    assert (out / "runs" / "mlp-seed0" / "result.json").is_file()


def test_bench_names_the_data_as_its_command_does(classification_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Finished runs recorded the data folder as their own command named it (here an absolute path); the table of a
    later command names it as that command does, so rewriting a table from another working directory keeps it."""
    table = tmp_path / "results.md"
    arguments = ["--models", "mlp", "--seeds", "1", "--out", str(table), "--runs-dir", str(tmp_path / "runs"), *TINY]
    assert main(["bench", "--data", str(classification_root), *arguments]) == 0
    assert f"- Data: `{classification_root}`," in table.read_text()
    monkeypatch.chdir(classification_root.parent)
    assert main(["bench", "--data", classification_root.name, *arguments]) == 0
    assert f"- Data: `{classification_root.name}`," in table.read_text()
    runs = json.loads((tmp_path / "results-runs.json").read_text())["runs"]
    assert runs[0]["dataset"]["root"] == str(classification_root)  # each run keeps what it recorded


def test_bench_refuses_data_without_test_networks_before_training(tmp_path: Path, capsys) -> None:
    root = write_store(tmp_path / "no-test", test_split=False)
    out, runs = tmp_path / "t.md", tmp_path / "runs"
    argv = ["bench", "--data", str(root), "--models", "mlp", "--seeds", "1", "--out", str(out), "--runs-dir", str(runs)]
    assert main([*argv, *TINY]) == 1
    assert "no labelled networks in the test split, and bench reports test metrics" in capsys.readouterr().err
    assert not out.exists() and not runs.exists()


def test_bench_refuses_finished_runs_with_other_settings(classification_root: Path, tmp_path: Path, capsys) -> None:
    arguments = ["bench", "--data", str(classification_root), "--models", "mlp", "--seeds", "1", "--out", str(tmp_path)]
    assert main([*arguments, *TINY]) == 0
    assert main([*arguments, *TINY, "--lr", "0.5"]) == 1
    assert "other settings (lr: 0.001 there, 0.5 now)" in capsys.readouterr().err
    # Found before anything trains: gine, listed first, has no run yet.
    arguments[arguments.index("mlp")] = "gine,mlp"
    assert main([*arguments, *TINY, "--lr", "0.5"]) == 1
    assert "other settings (lr: 0.001 there, 0.5 now)" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "gine-seed0").exists()


def test_bench_refuses_finished_runs_on_other_data(classification_root: Path, tmp_path: Path, capsys) -> None:
    other_root = write_store(tmp_path / "other", seed=1)
    out = tmp_path / "report"
    arguments = ["bench", "--models", "mlp", "--seeds", "1", "--out", str(out), *TINY]
    assert main([*arguments, "--data", str(classification_root)]) == 0
    table = (out / "results.md").read_text()
    assert main([*arguments, "--data", str(other_root)]) == 1
    error = capsys.readouterr().err.strip()
    assert f"{out / 'runs' / 'mlp-seed0'} holds a finished run on other data ({classification_root}" in error
    assert f"--data {other_root}: " in error and "\n" not in error
    assert (out / "results.md").read_text() == table
    # The same data at another path is the same data: the finished run is read, not retrained.
    moved = tmp_path / "moved"
    classification_root.rename(moved)
    assert main([*arguments, "--data", str(moved)]) == 0
    assert "is finished, reading its result" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda result: [], "a JSON list, not an object"),
        (lambda result: {}, "no 'config'"),
        (lambda result: {**result, "config": 5}, "'config' is 5"),
        (lambda result: {k: v for k, v in result.items() if k != "test_metric"}, "no 'test_metric'"),
        (lambda result: {**result, "epochs_run": "1"}, "'epochs_run' is '1'"),
        (lambda result: {**result, "config": {**result["config"], "epochs": "two"}}, "epochs must be int"),
    ],
    ids=["list", "empty", "config", "missing", "type", "setting"],
)
def test_bench_names_an_edited_result_of_a_finished_run(
    classification_root: Path, tmp_path: Path, capsys, edit, message
) -> None:
    arguments = ["bench", "--data", str(classification_root), "--models", "mlp", "--seeds", "1", "--out", str(tmp_path)]
    assert main([*arguments, *TINY]) == 0
    path = tmp_path / "runs" / "mlp-seed0" / "result.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    report = (tmp_path / "results.md").read_text()
    capsys.readouterr()
    assert main([*arguments, *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: not a finished run's result (" in err and message in err
    assert (tmp_path / "results.md").read_text() == report


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--models", "mlp,resnet"], "unknown model 'resnet'"),
        (["--models", "mlp", "--seeds", "0"], "--seeds must be in 1..10,000, got 0"),
        (["--models", "mlp", "--seeds", str(10**12)], f"--seeds must be in 1..10,000, got {10**12}"),
        (["--models", "dwsnet", "--probe-features", "100000"], "--probe-features must be in 0..65,536, got 100000"),
        (["--models", "mlp,gine,mlp"], "--models lists mlp more than once"),
        (["--models", "mlp", "--seed", str(2**63 - 2), "--seeds", "3"], f"--seed {2**63 - 2} with --seeds 3 goes past"),
    ],
)
def test_bench_rejects_bad_arguments(classification_root: Path, tmp_path: Path, capsys, arguments, message) -> None:
    status = main(["bench", "--data", str(classification_root), "--out", str(tmp_path / "b"), *arguments, *TINY])
    assert status == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("models", ["gine,", "mlp,,gine", ","])
def test_an_empty_entry_in_the_model_list_is_refused_not_dropped(
    classification_root: Path, tmp_path: Path, capsys, models: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--data", str(classification_root), "--out", str(tmp_path / "b"), "--models", models, *TINY])
    assert exit_info.value.code == 2
    assert f"argument --models: empty entry in {models!r}" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("where", ["out", "runs-dir"])
def test_bench_refuses_an_unwritable_output_before_training(
    classification_root: Path, tmp_path: Path, capsys, monkeypatch, where
) -> None:
    import wsgraph.training.bench as bench_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before finding that the output cannot be written")

    monkeypatch.setattr(bench_module, "train", no_training)
    place = tmp_path / "bench"
    place.mkdir()
    blocker = place / "a-file"
    blocker.write_text("kept\n")
    out, runs = (blocker / "table.md", place / "runs") if where == "out" else (place / "t.md", blocker / "runs")
    argv = ["bench", "--data", str(classification_root), "--out", str(out), "--runs-dir", str(runs)]
    assert main([*argv, "--models", "mlp", "--seeds", "1", *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--{where} {out if where == 'out' else runs}:" in err, err
    assert blocker.read_text() == "kept\n"
    assert sorted(path.name for path in place.iterdir()) == ["a-file"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        # The table's path is the runs folder: the runs trained, then the table could not be written.
        (
            lambda t: (["--out", f"{t}/e.md", "--runs-dir", f"{t}/e.md"], []),
            "--runs-dir {t}/e.md: the report's e.md goes there",
        ),
        (
            lambda t: (["--out", f"{t}/d", "--runs-dir", f"{t}/d/results.md"], []),
            "--runs-dir {t}/d/results.md: the report's results.md",
        ),
        (
            lambda t: (["--out", f"{t}/d"], [f"{t}/d/results.png/"]),
            "{t}/d/results.png: is a folder, where the report's file goes",
        ),
        # A file where the runs folder, or a later model's run folder, goes: found after the first model trained.
        (
            lambda t: (["--out", f"{t}/d"], [f"{t}/d/runs"]),
            "{t}/d/runs: exists and is not a folder for the runs; choose another --out or --runs-dir",
        ),
        (
            lambda t: (["--out", f"{t}/d"], [f"{t}/d/runs/gine-seed0"]),
            "{t}/d/runs/gine-seed0: exists and is not a folder for the runs",
        ),
        (
            lambda t: (["--out", f"{t}/t.md"], ["runs/bench/t"]),
            "runs/bench/t: exists and is not a folder for the runs; give --runs-dir (the runs of every --out t.md, in any folder, go to runs/bench/t by default)",
        ),
    ],
    ids=["table-is-runs", "runs-in-table", "chart-is-folder", "runs-is-file", "run-is-file", "default-runs-is-file"],
)
def test_bench_refuses_a_blocked_report_or_run_folder_before_training(
    classification_root: Path, tmp_path: Path, capsys, monkeypatch, layout, message
) -> None:
    import wsgraph.training.bench as bench_module

    def no_training(*args, **kwargs):
        raise AssertionError("trained before finding that an output cannot be written")

    monkeypatch.setattr(bench_module, "train", no_training)
    monkeypatch.chdir(tmp_path)
    flags, blockers = layout(tmp_path)
    for blocker in blockers:
        Path(blocker).parent.mkdir(parents=True, exist_ok=True)
        Path(blocker).mkdir() if blocker.endswith("/") else Path(blocker).write_text("kept\n")
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    assert (
        main(["bench", "--data", str(classification_root), *flags, "--models", "mlp,gine", "--seeds", "1", *TINY]) == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(t=tmp_path) in err, err
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


def test_a_settings_clash_in_the_default_runs_folder_points_to_runs_dir(
    classification_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    # Two reports named alike in different folders share runs/bench/<name> unless --runs-dir parts them.
    monkeypatch.chdir(tmp_path)
    arguments = ["bench", "--data", str(classification_root), "--models", "mlp", "--seeds", "1", *TINY]
    assert main([*arguments, "--out", "one/results.md"]) == 0
    capsys.readouterr()
    assert main([*arguments, "--out", "two/results.md", "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert "runs/bench/results/mlp-seed0 holds a finished run with other settings (epochs: 1 there, 2 now); " in err
    assert err.rstrip().endswith(
        "give --runs-dir (the runs of every --out results.md, in any folder, go to runs/bench/results by default)"
    )


@pytest.mark.parametrize("foreign", ["notes.md", "notes.png", "notes-runs.json"])
def test_bench_refuses_to_overwrite_files_it_did_not_write(
    classification_root: Path, tmp_path: Path, capsys, monkeypatch, foreign: str
) -> None:
    (tmp_path / foreign).write_text("someone's notes")
    if foreign == "notes.md":  # even beside a report of its own: the table is checked too
        (tmp_path / "notes-runs.json").write_text(json.dumps({"command": "wsgraph bench --data d", "runs": []}))

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr("wsgraph.training.bench.train", no_training)
    arguments = ["bench", "--data", str(classification_root), "--models", "mlp", "--seeds", "1"]
    assert main([*arguments, "--out", str(tmp_path / "notes.md"), *TINY]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and f"{tmp_path / foreign}: exists and is not part of a wsgraph bench report" in error
    assert (tmp_path / foreign).read_text() == "someone's notes"


def test_bench_curves_follow_the_runs_of_the_report(classification_root: Path, tmp_path: Path) -> None:
    arguments = ["bench", "--data", str(classification_root), "--out", str(tmp_path / "t.md")]
    arguments += ["--runs-dir", str(tmp_path / "runs"), *TINY]
    assert main([*arguments, "--models", "mlp,gine", "--seeds", "2"]) == 0
    assert len(list((tmp_path / "t-curves").iterdir())) == 4
    assert main([*arguments, "--models", "mlp", "--seeds", "1"]) == 0  # reads mlp-seed0 back
    assert [path.name for path in (tmp_path / "t-curves").iterdir()] == ["mlp-seed0.csv"]


def test_bench_refuses_a_curves_path_that_is_a_file_before_training(
    classification_root: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr("wsgraph.training.bench.train", no_training)
    (tmp_path / "t-curves").write_text("mine\n")
    arguments = ["bench", "--data", str(classification_root), "--out", str(tmp_path / "t.md"), "--models", "mlp"]
    assert main([*arguments, "--seeds", "1", *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 't-curves'}: exists and is not a folder" in err
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith("t")) == ["t-curves"]


def test_bench_leaves_no_folder_behind_when_the_output_cannot_be_made(
    classification_root: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "new" / ("x" * 300) / "t.md"  # a name too long for the file system
    arguments = ["bench", "--data", str(classification_root), "--out", str(out), "--models", "mlp", "--seeds", "1"]
    assert main([*arguments, *TINY]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {out}: cannot write there" in err
    assert not (tmp_path / "new").exists()
