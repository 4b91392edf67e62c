"""Every --model trains on tiny data and its loss falls; regression and dilation work end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from wsgraph.datasets.store import Shard, read_shard, shard_paths, write_meta, write_shard
from wsgraph.training import MODEL_NAMES, train
from wsgraph.training.config import EDITING_MODELS

from .conftest import tiny_config, write_store


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_each_model_learns_classes(classification_root: Path, tmp_path: Path, model: str) -> None:
    result = train(tiny_config(classification_root, tmp_path / model, model, epochs=4))
    history = _history(tmp_path / model)
    assert history[-1] < history[0]
    assert result["metric"] == "accuracy" and 0 <= result["test_metric"] <= 100
    assert result["parameters"] > 0 and result["epochs_run"] == 4
    for name in ("last.pt", "best.pt", "metrics.csv", "learning_curves.png", "result.json"):
        assert (tmp_path / model / name).is_file()


def test_regression_on_chosen_target_column(regression_root: Path, tmp_path: Path) -> None:
    result = train(tiny_config(regression_root, tmp_path / "run", "dwsnet", targets=(1,), epochs=4))
    assert result["model_spec"]["out_features"] == 1
    assert result["metric"] == "mse" and result["test_metric"] >= 0
    history = _history(tmp_path / "run")
    assert history[-1] < history[0]


@pytest.mark.parametrize("model", EDITING_MODELS)
def test_dilation_editors_learn(tmp_path: Path, model: str) -> None:
    root = dilation_root(tmp_path / "data")
    result = train(tiny_config(root, tmp_path / model, model, task="dilate", epochs=4, lr=3e-3))
    assert result["metric"] == "image_mse"
    history = _history(tmp_path / model)
    assert history[-1] < history[0]


@pytest.mark.parametrize(("model", "task"), [("dwsnet", None), ("gine", None), ("dwsnet", "dilate")])
def test_mixed_precision_on_cpu_trains(classification_root: Path, tmp_path: Path, model: str, task: str | None) -> None:
    root = dilation_root(tmp_path / "data") if task else classification_root
    result = train(tiny_config(root, tmp_path / "run", model, task=task, amp=True, epochs=2, lr=3e-3))
    history = _history(tmp_path / "run")
    assert all(math.isfinite(loss) for loss in history) and history[-1] < history[0]
    assert result["config"]["amp"] is True


@pytest.mark.parametrize("loader", ["stacked", "pyg"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_networks_stored_in_other_float_dtypes_train(tmp_path: Path, dtype: torch.dtype, loader: str) -> None:
    root = write_store(tmp_path / "data")
    for path in shard_paths(root):
        shard = read_shard(path)
        shard.weights = [w.to(dtype) for w in shard.weights]
        shard.biases = [b.to(dtype) for b in shard.biases]
        write_shard(root, int(path.stem.split("-")[1]), shard)
    result = train(tiny_config(root, tmp_path / "run", "dwsnet", loader=loader, epochs=2))
    assert math.isfinite(result["test_metric"])
    assert all(math.isfinite(loss) for loss in _history(tmp_path / "run"))


def dilation_root(root: Path, count: int = 30) -> Path:
    """Sine INRs 2-8-8-1 of nearly flat 4x4 images whose brightness sits in the last bias; the
    'dilated' targets are 0.1 brighter, so an editor has to learn to raise the last bias."""
    generator = torch.Generator().manual_seed(0)
    brightness = torch.linspace(0.2, 0.7, count)
    weights = [torch.randn(count, d_out, d_in, generator=generator) * 0.05 for d_in, d_out in ((2, 8), (8, 8), (8, 1))]
    biases = [torch.randn(count, d_out, generator=generator) * 0.05 for d_out in (8, 8)]
    biases.append((brightness - 0.5).view(count, 1))
    split = torch.tensor([0, 0, 0, 1, 2] * (count // 5), dtype=torch.uint8)
    dilated = (brightness + 0.1).view(count, 1, 1).expand(count, 4, 4).to(torch.float16).contiguous()
    write_shard(
        root,
        0,
        Shard(weights, biases, torch.zeros(count, dtype=torch.long), split, torch.arange(count), {"dilated": dilated}),
    )
    write_meta(
        root,
        {
            "kind": "inr",
            "task": "classification",
            "num_classes": 1,
            "activation": "sine(30.0)",
            "image_shape": [4, 4, 1],
            "output_offset": 0.5,
        },
    )
    return root


def _history(run: Path) -> list[float]:
    lines = (run / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("train_loss")
    return [float(line.split(",")[column]) for line in lines[1:]]


@pytest.mark.parametrize("model", ["ng-gnn", "ng-transformer", "gine", "dwsnet"])
def test_probe_features_train_and_come_back_with_the_checkpoint(
    classification_root: Path, tmp_path: Path, model: str
) -> None:
    from wsgraph.datasets import WeightSpaceDataset
    from wsgraph.training import load_trained_model

    result = train(tiny_config(classification_root, tmp_path / model, model, probe_features=4))
    assert result["config"]["probe_features"] == 4
    trained = load_trained_model(tmp_path / model / "best.pt")
    assert trained.spec.probe_features == 4
    # The probes undo the training data's normalisation, which the checkpoint restores with the weights.
    statistics = WeightSpaceDataset(classification_root, log=False).statistics
    assert torch.equal(trained.model.probe.weight_std, statistics.weight_std)
    test = WeightSpaceDataset(classification_root, split="test", log=False)
    batch = Batch.from_data_list([test[i] for i in range(len(test))])
    with torch.no_grad():
        accuracy = float((trained(batch).argmax(dim=-1) == batch.y.view(-1)).double().mean() * 100)
    assert accuracy == pytest.approx(result["test_metric"], abs=1e-9)


def test_probe_features_are_refused_by_models_without_neuron_features(
    classification_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="--probe-features applies to dwsnet, dwsnet-dense, gine, pna, gatv2"):
        train(tiny_config(classification_root, tmp_path / "run", "mlp", probe_features=4))
    from wsgraph.core.spec import WeightSpaceSpec
    from wsgraph.training import model_spec

    with pytest.raises(ValueError, match="--probe-features does not apply to --task dilate"):
        model_spec("dwsnet", "dilate", [WeightSpaceSpec((2, 8, 1))], 0, probe_features=4)
