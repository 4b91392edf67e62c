"""A saved model is self-contained: fed raw networks, it predicts what the run's evaluation measured."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional
from torch_geometric.data import Batch

from wsgraph.datasets import WeightSpaceDataset
from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.inrs.render import image_grid_coords, render_inr
from wsgraph.training import load_trained_model, train
from wsgraph.training.data import open_training_data
from wsgraph.training.tasks import make_task

from .conftest import tiny_config
from .test_models import dilation_root


def raw_test_batch(root: Path) -> Batch:
    """The test split as stored, with no normalisation."""
    dataset = WeightSpaceDataset(root, split="test", log=False)
    return Batch.from_data_list([dataset[i] for i in range(len(dataset))])


@pytest.mark.parametrize(("model", "fixture"), [("dwsnet", "classification_root"), ("mlp", "regression_root")])
def test_best_checkpoint_predicts_on_raw_networks_as_the_evaluation_did(
    tmp_path: Path, request: pytest.FixtureRequest, model: str, fixture: str
) -> None:
    root = request.getfixturevalue(fixture)
    result = train(tiny_config(root, tmp_path / "run", model))
    trained = load_trained_model(tmp_path / "run" / "best.pt")
    spec = trained.spec
    batch = raw_test_batch(root)
    stored = batch.edge_attr.clone()
    with torch.no_grad():
        output = trained(batch)
        unnormalised = trained.model(batch)
    assert torch.equal(batch.edge_attr, stored), "the caller's batch must not change"
    if spec.task == "classify":
        labels = batch.y.view(-1)
        accuracy = float((output.argmax(dim=-1) == labels).double().mean() * 100)
        loss = float(functional.cross_entropy(output.double(), labels))
        assert accuracy == pytest.approx(result["test_metric"], abs=1e-9)
    else:
        loss = float((output.double() - batch.y.view(batch.num_graphs, -1)).square().mean())
        assert loss == pytest.approx(result["test_metric"], rel=1e-5)
    assert loss == pytest.approx(result["test_loss"], rel=1e-5)
    # The stored inner model alone, on raw weights, predicts something else: normalising is what matters here.
    assert not torch.allclose(output, unnormalised, atol=1e-3)


def test_the_model_keeps_its_statistics_as_buffers(classification_root: Path, tmp_path: Path) -> None:
    train(tiny_config(classification_root, tmp_path / "run", "mlp", epochs=1))
    trained = load_trained_model(tmp_path / "run" / "last.pt")
    expected = WeightSpaceDataset(classification_root, log=False).statistics
    for name, value in expected.to_dict().items():
        assert torch.equal(trained.state_dict()[name], value)
    assert {name for name, _ in trained.named_buffers()} >= {"weight_mean", "weight_std", "bias_mean", "bias_std"}


def test_editing_model_returns_raw_scale_networks(tmp_path: Path) -> None:
    root = dilation_root(tmp_path / "data")
    result = train(tiny_config(root, tmp_path / "run", "dwsnet", task="dilate", epochs=1))
    trained = load_trained_model(tmp_path / "run" / "best.pt")
    batch = raw_test_batch(root)
    data = open_training_data(root, "dilate", log=False)
    task = make_task("dilate", data, None, NormalizeWeights(data.statistics))
    with torch.no_grad():
        edited = trained(batch)
        images = render_inr(edited, image_grid_coords(task.height, task.width), output_offset=task.output_offset)
    mse = float((images - batch.dilated.reshape(images.shape).float()).square().mean())
    assert mse == pytest.approx(result["test_metric"], rel=1e-4)


def test_an_old_checkpoint_needs_its_statistics(classification_root: Path, tmp_path: Path) -> None:
    train(tiny_config(classification_root, tmp_path / "run", "mlp", epochs=1))
    current = load_trained_model(tmp_path / "run" / "best.pt")
    old = tmp_path / "old.pt"
    document = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    del document["normalization"]
    torch.save(document, old)
    with pytest.raises(ValueError) as error:
        load_trained_model(old)
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{old}: an older checkpoint without its input normalisation")
    assert f"WeightSpaceDataset({str(classification_root)!r}).statistics" in message
    statistics = WeightSpaceDataset(classification_root, log=False).statistics
    loaded = load_trained_model(old, statistics=statistics)
    batch = raw_test_batch(classification_root)
    with torch.no_grad():
        assert torch.equal(loaded(batch), current(batch))


def test_damaged_normalisation_is_named(classification_root: Path, tmp_path: Path) -> None:
    train(tiny_config(classification_root, tmp_path / "run", "mlp", epochs=1))
    damaged = tmp_path / "damaged.pt"
    document = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    document["normalization"]["weight_std"] = torch.full_like(document["normalization"]["weight_std"], float("nan"))
    torch.save(document, damaged)
    with pytest.raises(ValueError, match=rf"^{damaged}: the stored input normalisation"):
        load_trained_model(damaged)
