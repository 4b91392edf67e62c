"""Pointwise and per-object building blocks on :class:`WeightSpaceFeatures`.

Pointwise maps and per-object normalisation commute with hidden-neuron permutations,
so they keep a stack of DWS layers equivariant.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch import distributed as dist
from torch.distributed.nn.functional import all_reduce
from torch.nn import functional

from wsgraph.deprecation import renamed_kwargs
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


class GlobalBatchNorm(nn.BatchNorm1d):
    """:class:`~torch.nn.BatchNorm1d` whose training statistics cover the global batch under ``torchrun``.

    In one process it is exactly ``BatchNorm1d``. With several processes it sums the
    per-channel count, sum and sum of squares over all of them with a differentiable
    all-reduce, on CPU (gloo) as on GPU (torch's ``SyncBatchNorm`` needs a GPU), so a
    distributed step computes what one process would on the whole batch.

    Statistics are computed in float32 (float64 inputs: float64) whatever the input's
    dtype or autocast: in float16 the count of a large batch (65,504 and up) and the
    squares of entries above 256 overflow. The output has the input's dtype.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and _global_batch()):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return self._global_batch_forward(x)

    def _global_batch_forward(self, x: Tensor) -> Tensor:
        values = x.to(torch.promote_types(x.dtype, torch.float32))
        channels = values.size(-1)
        count = torch.full((1,), float(values.size(0)), dtype=values.dtype, device=values.device)
        totals = all_reduce(torch.cat([values.sum(0), values.square().sum(0), count]))
        total = totals[-1]
        mean = totals[:channels] / total
        variance = (totals[channels : 2 * channels] / total - mean.square()).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
                unbiased = variance * total / (total - 1).clamp_min(1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), momentum)
                self.num_batches_tracked += 1
        normalised = (values - mean) * torch.rsqrt(variance + self.eps)
        if self.affine:
            normalised = normalised * self.weight.to(normalised.dtype) + self.bias.to(normalised.dtype)
        return normalised.to(x.dtype)


def _global_batch() -> bool:
    """Whether batch statistics span several processes (``torchrun``)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@renamed_kwargs(num_layers="num_weight_layers")
class WeightSpaceNorm(nn.Module):
    r"""Normalisation over channels with separate parameters per weight layer and bias layer.

    ``mode="batch"`` (what DWSNet uses): per-channel statistics over all entries of an
    object in the batch (:class:`GlobalBatchNorm`), separate running statistics for every
    weight layer and every bias layer; under ``torchrun`` the statistics are those of the
    global batch. ``mode="layer"``: every weight and bias is normalised over its own
    channels (:class:`~torch.nn.LayerNorm`), with its own affine map per object,
    independent of the rest of the batch. Note that this erases the scale of each entry's
    feature vector: after a first DWS layer from one input channel, an edge's features
    are nearly its weight times a fixed vector, so layer norm leaves little more than the
    weight's sign.

    Args:
        channels (int): feature channels :math:`C`.
        num_weight_layers (int): the number :math:`M` of weight layers.
        mode (str): ``"layer"`` or ``"batch"``.

    Shapes:
        - **input / output:** :class:`WeightSpaceFeatures` with :math:`C` channels.
    """

    def __init__(self, channels: int, num_weight_layers: int, mode: str = "batch") -> None:
        super().__init__()
        if mode not in NORMS:
            raise ValueError(f"unknown norm {mode!r}; choose from {NORMS}")
        if mode == "layer" and channels < 2:
            # Normalising one value over its channels leaves 0: every output would be the norm's bias.
            raise ValueError(
                f"layer norm over {channels} channel erases every feature; use at least 2 channels, or mode='batch'"
            )
        self.mode = mode
        factory = (lambda: nn.LayerNorm(channels)) if mode == "layer" else (lambda: GlobalBatchNorm(channels))
        self.weight_norms = nn.ModuleList(factory() for _ in range(num_weight_layers))
        self.bias_norms = nn.ModuleList(factory() for _ in range(num_weight_layers))

    def reset_parameters(self) -> None:
        for norm in (*self.weight_norms, *self.bias_norms):
            norm.reset_parameters()

    def forward(self, features: WeightSpaceFeatures) -> WeightSpaceFeatures:
        if self.mode == "batch" and self.training and not _global_batch():
            for kind, values in (("weights", features.weights), ("biases", features.biases)):
                for layer, entries in enumerate(values, start=1):
                    if entries.size(0) < 2:
                        raise ValueError(
                            f"batch norm cannot train on one value per channel, and layer {layer}'s {kind} have "
                            f"{entries.size(0)} in this batch (a batch of one network); train on two or more "
                            "networks, call eval(), or use norm='layer'"
                        )
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
