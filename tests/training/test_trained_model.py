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

from .conftest import tiny_config, write_store
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


@pytest.fixture(scope="module")
def shared_best(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny mlp run's best.pt, for the tests that only read it."""
    root = write_store(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("runs") / "run"
    train(tiny_config(root, out, "mlp", epochs=1))
    return out / "best.pt"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_spec": [1]}, "model_spec is a list, not a dict"),
        ({"extra": 1}, "model_spec has an unknown entry 'extra'"),
        ({"hidden_channels": "4"}, "model_spec hidden_channels must be a positive integer or None, got '4'"),
        ({"task": "rm"}, "model_spec task must be one of classify, regress, dilate, got 'rm'"),
        ({"widths": [2, -1, 1]}, "model_spec widths must be positive integers, got [2, -1, 1]"),
        ({"widths": [2, 8, 1]}, "model_spec widths [2, 8, 1] do not fit signature [3, 2, 1]"),
        (
            {"signature": [1, 2, 1], "widths": [2, 1]},
            "model_spec has 1 weight layers, the stored input normalisation 3",
        ),
        # Sizes the stored weights do not have: refused before any memory is allocated for them.
        (
            {"hidden_channels": 10**6},
            "model_spec does not match the stored weights (mlp.0.weight: shape (1000000, 105) in the spec, (8, 105) "
            "in the file)",
        ),
        (
            {"out_features": 10**9},
            "model_spec does not match the stored weights (mlp.5.weight: shape (1000000000, 8) in the spec, (3, 8) "
            "in the file)",
        ),
        (
            {"depth": 10**5},
            "model_spec does not match the stored weights (depth 100000: more layers than the file's 11 tensors)",
        ),
        (
            {"depth": 3},
            "model_spec does not match the stored weights (mlp.5.weight: shape (8, 8) in the spec, (3, 8) in the file)",
        ),
        (
            {"name": "gine"},
            "model_spec does not match the stored weights (node_encoder.weight: in the spec, not in the file)",
        ),
    ],
)
def test_a_crafted_model_spec_is_refused_in_one_line(
    shared_best: Path, tmp_path: Path, change: dict, message: str
) -> None:
    document = torch.load(shared_best, weights_only=True)
    if "model_spec" in change:
        document["model_spec"] = change["model_spec"]
    else:
        document["model_spec"] = {**document["model_spec"], **change}
    crafted = tmp_path / "best.pt"
    torch.save(document, crafted)
    with pytest.raises(ValueError) as error:
        load_trained_model(crafted)
    assert len(str(error.value).splitlines()) == 1
    assert str(error.value).startswith(f"{crafted}: {message}")


def test_stored_weights_that_are_not_tensors_are_named(shared_best: Path, tmp_path: Path) -> None:
    document = torch.load(shared_best, weights_only=True)
    document["model"]["mlp.0.bias"] = [0.0] * 8
    crafted = tmp_path / "best.pt"
    torch.save(document, crafted)
    with pytest.raises(ValueError, match=rf"^{crafted}: the stored weight 'mlp.0.bias' is a list, not a tensor$"):
        load_trained_model(crafted)


def test_a_dwsnet_spec_with_more_layer_pairs_than_stored_numbers_is_refused_before_building(
    shared_best: Path, tmp_path: Path
) -> None:
    # Building a DWSNet of 300 weight layers, even on the meta device, would take many minutes.
    document = torch.load(shared_best, weights_only=True)
    document["model_spec"].update(name="dwsnet", signature=[300, 2, 1], widths=None)
    document["normalization"] = {key: torch.ones(300) for key in document["normalization"]}
    crafted = tmp_path / "best.pt"
    torch.save(document, crafted)
    with pytest.raises(
        ValueError, match=r"\(300 weight layers and depth 2: more blocks than the file's \d+ numbers\)$"
    ):
        load_trained_model(crafted)
