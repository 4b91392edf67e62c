"""wsgraph train --compile: the training steps run a torch.compile(fullgraph=True)'d DWSNet and learn what eager steps learn."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from wsgraph.training import train
from wsgraph.training.config import TrainConfig
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .conftest import tiny_config


@pytest.fixture
def compile_calls(monkeypatch):
    """torch.compile with the aot_eager backend (forward and backward traced as inductor
    would, without its code generation), recording how it was called."""
    calls, compile_ = [], torch.compile

    def recording(model, **options):
        calls.append(options)
        return compile_(model, **{**options, "backend": "aot_eager"})

    monkeypatch.setattr(torch, "compile", recording)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()


def test_compiled_training_learns_what_eager_training_learns(classification_root: Path, tmp_path: Path, compile_calls):
    histories, states = [], []
    for compiled in (False, True):
        out = tmp_path / f"compile-{compiled}"
        train(tiny_config(classification_root, out, "dwsnet", epochs=2, compile=compiled))
        with open(out / "metrics.csv", newline="") as handle:
            histories.append([(float(row["train_loss"]), float(row["val_loss"])) for row in csv.DictReader(handle)])
        states.append(load_run_checkpoint(out / "last.pt")["model"])
    assert compile_calls == [{"fullgraph": True}]
    # Parameters are not compared entry by entry: AdamW moves a parameter by about the
    # learning rate whatever the size of its gradient, so rounding noise in a gradient
    # that is nearly zero becomes a visible difference. The losses are what matter.
    assert len(histories[0]) == 2 and states[0].keys() == states[1].keys()
    torch.testing.assert_close(torch.tensor(histories[1]), torch.tensor(histories[0]), rtol=1e-3, atol=1e-5)


def test_compile_is_refused_for_models_it_is_not_tested_on(tmp_path: Path):
    with pytest.raises(ValueError, match="--compile is for dwsnet, dwsnet-dense, not --model gine"):
        TrainConfig(data=str(tmp_path), model="gine", out=str(tmp_path / "run"), compile=True)
