"""Pointwise and per-object building blocks on :class:`WeightSpaceFeatures`.

Pointwise maps and per-object normalisation commute with hidden-neuron permutations,
so they keep a stack of DWS layers equivariant.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional

from wsgraph.layers.structure import WeightSpaceFeatures

NORMS = ("layer", "batch")


class WeightSpaceActivation(nn.Module):
    """Apply an elementwise activation (a module such as ``nn.ReLU()``) to every weight and bias."""

    def __init__(self, activation: nn.Module) -> None:
        super().__init__()
        self.activation = activation

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return features.map(self.activation)


class WeightSpaceDropout(nn.Module):
    """Elementwise dropout on every weight and bias feature (equivariant in distribution)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        if self.p == 0.0 or not self.training:
            return features
        return features.map(lambda tensor: functional.dropout(tensor, self.p, training=True))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class WeightSpaceNorm(nn.Module):
    r"""Normalisation over channels with separate parameters per weight layer and bias layer.

    ``mode="layer"``: every weight and bias is normalised over its channels
    (:class:`~torch.nn.LayerNorm`), with its own affine map per object; independent of
    the rest of the batch. ``mode="batch"``: per-channel statistics over all entries of
    an object in the batch (:class:`~torch.nn.BatchNorm1d`), separate running statistics
    for every weight layer and every bias layer.

    Args:
        channels (int): feature channels :math:`C`.
        num_layers (int): the number :math:`M` of weight layers.
        mode (str): ``"layer"`` or ``"batch"``.

    Shapes:
        - **input / output:** :class:`WeightSpaceFeatures` with :math:`C` channels.
    """

    def __init__(self, channels: int, num_layers: int, mode: str = "layer") -> None:
        super().__init__()
        if mode not in NORMS:
            raise ValueError(f"unknown norm {mode!r}; choose from {NORMS}")
        if mode == "layer" and channels < 2:
            # Normalising one value over its channels leaves 0: every output would be the norm's bias.
            raise ValueError(
                f"layer norm over {channels} channel erases every feature; use at least 2 channels, or mode='batch'"
            )
        self.mode = mode
        factory = (lambda: nn.LayerNorm(channels)) if mode == "layer" else (lambda: nn.BatchNorm1d(channels))
        self.weight_norms = nn.ModuleList(factory() for _ in range(num_layers))
        self.bias_norms = nn.ModuleList(factory() for _ in range(num_layers))

    def reset_parameters(self) -> None:
        for norm in (*self.weight_norms, *self.bias_norms):
            norm.reset_parameters()

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return WeightSpaceFeatures(
            [norm(w) for norm, w in zip(self.weight_norms, features.weights)],
            [norm(b) for norm, b in zip(self.bias_norms, features.biases)],
        )

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def residual(
    features: WeightSpaceFeatures, update: WeightSpaceFeatures, scale: float | Tensor = 1.0
) -> WeightSpaceFeatures:
    """``features + scale * update``, object by object."""
    return WeightSpaceFeatures(
        [w + scale * u for w, u in zip(features.weights, update.weights)],
        [b + scale * u for b, u in zip(features.biases, update.biases)],
    )
