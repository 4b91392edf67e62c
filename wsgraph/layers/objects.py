"""The objects of an MLP weight space (weights and biases) and how each is folded.

The characterisation (docs/layers.md) folds the never-permuted input and output neurons into
channels. For a signature ``(M, d_0, d_M)`` this module says, once, which permuted
layers index each object and by how much its channels are multiplied, so that the
layer, the readout and the tests share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightSpaceObject:
    """A weight matrix ``W_l`` or bias vector ``b_l`` after folding fixed neurons into channels.

    Attributes:
        kind: ``"weight"`` or ``"bias"``.
        layer: ``l`` (``1..M``).
        permuted: the hidden layers that index the object, a subset of ``{l-1, l}``.
        fold: how many fixed (input/output) neuron indices are folded into each channel.
    """

    kind: str
    layer: int
    permuted: tuple[int, ...]
    fold: int

    @property
    def name(self) -> str:
        return f"{'W' if self.kind == 'weight' else 'b'}{self.layer}"


def weight_space_objects(num_weight_layers: int, in_dim: int, out_dim: int) -> list[WeightSpaceObject]:
    """``W_1..W_M`` then ``b_1..b_M`` of the signature ``(M, d_0, d_M)``."""
    if num_weight_layers < 1 or in_dim < 1 or out_dim < 1:
        raise ValueError(f"invalid signature (M={num_weight_layers}, d_0={in_dim}, d_M={out_dim})")
    hidden = set(range(1, num_weight_layers))
    objects = []
    for layer in range(1, num_weight_layers + 1):
        permuted = tuple(k for k in (layer - 1, layer) if k in hidden)
        fold = (in_dim if layer == 1 else 1) * (out_dim if layer == num_weight_layers else 1)
        objects.append(WeightSpaceObject("weight", layer, permuted, fold))
    for layer in range(1, num_weight_layers + 1):
        permuted = (layer,) if layer in hidden else ()
        objects.append(WeightSpaceObject("bias", layer, permuted, out_dim if layer == num_weight_layers else 1))
    return objects


def equivariant_dimension(num_weight_layers: int, in_dim: int, out_dim: int) -> tuple[int, int]:
    r"""``(linear, constant)`` dimensions of the equivariant affine maps with one channel.

    :math:`\sum_{X,Y} 2^{|I(X) \cap I(Y)|} f(X) f(Y)` and :math:`\sum_Y f(Y)` (docs/layers.md),
    valid when every hidden width is at least 2.
    """
    objects = weight_space_objects(num_weight_layers, in_dim, out_dim)
    linear = sum(2 ** len(set(x.permuted) & set(y.permuted)) * x.fold * y.fold for x in objects for y in objects)
    return linear, sum(y.fold for y in objects)
