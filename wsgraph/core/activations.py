"""Elementwise activations by name, so that a graph can record and rebuild them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import Tensor, nn


class Sine(nn.Module):
    r"""The SIREN activation :math:`\sin(\omega_0 x)` (Sitzmann et al., 2020)."""

    def __init__(self, omega_0: float = 30.0) -> None:
        super().__init__()
        self.omega_0 = float(omega_0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * x)

    def extra_repr(self) -> str:
        return f"omega_0={self.omega_0}"


_SIMPLE: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
}
_SINE = re.compile(r"^sine\(([-+0-9.eE]+)\)$")
# The names a graph records for the activations above, in their default settings.
SIMPLE_ACTIVATION_NAMES: tuple[str, ...] = tuple(_SIMPLE)
# wsgraph.core.network_files lets a saved module use exactly these activations: the ones a graph can record.
ACTIVATION_CLASSES: tuple[type[nn.Module], ...] = (*_SIMPLE.values(), Sine)


def make_activation(name: str) -> nn.Module:
    """The module for a recorded activation name, e.g. ``"relu"`` or ``"sine(30.0)"``."""
    if name in _SIMPLE:
        return _SIMPLE[name]()
    match = _SINE.match(name)
    if match:
        try:
            omega_0 = float(match.group(1))
        except ValueError:  # "sine(1.2.3)", "sine(e)": the pattern lets them through
            omega_0 = math.nan
        if math.isfinite(omega_0) and omega_0 != 0:
            return Sine(omega_0)
        raise ValueError(f"activation {name!r}: omega_0 must be a finite number other than 0")
    known = ", ".join([*_SIMPLE, "sine(<omega_0>)"])
    raise ValueError(f"unknown activation {name!r}; known: {known}")


def check_activation_argument(activation: object, function: str) -> None:
    """Raise a ``TypeError`` naming ``function`` unless ``activation`` is ``None``, a name or a module
    instance (the class ``nn.ReLU`` itself, or a number, failed inside torch naming nothing)."""
    if activation is None or isinstance(activation, (str, nn.Module)):
        return
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        raise TypeError(
            f"{function}: activation is the class {activation.__name__}; pass an instance, {activation.__name__}()"
        )
    raise TypeError(
        f"{function}: activation must be a name such as 'relu' or a module such as nn.ReLU(), got {activation!r}"
    )


def canonical_activation(name: str) -> str:
    """The recorded form of an activation name (``"sine(30)"`` -> ``"sine(30.0)"``); raises like :func:`make_activation`."""
    module = make_activation(name)
    return sine_name(module.omega_0) if isinstance(module, Sine) else name


def sine_name(omega_0: float) -> str:
    return f"sine({float(omega_0)})"


UNKNOWN = "unknown"


def matching_activations(pre: Tensor, post: Tensor, omega_candidates: list[float]) -> list[str]:
    """Names of the known elementwise functions that map ``pre`` to ``post``, most specific first.

    Several can match (``relu`` and ``identity`` agree on positive inputs), so callers
    intersect the matches of every layer.
    """
    pre, post = pre.detach(), post.detach()
    names = [name for name, factory in _SIMPLE.items() if name != "identity" and _close(factory()(pre), post)]
    names += [sine_name(w) for w in omega_candidates if math.isfinite(w) and _close(torch.sin(w * pre), post)]
    if _close(pre, post):
        names.append("identity")
    return names


def pooled_matching_activations(pre: Tensor, post: Tensor, omega_candidates: list[float]) -> list[str]:
    """Names of the known elementwise functions whose spatial mean maps ``pre`` ``[n, C, H, W]`` to ``post`` ``[n, C]``.

    What a CNN's global average pooling after its last activation computes.
    """
    pre, post = pre.detach(), post.detach()

    def pooled(values: Tensor) -> Tensor:
        return values.mean(dim=(-2, -1))

    names = [name for name, factory in _SIMPLE.items() if name != "identity" and _close(pooled(factory()(pre)), post)]
    names += [sine_name(w) for w in omega_candidates if math.isfinite(w) and _close(pooled(torch.sin(w * pre)), post)]
    if _close(pooled(pre), post):
        names.append("identity")
    return names


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)
