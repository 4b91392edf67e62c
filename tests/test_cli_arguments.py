"""Every long command checks its --seed and --out before any work, naming the flag."""

import pytest

from wsgraph.cli.main import main
from wsgraph.runtime import MAX_SEED

COMMANDS = {
    "fit-inrs": ["fit-inrs", "--source", "digits", "--out", "{out}", "--limit", "2", "--steps", "1", "--no-progress"],
    "fit-sines": ["fit-sines", "--out", "{out}", "--count", "6", "--steps", "1", "--no-progress"],
    "zoo": ["zoo", "--source", "digits", "--out", "{out}", "--count", "2", "--arch", "mlp", "--no-progress"],
    "adapt": ["adapt", "--data", "{out}-data", "--source", "digits", "--out", "{out}"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("seed", ["-1", str(MAX_SEED + 1), "1e3"])
def test_a_seed_out_of_range_is_refused_naming_the_flag(tmp_path, capsys, command, seed):
    out = str(tmp_path / "out")
    arguments = [part.replace("{out}", out) for part in COMMANDS[command]]
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--seed", seed])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"wsgraph {command}: error: argument --seed: expected an integer"), error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["fit-inrs", "fit-sines", "zoo"])
def test_an_out_that_cannot_be_a_folder_is_refused_naming_the_flag(tmp_path, capsys, command):
    blocker = tmp_path / "net.pt"
    blocker.write_text("mine")
    for out in (blocker, blocker / "inside"):
        arguments = [str(out) if part == "{out}" else part for part in COMMANDS[command]]
        assert main(arguments) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"wsgraph {command}: error: --out {out}: ") and "\n" not in error, error
    assert blocker.read_text() == "mine"


@pytest.mark.parametrize(
    ("arguments", "flag"),
    [
        (["fit-inrs", "--source", "digits", "--out", ""], "--out"),
        (["fit-sines", "--out", ""], "--out"),
        (["zoo", "--source", "digits", "--out", ""], "--out"),
        (["zoo-stats", "--zoo", "z", "--out", ""], "--out"),
        (["zoo-stats", "--zoo", "", "--out", "o"], "--zoo"),
        (["adapt", "--data", "d", "--source", "digits", "--out", ""], "--out"),
        (["train", "--data", "", "--model", "dwsnet", "--out", "r"], "--data"),
        (["train", "--data", "d", "--model", "dwsnet", "--out", ""], "--out"),
        (["bench", "--data", "d", "--models", "mlp", "--out", ""], "--out"),
        (["convert", "", "out"], "SRC"),
        (["convert", "src", ""], "OUT"),
        (["predict", "", "x"], "MODEL"),
        (["predict", "run", ""], "INPUT"),
        (["edit", "run", "x", "--out", ""], "--out"),
        (["info", ""], "PATH"),
        (["demo", "--out", ""], "--out"),
    ],
)
def test_an_empty_path_is_refused_naming_the_argument(tmp_path, capsys, monkeypatch, arguments, flag):
    # '' is the current folder to the OS functions: `zoo-stats --out ''` wrote its results there.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(arguments)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    command = f"wsgraph {arguments[0]}"
    assert error == f"{command}: error: argument {flag}: expected a path, got an empty string; see '{command} --help'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["zoo", "--source", "digits", "--out", "{tmp}/zoo", "--count", "2", "--lr", "-1,1"],
         "wsgraph zoo: error: --lr range must be 0 < low <= high, got -1.0..1.0"),
        (["zoo", "--source", "digits", "--out", "{tmp}/zoo", "--count", "2", "--dropout", "-.5,0.5"],
         "wsgraph zoo: error: --dropout range must be within [0, 1), got -0.5..0.5"),
        (["convert", "{tmp}", "{tmp}/out", "--split-ratios", "-1,1,1"],
         "argument --split-ratios: expected three non-negative fractions summing to 1"),
        (["convert", "{tmp}", "{tmp}/out", "--force", "-1"], "unrecognized arguments: -1"),
    ],
)  # fmt: skip
def test_a_value_with_a_leading_minus_reaches_the_flags_own_check(tmp_path, capsys, arguments, message) -> None:
    arguments = [part.format(tmp=tmp_path) for part in arguments]
    try:
        status = main(arguments)
    except SystemExit as exit:
        status = exit.code
    assert status in (1, 2)
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_negative_values_join_only_a_flag_that_takes_a_value(tmp_path, capsys) -> None:
    from wsgraph.cli.main import attach_negative_values

    flags = frozenset({"--lr", "--seed", "--out"})
    assert attach_negative_values(["--lr", "-1,1", "--seed", "-3", "-h"], flags) == ["--lr=-1,1", "--seed=-3", "-h"]
    assert attach_negative_values(["--skip-bad", "-5", "--", "--lr", "-1"], flags) == [
        "--skip-bad",
        "-5",
        "--",
        "--lr",
        "-1",
    ]
    assert attach_negative_values(["--out=x", "-2", "path", "-1"], flags) == ["--out=x", "-2", "path", "-1"]
    # A positional input named like a negative number after a flag without a value stays an input.
    (tmp_path / "-5").write_bytes(b"junk")
    assert main(["predict", str(tmp_path / "run"), "--skip-bad", "-5"]) == 1
    assert "ignored explicit argument" not in capsys.readouterr().err


def test_wsgraph_without_a_command_shows_the_usage_line_listing_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].startswith("usage: wsgraph") and "COMMAND" in lines[0]
    assert lines[-1] == "wsgraph: error: the following arguments are required: COMMAND; see 'wsgraph --help'"
