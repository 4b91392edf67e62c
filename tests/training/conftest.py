"""Tiny dataset roots written by the tests: random small networks with learnable labels."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from wsgraph.datasets.store import SPLITS, Shard, contents, write_meta, write_shard
from wsgraph.training import TrainConfig

WIDTHS = (2, 8, 8, 1)
NUM_CLASSES = 3


def write_store(
    root: Path,
    count: int = 60,
    widths: tuple[int, ...] = WIDTHS,
    task: str = "classification",
    seed: int = 0,
    extras: dict[str, torch.Tensor] | None = None,
    shards: int = 1,
    record: bool = False,
    test_split: bool = True,
) -> Path:
    """Write ``count`` random networks of ``widths`` whose labels depend on their weights.

    Class ``c`` networks have weights drawn around ``c - 1``, so every model (invariant or
    not) can learn the label; regression targets are each network's mean first-layer
    weight and mean last-layer bias. Splits: 60% train, 20% val, 20% test (40% val and no
    test without ``test_split``). ``record``
    writes the shard count and split sizes into meta.json, as the dataset writers do.
    """
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % NUM_CLASSES
    shift = (labels.float() - 1.0).view(-1, 1, 1)
    weights = [torch.randn(count, d_out, d_in, generator=generator) * 0.5 + shift for d_in, d_out in pairwise(widths)]
    biases = [torch.randn(count, d_out, generator=generator) * 0.5 + shift.view(-1, 1) for d_out in widths[1:]]
    if task == "classification":
        y = labels
    else:
        y = torch.stack([weights[0].mean(dim=(1, 2)), biases[-1].mean(dim=1)], dim=1)
    split = torch.zeros(count, dtype=torch.uint8)
    split[int(0.6 * count) :] = SPLITS.index("val")
    if test_split:
        split[int(0.8 * count) :] = SPLITS.index("test")
    order = torch.randperm(count, generator=generator)
    split = split[order]
    extras = extras or {}
    for number, rows in enumerate(torch.arange(count).tensor_split(shards)):
        shard = Shard(
            [w[rows] for w in weights],
            [b[rows] for b in biases],
            y[rows],
            split[rows],
            rows,
            {key: value[rows] for key, value in extras.items()},
        )
        write_shard(root, number, shard)
    meta = {"kind": "test", "task": task, "widths": list(widths), "activation": "relu"}
    if task == "classification":
        meta["num_classes"] = NUM_CLASSES
    if record:
        meta.update(contents(split, shards))
    write_meta(root, meta)
    return root


@pytest.fixture
def classification_root(tmp_path: Path) -> Path:
    return write_store(tmp_path / "classes")


@pytest.fixture
def regression_root(tmp_path: Path) -> Path:
    return write_store(tmp_path / "targets", task="regression")


def tiny_config(data: Path, out: Path, model: str, **settings) -> TrainConfig:
    """Settings small enough for a test to train in about a second."""
    defaults = dict(
        epochs=3, batch_size=8, lr=1e-2, hidden_channels=8, depth=2, patience=0, progress=False, device="cpu"
    )
    return TrainConfig(data=str(data), model=model, out=str(out), **{**defaults, **settings})
