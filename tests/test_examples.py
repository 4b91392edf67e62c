"""The scripts in examples/ run and print what they promise."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, arguments: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> list[str]:
    monkeypatch.setattr(sys, "argv", [name, *arguments])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out.splitlines()


def test_every_example_is_tested() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == [
        "draw_network.py",
        "edit_inrs.py",
        "pyg_conv_model.py",
        "train_on_inrs.py",
    ]


def test_draw_network_saves_a_drawing(tmp_path, monkeypatch, capsys) -> None:
    output = tmp_path / "network.png"
    lines = run_example("draw_network.py", [str(output)], monkeypatch, capsys)
    assert lines[-1] == f"saved {output}" and output.stat().st_size > 0
    assert "networkx: 14 nodes, 47 edges" in lines


def test_pyg_conv_model_learns_its_toy_task(monkeypatch, capsys) -> None:
    lines = run_example("pyg_conv_model.py", [], monkeypatch, capsys)
    assert len(lines) == 15
    assert lines[-1].endswith("train accuracy 1.00")


def test_train_on_inrs_fits_trains_and_checks_invariance(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "inrs"
    arguments = ["--data", str(data), "--limit", "12", "--steps", "20", "--epochs", "2"]
    lines = run_example("train_on_inrs.py", arguments, monkeypatch, capsys)
    assert "12 train, 12 val, 12 test INRs of 2-32-32-1" in lines
    assert [line.split()[:2] for line in lines if line.startswith("epoch")] == [["epoch", "1"], ["epoch", "2"]]
    assert any(line.startswith("test accuracy ") for line in lines)
    assert lines[-1] == "predictions unchanged when every network's hidden neurons are shuffled: True"
    # A second run reuses the fitted folder instead of fitting again.
    before = (data / "meta.json").stat().st_mtime_ns
    run_example("train_on_inrs.py", arguments, monkeypatch, capsys)
    assert (data / "meta.json").stat().st_mtime_ns == before


def test_edit_inrs_trains_an_editor_and_reads_its_edits_back(tmp_path, monkeypatch, capsys) -> None:
    arguments = ["--data", str(tmp_path / "inrs"), "--out", str(tmp_path / "out"), "--limit", "12"]
    lines = run_example("edit_inrs.py", [*arguments, "--steps", "20", "--epochs", "2"], monkeypatch, capsys)
    trained = float(next(line for line in lines if line.startswith("trained:")).split()[4])
    edited = next(line for line in lines if line.startswith("edited 12 test INRs: image MSE "))
    assert float(edited.split()[6]) == pytest.approx(trained, rel=1e-3)
    assert lines[-2] == f"saved {tmp_path / 'out' / 'edits' / 'networks' / 'inrs' / 'test' / '0.pt'} and 11 more, " + (
        f"with {tmp_path / 'out' / 'edits' / 'edits.png'}"
    )
    assert lines[-1].startswith("the first edited INR draws a 8x8 image with intensities in [")
    # A second run reuses the fitted folder and the finished run, and replaces the edits.
    again = run_example("edit_inrs.py", [*arguments, "--steps", "20", "--epochs", "2"], monkeypatch, capsys)
    assert again[-3:] == lines[-3:]
