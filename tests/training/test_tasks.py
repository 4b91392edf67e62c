"""Losses and metrics of the tasks, checked against independent computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional
from torch_geometric.data import Batch

from wsgraph.convert import graph_to_mlp
from wsgraph.datasets import WeightSpaceDataset
from wsgraph.datasets.render import image_grid_coords
from wsgraph.graph import WeightSpaceGraph
from wsgraph.spec import WeightSpaceSpec
from wsgraph.training.data import open_training_data, resolve_task
from wsgraph.training.registry import model_spec
from wsgraph.training.tasks import Classification, Regression, make_task
from wsgraph.transforms import NormalizeWeights

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
