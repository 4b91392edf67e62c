"""An interrupted run, resumed from its last checkpoint, continues exactly as an uninterrupted one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from wsgraph.training import load_trained_model, train
from wsgraph.training import run as run_module
from wsgraph.training.run import NonFiniteLossError
from wsgraph.training.run_checkpoints import load_run_checkpoint
from wsgraph.training.tasks import Classification

from .conftest import tiny_config

EPOCHS = 4


class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of an epoch."""


def interrupt_during_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Make the ``epoch``-th epoch (1-based) stop with :class:`Interrupted` after one real step."""
    real = run_module.train_epoch
    calls = {"count": 0}

    def flaky(model, loader, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == epoch:
            batches = iter(loader)
            next(batches)  # draw randomness as a real epoch would, then die
            raise Interrupted
        return real(model, loader, *args, **kwargs)

    monkeypatch.setattr(run_module, "train_epoch", flaky)


@pytest.mark.parametrize(
    ("model", "settings"),
    [
        ("mlp-aug", {"dropout": 0.2, "augment": ("scale",)}),  # batch norm, dropout, two augmentation streams
        ("dwsnet", {"dropout": 0.1, "patience": 3, "augment": ("published",)}),  # the published augmentations
        ("dwsnet", {"schedule": "constant", "amsgrad": True, "patience": 0}),  # DWSNets' own trainer
        # The Neural Graphs trainer: warmup, then a constant rate; AMSGrad; gradient clipping; dropout.
        (
            "ng-gnn",
            {
                "schedule": "warmup-constant",
                "warmup_steps": 7,
                "amsgrad": True,
                "clip_grad_norm": 0.5,
                "dropout": 0.2,
                "augment": ("published",),
            },
        ),
    ],
)
def test_resume_continues_bitwise(
    classification_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str, settings: dict
) -> None:
    whole = tiny_config(classification_root, tmp_path / "whole", model, epochs=EPOCHS, **settings)
    expected = train(whole)

    pieces = tiny_config(classification_root, tmp_path / "pieces", model, epochs=EPOCHS, **settings)
    interrupt_during_epoch(monkeypatch, 3)
    with pytest.raises(Interrupted):
        train(pieces)
    assert load_run_checkpoint(tmp_path / "pieces" / "last.pt")["epoch"] == 2
    monkeypatch.undo()
    resumed = train(pieces, resume=tmp_path / "pieces" / "last.pt")

    uninterrupted = load_run_checkpoint(tmp_path / "whole" / "last.pt")
    continued = load_run_checkpoint(tmp_path / "pieces" / "last.pt")
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(tensor, continued["model"][name]), name
    for first, second in zip(uninterrupted["optimizer"]["state"].values(), continued["optimizer"]["state"].values()):
        assert all(torch.equal(first[key], second[key]) for key in first)
    assert continued["scheduler"]["last_epoch"] == uninterrupted["scheduler"]["last_epoch"]
    losses = [[row["train_loss"] for row in run["history"]] for run in (uninterrupted, continued)]
    assert losses[0] == losses[1]
    assert resumed["test_metric"] == expected["test_metric"]
    assert resumed["best_epoch"] == expected["best_epoch"]


def test_a_run_resumed_in_another_folder_continues_there_and_leaves_other_runs_alone(
    classification_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = train(tiny_config(classification_root, tmp_path / "whole", "mlp-aug", epochs=EPOCHS))
    pieces = tiny_config(classification_root, tmp_path / "pieces", "mlp-aug", epochs=EPOCHS)
    interrupt_during_epoch(monkeypatch, 3)
    with pytest.raises(Interrupted):
        train(pieces)
    monkeypatch.undo()
    last = tmp_path / "pieces" / "last.pt"

    # A finished run of other settings: resuming into its folder would overwrite it and test its best.pt.
    train(tiny_config(classification_root, tmp_path / "other", "mlp-aug", epochs=1, seed=1))
    before = {path.name: path.read_bytes() for path in (tmp_path / "other").iterdir()}
    with pytest.raises(ValueError, match=r"--out .*other holds another run \(last.pt, result.json, metrics.csv\)"):
        train(dataclasses.replace(pieces, out=str(tmp_path / "other")), resume=last)
    assert {path.name: path.read_bytes() for path in (tmp_path / "other").iterdir()} == before

    moved = train(dataclasses.replace(pieces, out=str(tmp_path / "moved")), resume=last)
    assert moved["test_metric"] == expected["test_metric"] and moved["best_epoch"] == expected["best_epoch"]
    assert load_run_checkpoint(tmp_path / "moved" / "last.pt")["epoch"] == EPOCHS

    (tmp_path / "pieces" / "best.pt").unlink()
    with pytest.raises(ValueError, match=r"its run's best checkpoint .*best.pt \(epoch \d\) is missing"):
        train(dataclasses.replace(pieces, out=str(tmp_path / "again")), resume=last)


def test_a_folder_with_a_finished_run_is_not_overwritten_without_its_last_checkpoint(
    classification_root: Path, tmp_path: Path
) -> None:
    config = tiny_config(classification_root, tmp_path / "run", "mlp", epochs=1)
    train(config)
    (tmp_path / "run" / "last.pt").unlink()
    before = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()}
    with pytest.raises(ValueError, match=r"already holds a run \(result.json, metrics.csv\)"):
        train(config)
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before


def test_a_run_folder_another_process_is_writing_is_refused(classification_root: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from wsgraph.locks import LockedError

    config = tiny_config(classification_root, tmp_path / "runs" / "run", "mlp", epochs=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, config.out], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"locked\n"
        # As a run that has just begun: its folder made, nothing in it yet.
        assert (tmp_path / "runs" / "run").is_dir()
        with pytest.raises(LockedError, match=r"run: .*wsgraph train.*process \d+"):
            train(config)
        # A second spelling of the folder is the same folder, and the refused run leaves the other's alone.
        with pytest.raises(LockedError):
            train(dataclasses.replace(config, out=str(tmp_path / "runs" / "." / "run")))
        assert (tmp_path / "runs" / "run").is_dir() and not any((tmp_path / "runs" / "run").iterdir())
    finally:
        holder.communicate(b"release\n", timeout=60)
    # Once the other process is gone the run goes ahead, and leaves no lock file behind.
    assert train(config)["epochs_run"] == 1
    assert [path.name for path in (tmp_path / "runs").iterdir()] == ["run"]


# Holds the run folder's lock, as a `wsgraph train` of it would, until told to release it.
HOLD_LOCK = """
import os
import sys
from wsgraph.locks import write_lock
with write_lock(sys.argv[1], "wsgraph train"):
    os.makedirs(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_resuming_a_finished_run_only_reports(classification_root: Path, tmp_path: Path) -> None:
    config = tiny_config(classification_root, tmp_path / "run", "mlp", epochs=1)
    first = train(config)
    again = train(config, resume=tmp_path / "run" / "last.pt")
    assert again["epochs_run"] == 1 and again["test_metric"] == first["test_metric"]


def test_best_checkpoint_rebuilds_the_model(classification_root: Path, tmp_path: Path) -> None:
    train(tiny_config(classification_root, tmp_path / "run", "gine", epochs=1))
    model = load_trained_model(tmp_path / "run" / "best.pt")
    spec = model.spec
    assert spec.name == "gine" and spec.signature == (3, 2, 1)
    assert not model.training


def test_the_constant_schedule_keeps_the_rate_and_amsgrad_keeps_its_maximum(
    classification_root: Path, tmp_path: Path
) -> None:
    config = tiny_config(
        classification_root, tmp_path / "run", "mlp", epochs=2, lr=3e-3, amsgrad=True, schedule="constant"
    )
    train(config)
    checkpoint = load_run_checkpoint(tmp_path / "run" / "last.pt")
    assert [row["lr"] for row in checkpoint["history"]] == [3e-3, 3e-3]
    assert checkpoint["optimizer"]["param_groups"][0]["amsgrad"] is True
    assert all("max_exp_avg_sq" in state for state in checkpoint["optimizer"]["state"].values())


def test_the_warmup_constant_schedule_warms_up_then_keeps_the_rate(classification_root: Path, tmp_path: Path) -> None:
    config = tiny_config(
        classification_root, tmp_path / "run", "mlp", epochs=3, lr=3e-3, schedule="warmup-constant", warmup_steps=7
    )
    train(config)
    checkpoint = load_run_checkpoint(tmp_path / "run" / "last.pt")
    steps_per_epoch = checkpoint["scheduler"]["last_epoch"] // 3
    assert steps_per_epoch == 5  # 40 training networks, batches of 8
    # The rate each epoch ends on: after 5 steps (6/7 of it, the 6th step's), then the full rate.
    assert [row["lr"] for row in checkpoint["history"]] == pytest.approx([3e-3 * 6 / 7, 3e-3, 3e-3], rel=1e-12)


def test_a_warmup_longer_than_the_run_is_pointed_out(classification_root: Path, tmp_path: Path, capsys) -> None:
    train(tiny_config(classification_root, tmp_path / "long", "mlp", epochs=1, lr=1e-3, warmup_steps=100))
    assert (
        "note: the warmup (100 steps) is longer than the run (5 steps); the learning rate ends at 0.05 of --lr 0.001"
    ) in capsys.readouterr().out
    train(tiny_config(classification_root, tmp_path / "short", "mlp", epochs=1, lr=1e-3, warmup_steps=5))
    assert "note:" not in capsys.readouterr().out


def test_gradient_clipping_bounds_every_steps_gradient(
    classification_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = torch.nn.utils.clip_grad_norm_
    seen: list[tuple[float, float]] = []

    def recording(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        before = float(real(parameters, max_norm, *args, **kwargs))
        after = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None])))
        seen.append((before, after))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    train(tiny_config(classification_root, tmp_path / "clipped", "dwsnet", epochs=2, clip_grad_norm=0.01))
    assert len(seen) == 10  # every step of both epochs
    assert all(after <= 0.01 * (1 + 1e-5) for _, after in seen)
    assert any(before > 0.01 for before, _ in seen)  # clipping did change the steps
    seen.clear()
    train(tiny_config(classification_root, tmp_path / "unclipped", "dwsnet", epochs=2))
    assert seen == []


def test_published_augmentations_expand_in_the_published_order(classification_root: Path, tmp_path: Path) -> None:
    config = tiny_config(classification_root, tmp_path / "r", "dwsnet", augment=("published", "permute", "rotate"))
    assert config.augment == ("translate", "rotate", "shift", "dropout", "scale", "permute")


def test_a_non_finite_loss_stops_the_run_and_keeps_the_epoch_before(
    classification_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seventh training batch's loss is NaN: epoch 2, step 2 (5 steps per epoch); last.pt keeps epoch 1."""
    real = Classification.losses
    calls = {"count": 0}

    def poisoned(self, output, batch):
        losses = real(self, output, batch)
        if not torch.is_grad_enabled():  # validation and test
            return losses
        calls["count"] += 1
        return losses * float("nan") if calls["count"] == 7 else losses

    monkeypatch.setattr(Classification, "losses", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as error:
        train(tiny_config(classification_root, out, "mlp", epochs=EPOCHS))
    assert str(error.value) == (
        f"{out}: the training loss became non-finite at epoch 2, step 2 of 5; stopped (last.pt keeps epoch 1); "
        "try a lower --lr (now 0.01) or check the data"
    )
    kept = load_run_checkpoint(out / "last.pt")
    assert kept["epoch"] == 1 and len(kept["history"]) == 1
    assert all(bool(torch.isfinite(value).all()) for value in kept["model"].values() if value.is_floating_point())
    assert len((out / "metrics.csv").read_text().splitlines()) == 2
