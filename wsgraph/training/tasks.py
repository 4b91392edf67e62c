"""Tasks: what a model's output is compared with, the loss, and the metric reported."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional
from torch_geometric.data import Batch, Data

from wsgraph.datasets.transforms import NormalizeWeights
from wsgraph.inrs.render import image_grid_coords, render_inr
from wsgraph.training.data import TrainingData

# The per-network attribute holding the dilated target image (see wsgraph.inrs.image_inrs).
DILATED_KEY = "dilated"


class Task(ABC):
    """A training objective with a per-network loss and a per-network score.

    The reported metric is the mean score over the networks of a split, so it reduces
    exactly across batches and processes (sum of scores, count of networks).

    Attributes:
        name: the ``--task`` name.
        metric: the metric's name in logs and result files.
        higher_is_better: whether a larger metric is better (for early stopping).
        batch_keys: per-network attributes the task reads from a batch besides ``y``.
        reference: what the reference predictor does (see :meth:`reference_output`).
    """

    name: str
    metric: str
    higher_is_better: bool
    batch_keys: tuple[str, ...] = ()
    reference: str

    @abstractmethod
    def reference_output(self, batch: Batch) -> Any:
        """The output of a predictor that learns nothing from the weights, whose metric
        tells what a trained model's metric is worth."""

    @abstractmethod
    def losses(self, output: Any, batch: Batch) -> Tensor:
        """``[B]``: the loss of every network of the batch."""

    @abstractmethod
    def scores(self, output: Any, batch: Batch) -> Tensor:
        """``[B]``: every network's contribution to the metric (whose mean is the metric)."""

    def losses_and_scores(self, output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        """Both of the above (tasks whose score is their loss compute it once)."""
        return self.losses(output, batch), self.scores(output, batch)

    @property
    @abstractmethod
    def out_features(self) -> int:
        """The size of a model's output per network (``0`` for tasks whose output is a network)."""

    def is_better(self, metric: float, best: float | None) -> bool:
        if best is None:
            return True
        return metric > best if self.higher_is_better else metric < best


class Classification(Task):
    """Cross-entropy on class logits; the metric is accuracy in percent."""

    name, metric, higher_is_better = "classify", "accuracy", True
    reference = "always the most frequent training class"

    def __init__(self, num_classes: int, majority_class: int = 0) -> None:
        if num_classes < 2:
            raise ValueError(f"classification needs at least two classes, the dataset has {num_classes}")
        self.num_classes = num_classes
        self.majority_class = majority_class

    def reference_output(self, batch: Batch) -> Tensor:
        logits = torch.zeros(batch.num_graphs, self.num_classes, device=batch.y.device)
        logits[:, self.majority_class] = 1.0
        return logits

    @property
    def out_features(self) -> int:
        return self.num_classes

    def losses(self, output: Tensor, batch: Batch) -> Tensor:
        return functional.cross_entropy(output.float(), batch.y.view(-1), reduction="none")

    def scores(self, output: Tensor, batch: Batch) -> Tensor:
        return (output.argmax(dim=-1) == batch.y.view(-1)).float() * 100.0


class _LossIsMetric(Task):
    """A task whose metric is the mean of its per-network losses (computed once)."""

    def scores(self, output: Any, batch: Batch) -> Tensor:
        return self.losses(output, batch)

    def losses_and_scores(self, output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        losses = self.losses(output, batch)
        return losses, losses


class Regression(_LossIsMetric):
    """Mean squared error on the chosen columns of ``y``; the metric is that MSE.

    Args:
        num_targets: the number of columns of ``y`` in the data.
        columns: the columns to predict (default: all).
    """

    name, metric, higher_is_better = "regress", "mse", False
    reference = "always the mean training target"

    def __init__(
        self, num_targets: int, columns: Sequence[int] | None = None, train_mean: Tensor | None = None
    ) -> None:
        self.columns = list(range(num_targets)) if columns is None else list(columns)
        # The reference's prediction: the training mean of the chosen columns (zero when unknown).
        self.train_mean = torch.zeros(len(self.columns)) if train_mean is None else train_mean.float()[self.columns]

    def reference_output(self, batch: Batch) -> Tensor:
        return self.train_mean.to(batch.y.device).expand(batch.num_graphs, -1)

    @property
    def out_features(self) -> int:
        return len(self.columns)

    def targets(self, batch: Batch) -> Tensor:
        y = batch.y.view(batch.num_graphs, -1)
        return y[:, self.columns].float()

    def losses(self, output: Tensor, batch: Batch) -> Tensor:
        return (output.float() - self.targets(batch)).square().mean(dim=-1)


class Dilation(_LossIsMetric):
    r"""INR editing: the edited networks must render the dilated images stored with the
    dataset (NFN's MNIST dilation benchmark, see :mod:`wsgraph.inrs.dilation`).

    The model sees normalised weights and returns edited normalised weights; the
    normalisation is undone exactly (:meth:`~wsgraph.datasets.transforms.NormalizeWeights.inverse`),
    the edited networks are evaluated on the pixel grid with the differentiable
    :func:`~wsgraph.inrs.render.render_inr` (in float32 even under ``--amp``: a sine
    with :math:`\omega_0 = 30` magnifies rounding), and the loss of a network is the mean
    squared error over its pixels, which is also the metric (intensities in the
    dataset's ``intensity_range``, [0, 1] for wsgraph's INRs).

    Args:
        normalization: the input normalisation of the run.
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the images.
        output_offset: the INRs' output offset (+0.5 in the published recipe).
    """

    name, metric, higher_is_better = "dilate", "image_mse", False
    batch_keys = (DILATED_KEY,)
    reference = "the unedited input networks"

    def __init__(self, normalization: NormalizeWeights, image_shape: Sequence[int], output_offset: float) -> None:
        self.normalization = normalization
        self.height, self.width = int(image_shape[0]), int(image_shape[1])
        self.output_offset = float(output_offset)

    @property
    def out_features(self) -> int:
        return 0

    def reference_output(self, batch: Batch) -> Batch:
        return batch

    def render(self, edited: Data) -> Tensor:
        """``[B, H * W, C]``: the images the edited (normalised) networks show."""
        networks = self.normalization.inverse(edited)
        coords = image_grid_coords(self.height, self.width, networks.edge_attr.device)
        with torch.autocast(networks.edge_attr.device.type, enabled=False):
            networks.edge_attr, networks.x = networks.edge_attr.float(), networks.x.float()
            return render_inr(networks, coords, output_offset=self.output_offset)

    def losses(self, output: Data, batch: Batch) -> Tensor:
        images = self.render(output)
        targets = batch[DILATED_KEY].reshape(images.shape).float()
        return (images - targets).square().mean(dim=(1, 2))


def num_target_columns(y: Tensor) -> int:
    """The regression targets per network in a dataset's stacked ``y``."""
    return 1 if y.dim() == 1 else y.size(-1)


def detach_sum(values: Tensor) -> Tensor:
    """The sum of ``values`` in float64, detached (to accumulate metrics without losing precision)."""
    return values.detach().to(torch.float64).sum()


def make_task(name: str, data: TrainingData, targets: Sequence[int] | None, normalization: NormalizeWeights) -> Task:
    """The :class:`Task` called ``name`` (``--task``) on ``data``.

    Args:
        name: ``"classify"``, ``"regress"`` or ``"dilate"``.
        data: the run's splits.
        targets: for regression, the columns of ``y`` to predict.
        normalization: the input normalisation, which editing tasks undo before
            evaluating the edited networks.
    """
    dataset = data.train.dataset
    train_y = dataset.y[data.train.rows]
    if name == "classify":
        counts = torch.bincount(train_y.view(-1).long(), minlength=dataset.num_classes)
        return Classification(dataset.num_classes, int(counts.argmax()))
    if name == "regress":
        train_mean = train_y.view(train_y.size(0), -1).double().mean(dim=0)
        return Regression(num_target_columns(dataset.y), targets, train_mean)
    if name == "dilate":
        if not hasattr(dataset, DILATED_KEY) or "image_shape" not in dataset.meta:
            raise ValueError(
                f"{data.root}: the dataset has no dilation targets (per-network '{DILATED_KEY}' images); "
                "make one with 'wsgraph fit-inrs ... --dilated' for --task dilate"
            )
        return Dilation(normalization, dataset.meta["image_shape"], dataset.meta.get("output_offset", 0.0))
    raise ValueError(f"unknown task {name!r}")


class ReferencePredictor(nn.Module):
    """A model whose output is its task's :meth:`Task.reference_output`, for :func:`evaluate`."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.task = task

    def forward(self, batch: Batch) -> Any:
        return self.task.reference_output(batch)
