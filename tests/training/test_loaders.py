"""Epoch plans, the stacked loader against PyG's loader, and rank sharding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.training import train
from wsgraph.training.data import open_training_data
from wsgraph.training.distributed import DistributedContext
from wsgraph.training.loaders import EpochPlan, GraphLoader, StackedLoader
from wsgraph.training.run_checkpoints import load_run_checkpoint

from .conftest import WIDTHS, tiny_config

CPU = torch.device("cpu")


def context(rank: int = 0, world_size: int = 1) -> DistributedContext:
    return DistributedContext(rank, world_size, rank, CPU)


def test_plan_is_a_fresh_permutation_per_epoch_and_repeatable() -> None:
    plan = EpochPlan(50, 16, shuffle=True, seed=3, context=context())
    first, second = plan.batches(0), plan.batches(1)
    assert sorted(torch.cat(first).tolist()) == list(range(50))
    assert [b.numel() for b in first] == plan.global_sizes() == [16, 16, 16, 2]
    assert not torch.equal(torch.cat(first), torch.cat(second))
    assert all(torch.equal(a, b) for a, b in zip(first, plan.batches(0)))
    assert len(plan) == 4


def test_trailing_batch_too_small_to_share_is_dropped() -> None:
    plan = EpochPlan(49, 16, shuffle=True, seed=0, context=context(0, 2))
    assert plan.global_sizes() == [16, 16, 16]


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_every_global_batch(world_size: int) -> None:
    plans = [EpochPlan(40, 12, True, 7, context(rank, world_size)) for rank in range(world_size)]
    single = EpochPlan(40, 12, True, 7, context())
    steps = len(plans[0])
    assert steps == (3 if world_size == 3 else 4)  # 4 networks cannot give 3 processes two each
    for step, global_batch in enumerate(single.batches(5)[:steps]):
        parts = [plan.batches(5)[step] for plan in plans]
        assert torch.equal(torch.cat(parts), global_batch)
        assert max(p.numel() for p in parts) - min(p.numel() for p in parts) <= 1


def test_evaluation_parts_cover_every_network_once() -> None:
    parts = [torch.cat(EpochPlan(23, 4, False, 0, context(rank, 3)).batches(0)) for rank in range(3)]
    assert torch.cat(parts).tolist() == list(range(23))


def test_an_empty_split_has_no_batches() -> None:
    assert EpochPlan(0, 4, False, 0, context()).batches(0) == [] and len(EpochPlan(0, 4, False, 0, context())) == 0
    # A process whose part of a small split is empty gets no batch, not an empty one.
    assert EpochPlan(1, 4, False, 0, context(1, 2)).batches(0) == []


@pytest.mark.parametrize("loader", ["stacked", "pyg"])
def test_a_dataset_without_test_networks_trains_and_reports_no_test_metric(tmp_path: Path, loader: str) -> None:
    from .conftest import write_store

    root = write_store(tmp_path / "no-test", test_split=False)
    result = train(tiny_config(root, tmp_path / "run", "dwsnet", loader=loader, epochs=1))
    assert result["test_metric"] is None and result["test_loss"] is None
    assert result["best_val_metric"] is not None


def test_stacked_batches_equal_pyg_batches(classification_root: Path) -> None:
    data = open_training_data(classification_root, "classify", log=False)
    split = data.train
    plan = EpochPlan(len(split), 8, True, 0, context())
    stacked = StackedLoader(split, WeightSpaceSpec(WIDTHS), plan, CPU)
    graphs = GraphLoader(split, plan, CPU)
    for loader in (stacked, graphs):
        loader.set_epoch(2)
    pairs = list(zip(stacked, graphs))
    assert len(pairs) == len(plan) == 5
    for ours, theirs in pairs:
        for key in (
            "x",
            "edge_attr",
            "edge_index",
            "node_layer",
            "node_index",
            "edge_layer",
            "layer_widths",
            "batch",
            "y",
        ):
            assert torch.equal(ours[key], theirs[key]), key
        assert torch.equal(ours.has_bias, theirs.has_bias)
        assert ours.num_graphs == theirs.num_graphs


def test_stacked_batches_do_not_share_values(classification_root: Path) -> None:
    data = open_training_data(classification_root, "classify", log=False)
    loader = StackedLoader(data.train, WeightSpaceSpec(WIDTHS), EpochPlan(len(data.train), 8, True, 0, context()), CPU)
    first, second = list(loader)[:2]
    assert first.edge_index is second.edge_index  # one structure per batch size...
    assert not torch.equal(first.edge_attr, second.edge_attr)  # ...with each batch's own values


def test_both_loaders_train_identically(classification_root: Path, tmp_path: Path) -> None:
    states = []
    for loader in ("stacked", "pyg"):
        train(tiny_config(classification_root, tmp_path / loader, "dwsnet", epochs=2, loader=loader, dropout=0.1))
        states.append(load_run_checkpoint(tmp_path / loader / "last.pt")["model"])
    assert all(torch.equal(states[0][name], states[1][name]) for name in states[0])
