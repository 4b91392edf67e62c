"""The check that a batch holds networks of the signature a module was built for."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsgraph.layers.structure import WeightSpaceLayout


def check_signature(owner: nn.Module, layout: WeightSpaceLayout) -> None:
    """Raise a ``ValueError`` unless the batch's networks have the signature ``(M, d_0, d_M)`` that ``owner``
    (with ``num_weight_layers``, ``in_dim``, ``out_dim``) was built for: other networks may fit its shapes
    by chance and give results without meaning."""
    built = (owner.num_weight_layers, owner.in_dim, owner.out_dim)
    got = (layout.num_weight_layers, layout.in_dim, layout.out_dim)
    if got != built:
        raise ValueError(f"{type(owner).__name__} was built for networks with (M, d_0, d_M) = {built}, got {got}")


def check_features(owner: nn.Module, x: Tensor, edge_attr: Tensor, channels: int) -> None:
    """Raise a ``ValueError`` unless biases ``x`` and weights ``edge_attr`` carry the ``channels`` feature
    channels ``owner`` was built for, in its parameters' dtype (outside autocast, which casts them itself)."""
    name = type(owner).__name__
    for key, values in (("x", x), ("edge_attr", edge_attr)):
        if values.dim() != 2 or values.size(-1) != channels:
            raise ValueError(
                f"{name} was built for {channels} feature channels, got {key} of shape {list(values.shape)}"
            )
    dtype = next(owner.parameters()).dtype
    if not torch.is_autocast_enabled(x.device.type) and (x.dtype != dtype or edge_attr.dtype != dtype):
        raise ValueError(
            f"{name}'s parameters are {dtype}, the batch's biases {x.dtype} and weights {edge_attr.dtype}; "
            "convert the model or the batch with .to(...)"
        )
