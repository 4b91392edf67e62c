"""A trained model that carries its input normalisation: raw networks in, predictions out."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.datasets.transforms import LayerStatistics, NormalizeWeights

_STATISTICS = ("weight_mean", "weight_std", "bias_mean", "bias_std")


class NormalizedModel(nn.Module):
    """``model`` preceded by the per-layer standardisation it was trained behind.

    Training feeds every model weights normalised with the train split's
    :class:`~wsgraph.datasets.transforms.LayerStatistics` (and cast to float32); this module does
    the same to the networks it is given, so it takes raw networks, as stored in a dataset
    or converted from checkpoints. The statistics are buffers: they follow ``.to(device)``
    and are part of ``state_dict()``. The caller's batch is left unchanged.

    For weight-editing models (``--task dilate``) the output, a batch of edited networks,
    is mapped back to the raw scale with the exact inverse of the normalisation.

    Args:
        model: the trained model, which expects normalised inputs.
        statistics: the normalisation statistics of its training data.
        edits: whether ``model`` returns edited networks rather than per-network outputs.
        spec: the settings ``model`` was built from, kept as ``self.spec`` (optional).
    """

    weight_mean: Tensor
    weight_std: Tensor
    bias_mean: Tensor
    bias_std: Tensor

    def __init__(self, model: nn.Module, statistics: LayerStatistics, edits: bool = False, spec: Any = None) -> None:
        super().__init__()
        self.model = model
        self.edits = edits
        self.spec = spec
        for name, value in statistics.to_dict().items():
            self.register_buffer(name, value.detach().clone().float())

    @property
    def statistics(self) -> LayerStatistics:
        return LayerStatistics(**{name: getattr(self, name) for name in _STATISTICS})

    @property
    def normalization(self) -> NormalizeWeights:
        return NormalizeWeights(self.statistics)

    def forward(self, batch: Data) -> Any:
        batch = copy.copy(batch)
        batch.x, batch.edge_attr = batch.x.float(), batch.edge_attr.float()
        normalization = self.normalization
        output = self.model(normalization(batch))
        return normalization.inverse(output) if self.edits else output


def statistics_to_dict(statistics: LayerStatistics) -> dict[str, Tensor]:
    """The statistics as plain CPU tensors, for a checkpoint that ``torch.load(weights_only=True)`` reads."""
    return {name: value.detach().cpu().float() for name, value in statistics.to_dict().items()}


def statistics_from_dict(document: Any, source: str) -> LayerStatistics:
    """The statistics a checkpoint stores, with an error naming ``source`` if they are damaged."""
    if not isinstance(document, dict) or set(document) != set(_STATISTICS):
        raise ValueError(f"{source}: the stored input normalisation is not {', '.join(_STATISTICS)}")
    if not all(isinstance(document[name], Tensor) for name in _STATISTICS):
        raise ValueError(f"{source}: the stored input normalisation holds non-tensors")
    try:
        statistics = LayerStatistics(**{name: document[name].float() for name in _STATISTICS})
    except ValueError as error:
        raise ValueError(f"{source}: the stored input normalisation is invalid ({error})") from error
    if not all(bool(torch.isfinite(value).all()) for value in statistics.to_dict().values()):
        raise ValueError(f"{source}: the stored input normalisation is not finite")
    return statistics
