"""--model-options: further constructor arguments of the model class, from the command line to the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from wsgraph.cli.main import main
from wsgraph.training import load_trained_model, train
from wsgraph.training.config import TrainConfig, parse_model_options, render_model_options
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .conftest import tiny_config


def test_options_parse_to_typed_values_and_render_back() -> None:
    text = (
        "norm=minibatch, fourier-features=0, aggregators=mean+max, scalers=identity+, gating_edges=true, x=none, s=2.5"
    )
    options = parse_model_options(text)
    assert options == (
        ("norm", "minibatch"),
        ("fourier_features", 0),
        ("aggregators", ("mean", "max")),
        ("scalers", ("identity",)),
        ("gating_edges", True),
        ("x", None),
        ("s", 2.5),
    )
    assert parse_model_options(render_model_options(options)) == options


def test_options_reach_the_model_and_come_back_with_its_checkpoints(classification_root: Path, tmp_path: Path) -> None:
    options = {"norm": "minibatch", "fourier_features": 0, "aggregators": ("mean", "max")}
    config = tiny_config(classification_root, tmp_path / "run", "ng-gnn", epochs=1, model_options=options)
    train(config)
    model = load_trained_model(tmp_path / "run" / "best.pt").model
    assert model.norm == "minibatch"
    assert model.convs[0].aggregators == ["mean", "max"]
    assert model.edge_encoder[0].in_features == 3  # a linear encoder: no Fourier features
    stored = TrainConfig.from_dict(load_run_checkpoint(tmp_path / "run" / "last.pt")["config"])
    assert stored == config and stored.model_options == tuple(options.items())
    assert "--model-options norm=minibatch,fourier_features=0,aggregators=mean+max" in config.command()
    # Resuming with other options would train another model.
    other = tiny_config(classification_root, tmp_path / "run", "ng-gnn", epochs=2, model_options={"norm": "node"})
    with pytest.raises(ValueError, match=r"cannot resume with different settings.*model_options"):
        train(other, resume=tmp_path / "run" / "last.pt")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("norm", "wsgraph train: error: --model-options 'norm': expected KEY=VALUE"),
        ("depth=3", "wsgraph train: error: --model-options depth: set it with --depth"),
        ("norm=node,norm=graph", "wsgraph train: error: --model-options norm: given more than once"),
        ("2x=1", "wsgraph train: error: --model-options '2x': not an argument name"),
        (
            "fourier_featurez=0",
            "wsgraph train: error: --model-options fourier_featurez=0: NeuralGraphGNN.__init__() got an unexpected "
            "keyword argument 'fourier_featurez'",
        ),
    ],
)
def test_bad_options_are_one_line_errors(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, options: str, message: str
) -> None:
    arguments = ["train", "--data", str(classification_root), "--model", "ng-gnn", "--out", str(tmp_path / "r")]
    status = main([*arguments, "--epochs", "1", "--no-progress", "--model-options", options])
    error = capsys.readouterr().err.strip()
    assert status == 1
    assert error == message
