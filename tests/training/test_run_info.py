"""``wsgraph info`` on a run: what its best.pt or last.pt holds, read without unpickling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from wsgraph.cli.main import main
from wsgraph.datasets.store import read_meta, write_meta
from wsgraph.training import train
from wsgraph.training.predict import load_predictor

from .conftest import tiny_config, write_store


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("run-info")
    root = write_store(folder / "classes")
    write_meta(root, {**read_meta(root), "class_names": ["low", "middle", "high"]})
    config = tiny_config(root, folder / "run", "dwsnet", probe_features=4, model_options=(("norm", "layer"),))
    return folder / "run", train(config)


def test_a_run_folder_describes_its_best_model(run, capsys) -> None:
    folder, result = run
    assert main(["info", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"checkpoint  {folder / 'best.pt'}: the best model"
    assert lines[1] == f"model       dwsnet, {result['parameters']:,} parameters, 4 probe features (norm=layer)"
    assert lines[2] == "task        classify, 3 classes: low, middle, high"
    assert lines[3] == "networks    M=3 weight layers, d_0=2, d_M=1"
    assert lines[4].startswith(
        f"data        {result['config']['data']} (fingerprint {result['dataset']['fingerprint']})"
    )
    best = f"{result['best_epoch']} of 3, validation accuracy {result['best_val_metric']:.4g}"
    assert lines[5] == f"epoch       {best}"
    assert lines[6].startswith(
        "settings    epochs 3, batch-size 8, lr 0.01, weight-decay 0.0005, schedule warmup-cosine"
    )


def test_last_pt_says_how_far_training_got(run, capsys) -> None:
    folder, result = run
    assert main(["info", str(folder / "last.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "last" and info["epoch"] == 3 and info["best_epoch"] == result["best_epoch"]
    assert info["best_val_metric"] == result["best_val_metric"] and info["metric"] == "accuracy"
    assert info["outputs"] == ["low", "middle", "high"] and info["parameters"] == result["parameters"]


def test_a_run_checkpoint_runs_no_code(run, tmp_path, capsys) -> None:
    folder, _ = run
    marker = tmp_path / "ran"

    class RunsShell:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    checkpoint = torch.load(folder / "best.pt", weights_only=True)
    checkpoint["payload"] = RunsShell()
    torch.save(checkpoint, tmp_path / "best.pt")
    assert main(["info", str(tmp_path / "best.pt")]) == 1
    assert "refuses to unpickle" in capsys.readouterr().err and not marker.exists()


def test_a_flat_mlp_run_names_the_one_architecture_it_takes(tmp_path, capsys) -> None:
    root = write_store(tmp_path / "classes")
    train(tiny_config(root, tmp_path / "run", "mlp"))
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == "networks    M=3 weight layers, d_0=2, d_M=1 (exactly 2-8-8-1)"
    assert lines[2] == "task        classify, 3 classes: 0, 1, 2"


@pytest.mark.parametrize("given", ["folder", "best.pt", "last.pt"])
def test_info_and_predict_read_a_run_checkpoint_once(run, given, monkeypatch, capsys) -> None:
    folder, _ = run
    path = folder if given == "folder" else folder / given
    reads: list[str] = []
    real_load = torch.load

    def counting_load(file, *args, **kwargs):
        # A look with mapped tensors reads only the file's index, not the tensors.
        if not kwargs.get("mmap"):
            reads.append(Path(file).name if isinstance(file, (str, Path)) else "handle")
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    assert main(["info", str(path)]) == 0
    assert reads == ["best.pt" if given == "folder" else given]
    reads.clear()
    load_predictor(path)
    assert reads == ["best.pt" if given == "folder" else given]


def test_info_reads_a_plain_state_dict_in_full_once(tmp_path, monkeypatch, capsys) -> None:
    torch.save({"0.weight": torch.randn(8, 2), "0.bias": torch.randn(8)}, tmp_path / "net.pt")
    full_reads: list[str] = []
    real_load = torch.load

    def counting_load(file, *args, **kwargs):
        if not kwargs.get("mmap"):
            full_reads.append(Path(file).name)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    assert main(["info", str(tmp_path / "net.pt")]) == 0
    assert full_reads == ["net.pt"] and "widths      2-8" in capsys.readouterr().out
