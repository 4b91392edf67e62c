"""The hyper-parameters of every zoo member, drawn from a seeded generator.

Each member's draw depends only on the zoo's seed and the member's number, never on
which other members exist or how they are batched, so a zoo can be grown, sharded or
resumed and member ``i`` is always the same network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from wsgraph.checks import MOST_EPOCHS

# Hidden activations a member can draw (names as wsgraph.core.activations records them).
ACTIVATIONS = ("relu", "tanh", "gelu", "leaky_relu", "sigmoid")
# Weight initialisations: he/glorot normal (fan-in / fan-average scaled), a plain normal,
# and orthogonal matrices; each multiplied by the member's init_scale. Biases start at 0.
INIT_FAMILIES = ("he_normal", "glorot_normal", "normal", "orthogonal")
# The standard deviation of the "normal" family at init_scale 1.
NORMAL_INIT_STD = 0.05


@dataclass(frozen=True)
class SearchSpace:
    """Where the per-member hyper-parameters are drawn from.

    Ranges are closed intervals ``(low, high)``; ``lr`` and ``weight_decay`` and
    ``init_scale`` are drawn log-uniformly, ``dropout`` and ``train_fraction``
    uniformly, ``epochs`` uniformly among the integers, activation and init family
    uniformly among the choices. The defaults are sized so that a 2,000-member MNIST
    CNN zoo trains in under an hour on a 2-core CPU (``benchmarks/bench_zoo.py``).
    """

    lr: tuple[float, float] = (5e-4, 5e-2)
    weight_decay: tuple[float, float] = (1e-8, 1e-2)
    init_scale: tuple[float, float] = (0.3, 3.0)
    dropout: tuple[float, float] = (0.0, 0.5)
    train_fraction: tuple[float, float] = (0.02, 0.1)
    epochs: tuple[int, int] = (1, 4)
    activations: tuple[str, ...] = ("relu", "tanh")
    init_families: tuple[str, ...] = INIT_FAMILIES

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "init_scale"):
            low, high = getattr(self, name)
            if not (0 < low <= high and math.isfinite(high)):
                raise ValueError(f"--{name.replace('_', '-')} range must be 0 < low <= high, got {low}..{high}")
        low, high = self.dropout
        if not 0 <= low <= high < 1:
            raise ValueError(f"--dropout range must be within [0, 1), got {low}..{high}")
        low, high = self.train_fraction
        if not 0 < low <= high <= 1:
            raise ValueError(f"--train-fraction range must be within (0, 1], got {low}..{high}")
        low, high = self.epochs
        if not 1 <= low <= high <= MOST_EPOCHS:
            raise ValueError(f"--epochs range must be 1 <= low <= high <= {MOST_EPOCHS:,}, got {low}..{high}")
        if not self.activations or any(name not in ACTIVATIONS for name in self.activations):
            raise ValueError(f"--activations must name some of {', '.join(ACTIVATIONS)}, got {self.activations}")
        if not self.init_families or any(name not in INIT_FAMILIES for name in self.init_families):
            raise ValueError(f"--init-families must name some of {', '.join(INIT_FAMILIES)}, got {self.init_families}")

    def to_dict(self) -> dict[str, Any]:
        return {key: list(value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> SearchSpace:
        return cls(**{key: tuple(value) for key, value in document.items()})


@dataclass(frozen=True)
class MemberHyperparameters:
    """One member's draw (see :class:`SearchSpace`)."""

    member: int
    lr: float
    weight_decay: float
    init_family: str
    init_scale: float
    dropout: float
    train_fraction: float
    epochs: int
    activation: str
    key: int = field(repr=False)
    """A 31-bit number naming the member's random streams (initialisation, data order, dropout)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def draw_member(space: SearchSpace, seed: int, member: int) -> MemberHyperparameters:
    """Member ``member``'s hyper-parameters in the zoo of ``seed``."""
    rng = np.random.default_rng([int(seed), int(member), 0x200])

    def log_uniform(bounds: tuple[float, float]) -> float:
        low, high = bounds
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))

    return MemberHyperparameters(
        member=int(member),
        lr=log_uniform(space.lr),
        weight_decay=log_uniform(space.weight_decay),
        init_family=space.init_families[int(rng.integers(len(space.init_families)))],
        init_scale=log_uniform(space.init_scale),
        dropout=float(rng.uniform(*space.dropout)),
        train_fraction=float(rng.uniform(*space.train_fraction)),
        epochs=int(rng.integers(space.epochs[0], space.epochs[1] + 1)),
        activation=space.activations[int(rng.integers(len(space.activations)))],
        key=int(rng.integers(1, 2**31 - 1)),
    )
