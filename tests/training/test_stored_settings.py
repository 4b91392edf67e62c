"""Runs written before the keyword renames (``num_layers`` -> ``num_weight_layers``; ``num_dws_layers``,
``num_rounds``, ``num_blocks``, ``num_hidden_layers`` -> ``depth``) still load and resume.

A checkpoint stores the run's settings (``TrainConfig.to_dict``) and the model's
(``ModelSpec.to_dict``), never constructor keywords, and a model's ``state_dict``
names come from its submodules, not from its keywords. The dictionaries below are
what the version before the renames wrote.
"""

from __future__ import annotations

import pytest
import torch

from wsgraph.layers import DWSNet, FlatMLP, NeuralGraphGNN, NeuralGraphTransformer, WeightSpaceGNN
from wsgraph.training import ModelSpec, TrainConfig, build_model
from wsgraph.training.config import parse_model_options

STORED_CONFIG = {
    "data": "data/mnist-inrs", "model": "dwsnet", "out": "runs/x", "task": None, "epochs": 50, "batch_size": 128,
    "lr": 0.001, "weight_decay": 0.0005, "amsgrad": False, "schedule": "warmup-cosine", "warmup_steps": None,
    "warmup_epochs": None, "hidden_channels": 8, "depth": 2, "readout": None, "dropout": 0.0, "probe_features": 0,
    "augment": ["translate", "rotate", "shift", "dropout", "scale"], "targets": None, "seed": 0, "device": "auto",
    "amp": False, "compile": False, "patience": 10, "max_train": None, "num_workers": 0, "loader": "auto",
    "progress": True,
}  # fmt: skip
STORED_MODEL_SPEC = {
    "depth": 2, "dropout": 0.0, "hidden_channels": 8, "kernel_grid": None, "kernel_sizes": None, "name": "dwsnet",
    "out_features": 10, "pna_degree": None, "probe_features": 4, "readout": None, "signature": [3, 2, 1],
    "task": "classify", "widths": [2, 8, 8, 1],
}  # fmt: skip


def test_a_stored_config_loads_and_resumes_under_the_same_settings() -> None:
    config = TrainConfig.from_dict(STORED_CONFIG)
    assert config.depth == 2 and config.hidden_channels == 8
    assert (
        config.differences(
            TrainConfig("data/mnist-inrs", "dwsnet", "runs/x", hidden_channels=8, depth=2, augment=("published",))
        )
        == {}
    )


def test_model_options_in_another_order_are_the_same_settings() -> None:
    def config(options: str) -> TrainConfig:
        return TrainConfig("data/x", "ng-gnn", "runs/x", model_options=parse_model_options(options))

    assert config("backend=dense,norm=minibatch").differences(config("norm=minibatch, backend=dense")) == {}
    assert set(config("backend=dense,norm=minibatch").differences(config("norm=minibatch"))) == {"model_options"}


def test_a_stored_model_spec_rebuilds_the_model_its_state_dict_came_from() -> None:
    torch.manual_seed(0)
    stored = build_model(ModelSpec.from_dict(STORED_MODEL_SPEC)).state_dict()
    rebuilt = DWSNet(3, 2, 1, 10, hidden_channels=8, depth=2, probe_features=4)
    rebuilt.load_state_dict(stored, strict=True)
    assert len(rebuilt.stack.convs) == 2


@pytest.mark.parametrize(
    ("model", "old", "new"),
    [
        (DWSNet, {"num_layers": 3, "num_dws_layers": 2}, {"num_weight_layers": 3, "depth": 2}),
        (WeightSpaceGNN, {"num_layers": 3, "num_rounds": 2}, {"num_weight_layers": 3, "depth": 2}),
        (NeuralGraphGNN, {"num_layers": 3, "num_rounds": 2}, {"num_weight_layers": 3, "depth": 2}),
        (NeuralGraphTransformer, {"num_layers": 3, "num_blocks": 2}, {"num_weight_layers": 3, "depth": 2}),
    ],
)
def test_old_keywords_build_the_same_parameters_with_a_warning(model, old: dict, new: dict) -> None:
    leading = ("gine",) if model is WeightSpaceGNN else ()
    common = {"in_dim": 2, "out_dim": 1, "out_features": 10}
    if model is NeuralGraphGNN:
        common["degree_histogram"] = torch.tensor([0, 4, 2])
    torch.manual_seed(0)
    with pytest.warns(DeprecationWarning, match="is deprecated and will be removed in the next release"):
        before = model(*leading, **old, **common)
    torch.manual_seed(0)
    after = model(*leading, **new, **common)
    assert before.state_dict().keys() == after.state_dict().keys()
    for key, value in before.state_dict().items():
        assert torch.equal(value, after.state_dict()[key]), key


def test_the_flat_mlp_takes_its_old_depth_keyword() -> None:
    with pytest.warns(DeprecationWarning, match=r"FlatMLP\(num_hidden_layers=...\) is deprecated.*use depth="):
        old = FlatMLP(20, 3, num_hidden_layers=2)
    assert old.state_dict().keys() == FlatMLP(20, 3, depth=2).state_dict().keys()


def test_model_options_in_an_error_read_as_the_command_line_writes_them() -> None:
    stored = TrainConfig("data/x", "gine", "runs/x", model_options=parse_model_options("edge_readout=false")).to_dict()
    assert TrainConfig.shown("model_options", stored["model_options"]) == "'edge_readout=false'"
    assert TrainConfig.shown("lr", 0.5) == "0.5"
