"""Losses and metrics of the tasks, checked against independent computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional
from torch_geometric.data import Batch

from wsgraph.core.convert_mlp import graph_to_mlp
from wsgraph.core.graph import WeightSpaceGraph
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.datasets import WeightSpaceDataset
from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.inrs.render import image_grid_coords
from wsgraph.training.config import TrainConfig
from wsgraph.training.data import open_training_data, resolve_task
from wsgraph.training.registry import model_spec
from wsgraph.training.run import reference_result
from wsgraph.training.tasks import Classification, ReferencePredictor, Regression, make_task

from .test_models import dilation_root


def test_classification_loss_and_accuracy() -> None:
    task = Classification(3)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    batch = Batch(y=torch.tensor([0, 1, 1]))
    torch.testing.assert_close(task.losses(logits, batch), functional.cross_entropy(logits, batch.y, reduction="none"))
    assert task.scores(logits, batch).tolist() == [100.0, 0.0, 100.0]
    assert task.is_better(50.0, 40.0) and not task.is_better(40.0, 50.0)


def test_regression_uses_chosen_columns() -> None:
    task = Regression(num_targets=2, columns=[1])
    batch = Batch(y=torch.tensor([[5.0, 1.0], [7.0, -1.0]]))
    batch._num_graphs = 2
    output = torch.tensor([[2.0], [0.0]])
    assert task.out_features == 1
    assert task.losses(output, batch).tolist() == [1.0, 1.0]
    assert task.is_better(0.5, 1.0) and not task.is_better(1.0, 0.5)


def test_classification_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        Classification(1)


def test_dilation_loss_renders_the_unnormalised_networks(tmp_path: Path) -> None:
    """An editor that changes nothing has, as loss, the pixel MSE between the images the
    original (un-normalised) networks render and the targets."""
    root = dilation_root(tmp_path / "data")
    data = open_training_data(root, "dilate")
    normalization = NormalizeWeights(data.statistics)
    task = make_task("dilate", data, None, normalization)
    dataset = WeightSpaceDataset(root, split="train", log=False)
    graphs = [dataset[i] for i in range(4)]
    batch = Batch.from_data_list(graphs)
    normalised = normalization(Batch.from_data_list(graphs))
    losses = task.losses(normalised, batch)

    coords = image_grid_coords(4, 4)
    for graph, loss in zip(graphs, losses):
        assert isinstance(graph, WeightSpaceGraph)
        image = graph_to_mlp(graph)(coords) + 0.5
        expected = (image.view(-1) - graph.dilated.float().view(-1)).square().mean()
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-7)


def test_the_declared_task_is_read_without_processing_the_dataset(classification_root: Path) -> None:
    assert resolve_task(classification_root, None) == "classify"
    assert resolve_task(classification_root, "regress") == "regress"
    assert not (classification_root / "processed").exists()


def test_readout_is_refused_for_weight_editing() -> None:
    with pytest.raises(ValueError, match="--readout does not apply to --task dilate"):
        model_spec("dwsnet", "dilate", [WeightSpaceSpec((2, 8, 8, 1))], 1, readout="max")


def test_reference_predictors_ignore_the_weights() -> None:
    batch = Batch(y=torch.tensor([[5.0, 1.0], [7.0, -1.0], [6.0, 0.0]]))
    batch._num_graphs = 3
    regression = Regression(num_targets=2, columns=[1], train_mean=torch.tensor([6.0, 0.5]))
    assert ReferencePredictor(regression)(batch).tolist() == [[0.5], [0.5], [0.5]]
    assert regression.losses(ReferencePredictor(regression)(batch), batch).tolist() == [0.25, 2.25, 0.25]

    classification = Classification(3, majority_class=1)
    labels = Batch(y=torch.tensor([1, 0, 1, 2]))
    labels._num_graphs = 4
    assert classification.scores(classification.reference_output(labels), labels).tolist() == [100.0, 0.0, 100.0, 0.0]


def test_reference_of_a_dataset_is_its_majority_class_and_mean_target(
    classification_root: Path, tmp_path: Path
) -> None:
    data = open_training_data(classification_root, "classify")
    train_labels = data.train.dataset.y[data.train.rows]
    majority = int(torch.bincount(train_labels).argmax())
    test_labels = data.test.dataset.y[data.test.rows]
    expected = float((test_labels == majority).double().mean() * 100)
    config = TrainConfig(data=str(classification_root), model="mlp", out=str(tmp_path / "run"), progress=False)
    result = reference_result(config)
    assert result["predictor"] == "always the most frequent training class"
    assert result["test_metric"] == pytest.approx(expected)
    assert not (tmp_path / "run").exists()


def test_dilation_reference_is_the_unedited_networks(tmp_path: Path) -> None:
    root = dilation_root(tmp_path / "data")
    data = open_training_data(root, "dilate")
    normalization = NormalizeWeights(data.statistics)
    task = make_task("dilate", data, None, normalization)
    dataset = WeightSpaceDataset(root, split="test", log=False)
    graphs = [dataset[i] for i in range(len(dataset))]
    coords = image_grid_coords(4, 4)
    with torch.no_grad():
        expected = torch.stack(
            [(graph_to_mlp(g)(coords).view(-1) + 0.5 - g.dilated.float().view(-1)).square().mean() for g in graphs]
        ).mean()
    config = TrainConfig(data=str(root), model="dwsnet", task="dilate", out=str(tmp_path / "run"), progress=False)
    result = reference_result(config)
    assert task.reference == result["predictor"] == "the unedited input networks"
    assert result["test_metric"] == pytest.approx(float(expected), rel=1e-5)
