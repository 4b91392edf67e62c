import json

import pytest

from wsgraph.cli.main import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_graph_stage_checks_pass_and_save_the_drawing(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--out", str(out_dir), "--seed", "3", "--graphs-only"]) == 0
    graphs = out_dir / "graphs"
    summary = json.loads((graphs / "summary.json").read_text())
    networks = summary["networks"]
    assert [row["activation"] for row in networks] == ["relu", "tanh", "sine(30.0)", "unknown"]
    assert all(row["round_trip_exact"] and row["rebuilt_max_error"] == 0.0 for row in networks)
    assert all(0 < row["weights_moved"] <= 1 and row["permuted_max_error"] < 1e-5 for row in networks)
    assert summary["batch"]["num_graphs"] == 4 and summary["batch"]["loader_batches"] == 2
    assert summary["stacked"]["round_trip_exact"]
    assert (graphs / "network.png").read_bytes()[:8] == PNG_SIGNATURE
    assert summary["drawing"] == str(graphs / "network.png")
    printed = capsys.readouterr().out
    assert "relu, no bias in layer 2" in printed and "round trip exact" in printed
    assert not (out_dir / "digits-inrs").exists()


def test_main_job_fits_trains_and_tabulates(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    arguments = ["demo", "--out", str(out_dir), "--limit", "6", "--steps", "20", "--epochs", "2"]
    assert main([*arguments, "--models", "dwsnet,mlp", "--no-progress"]) == 0
    runs = json.loads((out_dir / "results" / "runs.json").read_text())["runs"]
    assert [run["config"]["model"] for run in runs] == ["dwsnet", "mlp"]
    assert all(run["dataset"]["networks"] == {"train": 6, "val": 6, "test": 6} for run in runs)
    table = (out_dir / "results" / "results.md").read_text()
    assert "| dwsnet |" in table and "| mlp |" in table
    assert (out_dir / "results" / "results.png").read_bytes()[:8] == PNG_SIGNATURE
    assert "digits-inrs" in capsys.readouterr().out
    # A rerun finds every stage finished and reads the results back.
    assert main([*arguments, "--models", "dwsnet,mlp", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "is finished, reading its result" in captured.out + captured.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "0"], "argument --epochs: expected a positive integer, got '0'"),
        (["--steps", "-1"], "argument --steps: expected a positive integer, got '-1'"),
        (["--limit", "1"], "argument --limit: expected a >= 2 integer, got '1'"),
        (["--seed", "-1"], "argument --seed: expected an integer in 0..9223372036854775807, got -1"),
        (["--graphs-only", "--seed", str(10**30)], "argument --seed: expected an integer in 0..9223372036854775807"),
    ],
)
def test_demo_rejects_bad_settings_before_any_work(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit:
        main(["demo", "--out", str(tmp_path / "demo"), *flags])
    assert exit.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize(
    "blocked", ["graphs", "digits-inrs", "results", "runs", "runs/mlp-seed0", "results/results.md/"]
)
def test_demo_refuses_a_blocked_output_before_fitting(tmp_path, capsys, blocked):
    # Each was found only when its stage came: after the INRs were fitted, or after every model trained.
    out = tmp_path / "demo"
    path = out / blocked.rstrip("/")
    path.parent.mkdir(parents=True)
    path.mkdir() if blocked.endswith("/") else path.write_text("kept\n")
    before = sorted(tmp_path.rglob("*"))
    assert main(["demo", "--out", str(out), "--models", "dwsnet,mlp", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err, err
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("name", ["summary.json", "network.png"])
def test_the_graph_stage_keeps_files_it_did_not_write(tmp_path, capsys, name):
    graphs = tmp_path / "demo" / "graphs"
    graphs.mkdir(parents=True)
    (graphs / name).write_text("mine\n")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--graphs-only"]) == 1
    err = capsys.readouterr().err
    assert err == f"wsgraph demo: error: {graphs / name}: exists and is not the demo's; choose another --out\n"
    assert [path.name for path in graphs.iterdir()] == [name] and (graphs / name).read_text() == "mine\n"


def test_the_graph_stage_replaces_its_own_outputs(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--graphs-only", "--seed", "1"]) == 0
    assert main(["demo", "--out", str(out), "--graphs-only", "--seed", "2"]) == 0
    assert sorted(path.name for path in (out / "graphs").iterdir()) == ["network.png", "summary.json"]


@pytest.mark.parametrize(
    ("models", "message"), [(",", "--models names no model"), ("dwsnet,gnn", "unknown model 'gnn'")]
)
def test_demo_checks_its_models_before_fitting(tmp_path, capsys, models, message):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--models", models]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "choose from" in err
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_model_listed_twice_before_fitting(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--models", "dwsnet,mlp,dwsnet"]) == 1
    assert capsys.readouterr().err == "wsgraph demo: error: --models lists dwsnet more than once\n"
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_an_out_it_cannot_write_before_fitting(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "demo")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {blocker / 'demo'}: cannot write there" in err


def test_a_demo_rerun_with_other_settings_is_refused_before_the_fit(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    arguments = ["demo", "--out", str(out), "--limit", "2", "--steps", "2", "--models", "mlp", "--no-progress"]
    assert main([*arguments, "--epochs", "1"]) == 0
    capsys.readouterr()
    import wsgraph.cli.demo as demo

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted before finding the finished run of other settings")

    monkeypatch.setattr(demo, "_fit_digit_inrs", no_fitting)
    monkeypatch.setattr(demo, "run_graph_demo", no_fitting)
    assert main([*arguments, "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    # The demo has no --runs-dir to suggest.
    assert err.count("\n") == 1 and err.rstrip().endswith(
        f"{out / 'runs' / 'mlp-seed0'} holds a finished run with other settings (epochs: 1 there, 2 now); "
        "choose another --out"
    ), err
