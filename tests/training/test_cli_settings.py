"""`wsgraph train` and `wsgraph bench` build their options from TrainConfig's fields, and read back what they render."""

from __future__ import annotations

import argparse
import dataclasses
import shlex

import pytest

from wsgraph.cli.main import build_parser
from wsgraph.cli.train import explicit_settings
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS
from wsgraph.training import TrainConfig

# The options of a run, as the command line has always spelled them.
SETTING_FLAGS = {
    "--task", "--targets", "--max-train", "--epochs", "--batch-size", "--lr", "--weight-decay", "--amsgrad",
    "--no-amsgrad", "--schedule", "--warmup-steps", "--warmup-epochs", "--clip-grad-norm", "--patience", "--seed",
    "--augment",
    "--hidden-channels", "--depth", "--num-dws-layers", "--num-rounds", "--readout", "--dropout", "--model-options",
    "--probe-features", "--device", "--amp", "--no-amp", "--compile", "--no-compile", "--loader", "--num-workers",
    "--progress", "--no-progress",
}  # fmt: skip


def subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices[command]


@pytest.mark.parametrize(("command", "own"), [("train", {"--data", "--model", "--out", "--resume"}), ("bench", None)])
def test_the_commands_offer_every_setting_under_its_usual_flags(command: str, own: set[str] | None) -> None:
    flags = {flag for action in subparser(command)._actions for flag in action.option_strings} - {"-h", "--help"}
    if own is not None:
        assert flags == SETTING_FLAGS | own
    else:
        assert flags >= SETTING_FLAGS


def test_a_rendered_command_parses_back_to_the_same_config() -> None:
    config = TrainConfig(
        "data/x", "dwsnet", "runs/x", task="classify", epochs=3, batch_size=7, lr=0.01, weight_decay=0.0,
        amsgrad=True, schedule="warmup-constant", warmup_epochs=0.5, clip_grad_norm=2.5, hidden_channels=9, depth=2, readout="max", dropout=0.25, probe_features=3,
        model_options={"norm": "node", "aggregators": ("max",), "fourier_sigma": 2.0, "gating_edges": False},
        augment=("permute", "rotate"), targets=(1, "accuracy"), seed=4, device="cpu", amp=True, patience=0,
        max_train=11, num_workers=2, loader="pyg", progress=False,
    )  # fmt: skip
    args = build_parser().parse_args(shlex.split(config.command())[1:])
    assert TrainConfig(**explicit_settings(args)) == config


def test_unset_options_keep_the_dataclass_defaults_and_the_help_shows_the_model_defaults() -> None:
    args = build_parser().parse_args(["train", "--data", "d", "--model", "mlp", "--out", "o"])
    assert TrainConfig(**explicit_settings(args)) == TrainConfig("d", "mlp", "o")
    text = subparser("train").format_help()
    for field in dataclasses.fields(TrainConfig):
        if isinstance(field.default, (int, float)) and not isinstance(field.default, bool):
            assert f"(default: {field.default})" in text, field.name
    assert f"{HIDDEN_CHANNELS['dwsnet']} DWSNet" in text and f"{DEPTH['mlp']} MLP" in text


def test_the_old_depth_flags_set_depth() -> None:
    for flag in ("--depth", "--num-dws-layers", "--num-rounds"):
        args = build_parser().parse_args(["train", flag, "3"])
        assert explicit_settings(args) == {"depth": 3}


@pytest.mark.parametrize("command", ["train", "bench"])
def test_the_usage_line_lists_the_settings_section_by_section(command: str) -> None:
    parser = subparser(command)
    section_of = {id(action): group.title for group in parser._action_groups for action in group._group_actions}
    sections = [section_of[id(action)] for action in parser._actions if action.option_strings]
    runs = [section for index, section in enumerate(sections) if index == 0 or section != sections[index - 1]]
    assert len(runs) == len(set(runs)), runs
