"""The check that a batch holds networks of the signature a module was built for."""

from __future__ import annotations

from torch import nn

from wsgraph.layers.structure import WeightSpaceLayout


def check_signature(owner: nn.Module, layout: WeightSpaceLayout) -> None:
    """Raise a ``ValueError`` unless the batch's networks have the signature ``(M, d_0, d_M)`` that ``owner``
    (with ``num_weight_layers``, ``in_dim``, ``out_dim``) was built for: other networks may fit its shapes
    by chance and give results without meaning."""
    built = (owner.num_weight_layers, owner.in_dim, owner.out_dim)
    got = (layout.num_weight_layers, layout.in_dim, layout.out_dim)
    if got != built:
        raise ValueError(f"{type(owner).__name__} was built for networks with (M, d_0, d_M) = {built}, got {got}")
