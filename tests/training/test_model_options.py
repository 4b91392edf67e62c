"""--model-options: further constructor arguments of the model class, from the command line to the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from wsgraph.cli.main import main
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.training import load_trained_model, registry, train
from wsgraph.training.config import TrainConfig, parse_model_options, render_model_options
from wsgraph.training.editors import FlatMLPEditor
from wsgraph.training.model_options import check_options
from wsgraph.training.registry import build_model, check_model_fits, model_spec
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
        (
            ("norm=node", "--model-options", "norm=graph"),
            "wsgraph train: error: --model-options norm: given more than once",
        ),
        ("2x=1", "wsgraph train: error: --model-options '2x': not an argument name"),
        (
            "fourier_featurez=0",
            "wsgraph train: error: --model-options fourier_featurez: not an argument of NeuralGraphGNN (it takes "
            "aggregators, scalers, fourier_features, fourier_sigma, encoder_layers, positional, "
            "bidirectional, modulate_edges, gating_edges, update_edges, norm, act, pooling_layer, backend)",
        ),
    ],
)
def test_bad_options_are_one_line_errors(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, options: str, message: str
) -> None:
    arguments = ["train", "--data", str(classification_root), "--model", "ng-gnn", "--out", str(tmp_path / "r")]
    given = [options] if isinstance(options, str) else list(options)
    status = main([*arguments, "--epochs", "1", "--no-progress", "--model-options", *given])
    error = capsys.readouterr().err.strip()
    assert status == 1
    assert error == message


def test_repeated_model_options_add_up(classification_root: Path, tmp_path: Path) -> None:
    arguments = ["train", "--data", str(classification_root), "--model", "ng-gnn", "--out", str(tmp_path / "r")]
    arguments += ["--epochs", "1", "--hidden-channels", "8", "--depth", "2", "--no-progress"]
    assert main([*arguments, "--model-options", "norm=node", "--model-options", "fourier_features=0"]) == 0
    stored = json.loads((tmp_path / "r" / "result.json").read_text())["config"]["model_options"]
    assert stored == [["norm", "node"], ["fourier_features", 0]]


@pytest.mark.parametrize(
    ("model", "options", "message"),
    [
        # A value the constructor cannot take is named with what the argument takes, before anything runs.
        ("ng-gnn", "fourier_sigma=abc", "--model-options fourier_sigma=abc: NeuralGraphGNN takes a number, got 'abc'"),
        ("ng-gnn", "fourier_features=2.5", "--model-options fourier_features=2.5: NeuralGraphGNN takes an integer"),
        (
            "ng-gnn",
            "norm=weird",
            "--model-options norm=weird: NeuralGraphGNN takes one of graph, node, minibatch or none",
        ),
        ("ng-gnn", "aggregators=mean", "NeuralGraphGNN takes a tuple of text, items joined by + (mean+ for one)"),
        ("ng-gnn", "norm=", "--model-options 'norm': no value after ="),
        ("ng-gnn", "fourier_sigma=nan", "--model-options fourier_sigma: nan is not a finite number"),
        ("ng-gnn", "degree_histogram=1", "--model-options degree_histogram: NeuralGraphGNN takes it from the data"),
        ("gine", "heads=abc", "--model-options heads=abc: WeightSpaceGNN takes an integer, got 'abc'"),
        ("gine", "pna_degree=1", "--model-options pna_degree: WeightSpaceGNN takes it from the data"),
        # Defaults that the data overrules: another value would only fail at the first batch.
        ("gine", "in_channels=2", "--model-options in_channels: WeightSpaceGNN takes it from the data"),
        ("dwsnet", "in_channels=2", "--model-options in_channels: DWSNet takes it from the data"),
        ("ng-transformer", "in_channels=2", "--model-options in_channels: NeuralGraphTransformer takes it from"),
        ("ng-gnn", "edge_channels=2", "--model-options edge_channels: NeuralGraphGNN takes it from the data"),
        ("mlp", "kernel_sizes=none", "--model-options kernel_sizes: FlatMLP takes it from the data"),
        ("mlp", "batch_norm=maybe", "--model-options batch_norm=maybe: FlatMLP takes true or false, got 'maybe'"),
        (
            "gine",
            "bogus=1",
            "--model-options bogus: not an argument of WeightSpaceGNN (it takes edge_readout, heads)",
        ),
        ("gine", "heads=3", "--model gine with --model-options heads=3: heads=3 applies to conv 'gatv2' and"),
        ("gine", "edge_readout=false,heads=0", "--model gine with --model-options edge_readout=false,heads=0: "),
        ("gine", "conv=pna", "--model-options conv: WeightSpaceGNN takes it from --model gine, pna, gatv2 or"),
        ("ng-gnn", "scalers=foo+", "--model-options scalers=foo+: scalers: unknown name 'foo'; expected names from"),
        ("ng-gnn", "aggregators=median+", "backend 'fused' computes the aggregators sum, mean, min, max, var, std"),
        ("ng-gnn", "=3", "--model-options '=3': no name before ="),
    ],
)
def test_values_the_model_cannot_take_are_one_line_errors(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, model: str, options: str, message: str
) -> None:
    arguments = ["train", "--data", str(classification_root), "--model", model, "--out", str(tmp_path / "r")]
    status = main([*arguments, "--epochs", "1", "--no-progress", "--model-options", options])
    error = capsys.readouterr().err.strip()
    assert status == 1
    assert message in error and "\n" not in error
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.mark.parametrize(
    ("name", "task", "conv", "options", "built", "reached"),
    [
        ("dwsnet", "classify", False, {"head_hidden": 16}, "DWSNet", lambda m: m.head[0].out_features == 16),
        ("dwsnet-dense", "classify", False, {"head_hidden": 16}, "DWSNet", lambda m: m.head[0].out_features == 16),
        ("dwsnet", "classify", True, {"head_hidden": 16}, "CNNDWSNet", lambda m: m.head[0].out_features == 16),
        ("dwsnet", "dilate", False, {"residual": False}, "DWSEditNet", lambda m: m.residual is False),
        ("mlp", "classify", False, {"batch_norm": False}, "FlatMLP", lambda m: "BatchNorm" not in str(m)),
        ("mlp-aug", "classify", True, {"batch_norm": False}, "FlatMLP", lambda m: "BatchNorm" not in str(m)),
        ("gine", "classify", False, {"edge_readout": False}, "WeightSpaceGNN", lambda m: m.edge_readout is False),
        ("pna", "regress", False, {"edge_readout": False}, "WeightSpaceGNN", lambda m: m.edge_readout is False),
        ("gatv2", "classify", False, {"heads": 2}, "WeightSpaceGNN", lambda m: m.convs[0].heads == 2),
        ("transformer", "classify", False, {"heads": 2}, "WeightSpaceGNN", lambda m: m.convs[0].heads == 2),
        ("ng-gnn", "classify", True, {"fourier_sigma": 2}, "NeuralGraphGNN", lambda m: "sigma=2.0" in str(m)),
        ("ng-transformer", "classify", False, {"heads": 2}, "NeuralGraphTransformer", lambda m: "heads" in str(m)),
    ],
)
def test_every_model_family_takes_options(name, task, conv, options, built, reached) -> None:
    widths = (2, 8, 8, 1) if not conv else (1, 4, 4, 2)
    kernels = {"kernel_sizes": ((3, 3), (3, 3), (1, 1)), "kernel_grid": (3, 3)} if conv else {}
    spec = model_spec(
        name, task, [WeightSpaceSpec(widths)], 0 if task == "dilate" else 3, 8, 2, options=tuple(options.items()),
        **kernels,
    )  # fmt: skip
    model = build_model(spec)
    assert type(model).__name__ == built
    assert reached(model)


def test_the_flat_editor_takes_no_option_that_the_data_or_a_flag_sets() -> None:
    spec = model_spec("mlp", "dilate", [WeightSpaceSpec((2, 8, 8, 1))], 0, 8, 2, options=(("in_channels", 1),))
    with pytest.raises(ValueError, match="--model-options in_channels: FlatMLPEditor takes it from the data"):
        build_model(spec)
    with pytest.raises(
        ValueError, match=r"^--model-options bogus: not an argument of FlatMLPEditor \(it takes none\)$"
    ):
        check_options((FlatMLPEditor,), (("bogus", 1),))


def test_python_values_that_the_command_line_cannot_write_are_refused() -> None:
    assert TrainConfig("d", "ng-gnn", "o", model_options=(("norm", "minibatch"),)).model_options == (
        ("norm", "minibatch"),
    )
    # The run's command line (result.json, bench tables) must rebuild the same settings.
    with pytest.raises(ValueError, match=r"--model-options act: .* cannot be written as KEY=VALUE"):
        TrainConfig("d", "ng-gnn", "o", model_options={"act": nn.GELU()})
    with pytest.raises(ValueError, match=r"--model-options act: '1' cannot be written as KEY=VALUE"):
        TrainConfig("d", "ng-gnn", "o", model_options={"act": "1"})


def test_bench_checks_the_options_of_every_model_before_training_any(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    arguments = ["bench", "--data", str(classification_root), "--models", "ng-gnn,gine", "--seeds", "1"]
    status = main([*arguments, "--out", str(tmp_path / "b"), "--epochs", "1", "--model-options", "norm=minibatch"])
    assert status == 1
    assert "--model-options norm: not an argument of WeightSpaceGNN" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bench_reproduces_and_compares_the_options(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    tiny = ["--epochs", "1", "--batch-size", "8", "--hidden-channels", "8", "--depth", "2", "--no-progress"]
    arguments = ["bench", "--data", str(classification_root), "--models", "ng-gnn", "--seeds", "1"]
    arguments += ["--out", str(tmp_path / "b"), *tiny]
    assert main([*arguments, "--model-options", "norm=minibatch,aggregators=max+"]) == 0
    table = (tmp_path / "b" / "results.md").read_text()
    assert "--model-options norm=minibatch,aggregators=max+`" in table
    assert main([*arguments, "--model-options", "norm=node"]) == 1
    assert "model_options: 'norm=minibatch,aggregators=max+' there, 'norm=node' now" in (capsys.readouterr().err)


@pytest.mark.parametrize("model", ["ng-gnn", "ng-transformer"])
def test_readout_and_a_pooling_layer_option_agree_or_are_refused(
    classification_root: Path, tmp_path: Path, capsys, model: str
) -> None:
    arguments = ["train", "--data", str(classification_root), "--model", model, "--readout", "mean"]
    arguments += ["--epochs", "1", "--hidden-channels", "8", "--depth", "1", "--no-progress"]
    assert main([*arguments, "--out", str(tmp_path / "same"), "--model-options", "pooling_layer=all"]) == 0
    capsys.readouterr()
    assert main([*arguments, "--out", str(tmp_path / "other"), "--model-options", "pooling_layer=last"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.endswith("--readout mean pools all neurons and cannot go with pooling_layer=last; drop one of them")


def test_integer_sizes_are_bounded_and_numbers_are_not() -> None:
    from wsgraph.layers import NeuralGraphGNN
    from wsgraph.training.registry import check_model_options

    with pytest.raises(ValueError, match=r"^--model-options fourier_features=100000000: sizes and counts must be in "):
        check_options((NeuralGraphGNN,), (("fourier_features", 100_000_000),))
    with pytest.raises(ValueError, match=r"^--model-options head_hidden=-1: sizes and counts must be in 0\.\.65,536"):
        check_model_options("dwsnet", (("head_hidden", -1),))
    # A float argument written as a large integer is a number, not a size.
    check_options((NeuralGraphGNN,), (("fourier_sigma", 100_000),))


def test_norm_none_from_the_command_line_builds_a_model_without_normalisation(
    classification_root: Path, tmp_path: Path
) -> None:
    # "none" reads back as None, which the class takes as it takes the string.
    options = parse_model_options("norm=none")
    config = tiny_config(classification_root, tmp_path / "run", "ng-gnn", epochs=1, model_options=options)
    train(config)
    model = load_trained_model(tmp_path / "run" / "best.pt").model
    assert model.norm is None and all(isinstance(norm, nn.Identity) for norm in model.norms)


def test_numbers_with_an_exponent_are_written_so_that_they_read_back() -> None:
    for value in (1e20, 1e-20, -1e300, 2.5):
        options = (("fourier_sigma", value),)
        assert parse_model_options(render_model_options(options)) == options
    assert TrainConfig("d", "ng-gnn", "o", model_options={"fourier_sigma": 1e20}).command().count("=1e20") == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--models", "gine,mlp", "--probe-features", "2"], "--probe-features applies to dwsnet, "),
        (["--models", "transformer,gine", "--model-options", "heads=2"], "--model gine with --model-options heads=2"),
    ],
)
def test_bench_builds_every_model_before_training_any(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    arguments = ["bench", "--data", str(classification_root), "--seeds", "1", "--out", str(tmp_path / "b")]
    assert main([*arguments, "--epochs", "1", "--no-progress", *flags]) == 1
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not (tmp_path / "b").exists()


def test_a_model_too_large_for_the_memory_is_refused_before_it_is_built(
    classification_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = model_spec("gine", "classify", [WeightSpaceSpec((2, 4, 1))], 3, hidden_channels=16, depth=2)
    parameters = sum(parameter.numel() for parameter in build_model(spec).parameters())
    # Counted without building: the weights, their gradients and AdamW's two moments, in float32; with
    # AMSGrad a third; two processes on one machine, twice that.
    for memory, states, processes in ((16 * parameters, 2, 1), (20 * parameters, 3, 1), (32 * parameters, 2, 2)):
        monkeypatch.setattr(registry, "physical_memory", lambda memory=memory: memory)
        assert check_model_fits(spec, optimizer_states=states, processes=processes) == parameters
        monkeypatch.setattr(registry, "physical_memory", lambda memory=memory: memory - 1)
        with pytest.raises(
            ValueError, match=rf"^--model gine with --hidden-channels 16 and --depth 2: {parameters:,} "
        ):
            check_model_fits(spec, optimizer_states=states, processes=processes)
    monkeypatch.setattr(registry, "physical_memory", lambda: 2**30)
    arguments = ["train", "--data", str(classification_root), "--model", "gine", "--out", str(tmp_path / "r")]
    assert main([*arguments, "--hidden-channels", "65536", "--epochs", "1", "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert "--model gine with --hidden-channels 65536 and --depth 4 (default): " in error
    assert error.endswith("this machine has 1.0 GiB")
    assert not (tmp_path / "r").exists()


def test_a_model_the_meta_device_cannot_build_is_not_counted_and_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def reads_values(spec, statistics=None):
        raise NotImplementedError("Cannot copy out of meta tensor")

    spec = model_spec("gine", "classify", [WeightSpaceSpec((2, 4, 1))], 3, hidden_channels=16, depth=2)
    monkeypatch.setattr(registry, "build_model", reads_values)
    monkeypatch.setattr(registry, "physical_memory", lambda: 1)
    assert check_model_fits(spec) is None
