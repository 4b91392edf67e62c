"""Short training runs shared by the tests of several models."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def train_briefly(data: Path, out: Path, model: str, **settings: Any) -> dict[str, Any]:
    """``wsgraph train`` with small settings (5 epochs of 16 networks, lr 2e-3, no early stop) on CPU."""
    from wsgraph.training import TrainConfig, train

    defaults = dict(epochs=5, batch_size=16, lr=2e-3, patience=0, progress=False, device="cpu")
    return train(TrainConfig(data=str(data), model=model, out=str(out), **{**defaults, **settings}))
