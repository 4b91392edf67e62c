"""``wsgraph train`` on a CNN dataset root: dwsnet (kernel lift + DWS), ng-gnn and the flat MLPs
train, resume bitwise and reload; per-layer normalisation reads real kernel entries only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch_geometric.data import Batch

from wsgraph import permute_hidden
from wsgraph.datasets.checkpoint_folders import convert_checkpoints
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.layers import CNNDWSNet
from wsgraph.training import load_trained_model, train
from wsgraph.training.data import open_training_data
from wsgraph.training.registry import build_model, model_spec
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .conftest import tiny_config
from .test_resume import Interrupted, interrupt_during_epoch

NUM_CLASSES = 3
WIDTH = 4


def small_cnn(kernel: int, generator: torch.Generator, label: int) -> nn.Sequential:
    """``Conv, ReLU, Conv, ReLU, pool, Linear``; class ``c`` draws its weights around ``(c - 1) / 2``."""
    model = nn.Sequential(
        nn.Conv2d(1, WIDTH, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.Conv2d(WIDTH, WIDTH, kernel, padding=kernel // 2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(WIDTH, 2),
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5 + (label - 1) / 2)
    return model


def write_cnn_zoo(folder: Path, count: int, kernels: tuple[int, ...]) -> None:
    """``count`` CNN state_dicts with learnable labels (kernel sizes cycling through ``kernels``) and labels.csv."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for number in range(count):
        label = number % NUM_CLASSES
        member = small_cnn(kernels[number % len(kernels)], generator, label)
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save(member.state_dict(), folder / "checkpoints" / f"m{number:03d}.pt")
        rows.append(f"m{number:03d}.pt,{label}\n")
    (folder / "labels.csv").write_text("".join(rows))


@pytest.fixture(scope="module")
def cnn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 CNNs of one widths, 3x3 and 5x5 kernels mixed (so the padding is real), as a dataset root."""
    folder = tmp_path_factory.mktemp("cnn-zoo")
    write_cnn_zoo(folder, 36, (3, 5))
    out = folder / "data"
    convert_checkpoints(
        folder / "checkpoints", out, labels=folder / "labels.csv", split_ratios=(0.6, 0.2, 0.2), progress=False
    )
    return out


def test_normalisation_counts_real_kernel_entries_and_keeps_padding_zero(cnn_root: Path) -> None:
    dataset = WeightSpaceDataset(cnn_root, split="train", log=False)
    batch = Batch.from_data_list(list(dataset))
    real = batch.edge_attr != 0
    assert not bool(real.all())  # the 3x3 kernels sit in 5x5 grids
    normalized = dataset.normalization(batch.clone())
    assert bool((normalized.edge_attr[~real] == 0).all())
    for layer in range(1, 4):
        on_layer = batch.edge_layer == layer
        values = normalized.edge_attr[on_layer][real[on_layer]].double()
        assert abs(values.mean().item()) < 1e-5 and abs(values.std(unbiased=False).item() - 1) < 1e-4, layer
    restored = dataset.normalization.inverse(normalized)
    assert bool((restored.edge_attr[~real] == 0).all())
    torch.testing.assert_close(restored.edge_attr, batch.edge_attr)


@pytest.mark.parametrize("model", ["dwsnet", "ng-gnn", "mlp", "mlp-aug"])
@pytest.mark.parametrize("loader", ["stacked", "pyg"])
def test_models_train_on_cnn_graphs_and_reload(cnn_root: Path, tmp_path: Path, model: str, loader: str) -> None:
    config = tiny_config(cnn_root, tmp_path / "run", model, epochs=2, loader=loader)
    result = train(config)
    assert result["epochs_run"] == 2 and result["test_metric"] is not None
    assert result["model_spec"]["kernel_grid"] == [5, 5]
    assert result["model_spec"]["kernel_sizes"] == [[5, 5], [5, 5], [1, 1]]

    trained = load_trained_model(tmp_path / "run" / "best.pt")
    data = open_training_data(cnn_root, "classify", log=False)
    test = Batch.from_data_list([data.test.dataset[int(i)] for i in data.test.rows])
    normalization = NormalizeWeights(data.statistics)
    with torch.no_grad():
        reference = build_model(trained.spec)
        reference.load_state_dict(load_run_checkpoint(tmp_path / "run" / "best.pt")["model"])
        expected = reference.eval()(normalization(test.clone()))
        torch.testing.assert_close(trained(test), expected)


@pytest.mark.parametrize("model", ["dwsnet", "ng-gnn", "mlp"])
def test_cnn_runs_resume_bitwise(cnn_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    settings = {"dropout": 0.1} if model != "mlp" else {"augment": ("shift", "scale", "dropout")}
    whole = tiny_config(cnn_root, tmp_path / "whole", model, epochs=3, **settings)
    expected = train(whole)
    pieces = tiny_config(cnn_root, tmp_path / "pieces", model, epochs=3, **settings)
    interrupt_during_epoch(monkeypatch, 2)
    with pytest.raises(Interrupted):
        train(pieces)
    monkeypatch.undo()
    resumed = train(pieces, resume=tmp_path / "pieces" / "last.pt")
    uninterrupted = load_run_checkpoint(tmp_path / "whole" / "last.pt")
    continued = load_run_checkpoint(tmp_path / "pieces" / "last.pt")
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(tensor, continued["model"][name]), name
    assert [row["train_loss"] for row in uninterrupted["history"]] == [
        row["train_loss"] for row in continued["history"]
    ]
    assert resumed["test_metric"] == expected["test_metric"]


def test_dwsnet_on_cnn_graphs_is_invariant_to_hidden_channel_permutations(cnn_root: Path) -> None:
    data = open_training_data(cnn_root, "classify", log=False)
    spec = model_spec(
        "dwsnet",
        "classify",
        data.architectures,
        NUM_CLASSES,
        kernel_sizes=data.kernel_sizes,
        kernel_grid=data.kernel_grid,
    )
    torch.manual_seed(0)
    model = build_model(spec).double().eval()
    assert isinstance(model, CNNDWSNet)
    batch = Batch.from_data_list(list(data.train.dataset)[:8])
    batch.x, batch.edge_attr = batch.x.double(), batch.edge_attr.double()
    permuted = permute_hidden(batch.clone(), generator=torch.Generator().manual_seed(1))
    assert not torch.equal(permuted.edge_attr, batch.edge_attr)
    with torch.no_grad():
        torch.testing.assert_close(model(permuted), model(batch), rtol=1e-10, atol=1e-10)


def test_cnn_datasets_refuse_what_they_cannot_serve(cnn_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--model gine does not read the graphs of CNNs"):
        train(tiny_config(cnn_root, tmp_path / "gine", "gine"))
    with pytest.raises(ValueError, match="--augment translate"):
        train(tiny_config(cnn_root, tmp_path / "translate", "dwsnet", augment=("translate",)))
