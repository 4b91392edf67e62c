"""Domain adaptation by weight editing: editors trained to change zoo classifiers so that
they classify a shifted image domain, against the unedited classifiers and fine-tuning."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from wsgraph.checks import first_repeat
from wsgraph.core.activations import UNKNOWN, canonical_activation
from wsgraph.datasets.dataset import WeightSpaceDataset
from wsgraph.datasets.store import read_meta
from wsgraph.io import refuse_existing_results, refuse_output_inside, write_json
from wsgraph.training.config import FLOAT32_MAX
from wsgraph.zoo.data import load_zoo_data
from wsgraph.zoo.editing import EDITORS, WeightEditing, accuracies, edit_loss, fine_tune, image_batches, make_editor
from wsgraph.zoo.shifts import shift_images

RESULT_JSON = "result.json"
_MOST_CHANNELS, _MOST_DEPTH, _MOST_COUNT = 65_536, 1_000, 2**31 - 1


@dataclass
class AdaptConfig:
    """One adaptation experiment (the flags of ``wsgraph adapt``).

    ``finetune_steps=None`` matches the fine-tuning baseline's cost to the first
    editor's: the fewest SGD steps whose counted FLOPs per network reach one editor
    forward pass per network (:func:`count_flops`).
    """

    data: str
    source: str
    root: str | None = None
    shift: str = "rotate90"
    editors: tuple[str, ...] = ("dwsnet", "mlp")
    hidden_channels: int = 16
    depth: int = 3
    epochs: int = 30
    batch_size: int = 16
    images_per_step: int = 128
    lr: float = 3e-4
    clip_norm: float = 1.0
    finetune_steps: int | None = None
    finetune_batch: int = 32
    finetune_lr: float = 0.1
    seed: int = 0
    test_size: int | None = None
    activation: str | None = None

    def check(self) -> None:
        # Upper bounds past any useful setting, so that a mistyped number is named here rather than
        # failing later in an allocation (or, for --depth, filling the memory until the process is killed).
        counts = {
            "hidden_channels": _MOST_CHANNELS,
            "depth": _MOST_DEPTH,
            "epochs": _MOST_COUNT,
            "batch_size": _MOST_COUNT,
            "images_per_step": _MOST_COUNT,
            "finetune_batch": _MOST_COUNT,
        }
        for name, most in counts.items():
            if not 1 <= getattr(self, name) <= most:
                raise ValueError(f"--{name.replace('_', '-')} must be in 1..{most:,}, got {getattr(self, name)}")
        if self.finetune_steps is not None and not 0 <= self.finetune_steps <= _MOST_COUNT:
            raise ValueError(f"--finetune-steps must be in 0..{_MOST_COUNT:,}, got {self.finetune_steps}")
        if self.test_size is not None and not 1 <= self.test_size <= _MOST_COUNT:
            raise ValueError(f"--test-size must be in 1..{_MOST_COUNT:,}, got {self.test_size}")
        # `float` parses "inf" and "nan"; the optimisers hold their settings as float32, where 1e300 is infinite.
        for name in ("lr", "clip_norm", "finetune_lr"):
            if not 0 < getattr(self, name) <= FLOAT32_MAX:
                raise ValueError(
                    f"--{name.replace('_', '-')} must be a positive number up to {FLOAT32_MAX:.4g}, "
                    f"got {getattr(self, name)}"
                )
        if not self.editors:
            raise ValueError("--editors names no editor")
        repeated = first_repeat(self.editors)
        if repeated is not None:
            raise ValueError(f"--editors names {repeated} twice")
        for name in self.editors:
            if name not in EDITORS:
                raise ValueError(f"unknown editor {name!r}; choose from {', '.join(EDITORS)}")


def count_flops(function, *args) -> int:
    """The floating-point operations torch's flop counter sees in ``function(*args)``
    (matrix products and convolutions; element-wise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        function(*args)
    return int(counter.get_total_flops())


def _summary(values: Tensor) -> dict[str, float]:
    values = values.double()
    return {
        "mean": float(values.mean()),
        "std": float(values.std()) if values.numel() > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _recorded_activations(networks: Batch) -> set[str]:
    recorded = getattr(networks, "activation", None)
    return {recorded} if isinstance(recorded, str) else set(recorded or [UNKNOWN])


def _all_networks(dataset: WeightSpaceDataset, root: str, split: str) -> Batch:
    if len(dataset) == 0:
        raise ValueError(f"{root}: the {split} split has no networks")
    return Batch.from_data_list([dataset[i] for i in range(len(dataset))])


def run_adaptation(config: AdaptConfig, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train every editor of ``config`` on the train members and the shifted training
    images, and score every method on the test members and the shifted test images.

    Returns (and writes to ``out/result.json``) the per-method summary of the test
    members' accuracies (fractions), the costs, and the editors' training losses.
    """
    config.check()
    if out is not None:
        refuse_output_inside(out, config.data, f"--out {out}", f"--data {config.data}")
        refuse_existing_results(out, (RESULT_JSON,))
    images, image_shape, classes = load_zoo_data(config.source, config.root, config.test_size)
    train_set = WeightSpaceDataset(config.data, split="train", log=False)
    test_set = WeightSpaceDataset(config.data, split="test", log=False)
    spec = train_set.architectures[0]
    _check_architecture(config, train_set, image_shape, classes)
    train_images = shift_images(images.train_images, config.shift)
    shifted_test_images = shift_images(images.test_images, config.shift)
    train_labels = images.train_labels.long()
    test_networks = _all_networks(test_set, config.data, "test")
    _check_activation(config, test_networks)
    scorer = _Scorer(
        test_networks, images.test_images, shifted_test_images, images.test_labels.long(), config.activation
    )

    methods: dict[str, dict[str, Any]] = {"unedited": {**scorer.score(test_networks), "flops_per_network": 0}}
    history: dict[str, list[float]] = {}
    for name in config.editors:
        torch.manual_seed(config.seed)
        editing = WeightEditing(make_editor(name, spec, config.hidden_channels, config.depth), train_set.normalization)
        started = time.perf_counter()
        history[name] = train_editor(editing, train_set, train_images, train_labels, config, name=name)
        train_seconds = time.perf_counter() - started
        methods[f"{name} editor"] = {
            **scorer.score_editor(editing),
            "train_seconds": train_seconds,
            "parameters": sum(p.numel() for p in editing.parameters()),
        }
    editor_flops = methods[f"{config.editors[0]} editor"]["flops_per_network"]
    fine_tuning = scorer.score_fine_tuning(train_images, train_labels, config, editor_flops)
    methods[f"fine-tuning, {fine_tuning['steps']} SGD steps"] = fine_tuning
    result = {
        "config": asdict(config),
        "networks": {"train": len(train_set), "test": len(test_set)},
        "images": {"train": int(train_images.size(0)), "test": int(images.test_images.size(0))},
        "architecture": str(spec),
        "methods": methods,
        "editor_train_loss": history,
    }
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        write_json(Path(out) / RESULT_JSON, result)
    return result


def _check_architecture(
    config: AdaptConfig, train_set: WeightSpaceDataset, image_shape: tuple[int, ...], classes: int
) -> None:
    """The zoo is one MLP architecture mapping the images' pixels to their classes."""
    spec = train_set.architectures[0]
    if len(train_set.architectures) != 1 or spec.num_weight_layers < 2:
        raise ValueError(f"{config.data}: expected one MLP architecture of the zoo, got {train_set.architectures}")
    pixels = image_shape[0] * image_shape[1] * image_shape[2]
    if (spec.in_dim, spec.out_dim) != (pixels, classes):
        raise ValueError(
            f"{config.data}: the networks map {spec.in_dim} inputs to {spec.out_dim} outputs, "
            f"but {config.source} has {pixels} pixels and {classes} classes"
        )


def _check_activation(config: AdaptConfig, test_networks: Batch) -> None:
    """A hidden activation is known, from the dataset or ``--activation``, and the two do not disagree."""
    # The editors train on the train members with the same activation: every member's counts.
    recorded = _recorded_activations(test_networks) | set(read_meta(config.data).get("activations") or {})
    known = recorded - {UNKNOWN}
    if config.activation is None and UNKNOWN in recorded and known:
        raise ValueError(
            f"{config.data}: the dataset records the hidden activation of some members only (the others': "
            f"{', '.join(sorted(known))}); convert the zoo again with an activations.json that lists every member"
        )
    if config.activation is None and UNKNOWN in recorded:
        raise ValueError(
            f"{config.data}: the dataset records no hidden activation; convert the zoo with --activation "
            "(e.g. relu) or pass --activation"
        )
    if config.activation is not None and known and known != {canonical_activation(config.activation)}:
        raise ValueError(
            f"--activation {config.activation}: {config.data} records the members' hidden activation as "
            f"{', '.join(sorted(known))}; --activation is only for a dataset that records none"
        )


@dataclass
class _Scorer:
    """Scores a method by the test members it makes: their accuracies on the shifted and the
    source test images, and its cost per member."""

    networks: Batch
    source_images: Tensor
    shifted_images: Tensor
    labels: Tensor
    activation: str | None

    def score(self, networks: Batch) -> dict[str, dict[str, float]]:
        return {
            "shifted_accuracy": _summary(accuracies(networks, self.shifted_images, self.labels, self.activation)),
            "source_accuracy": _summary(accuracies(networks, self.source_images, self.labels, self.activation)),
        }

    def score_editor(self, editing: WeightEditing) -> dict[str, Any]:
        count = self.networks.num_graphs
        editing.eval()
        with torch.no_grad():
            started = time.perf_counter()
            edited = editing(self.networks)
            edit_seconds = time.perf_counter() - started
            flops = count_flops(editing, self.networks)
        return {
            **self.score(edited),
            "flops_per_network": flops // count,
            "seconds_per_network": edit_seconds / count,
        }

    def score_fine_tuning(
        self, images: Tensor, labels: Tensor, config: AdaptConfig, editor_flops: int
    ) -> dict[str, Any]:
        """SGD on each member, ``config.finetune_steps`` steps or by default as many as cost what
        the first editor costs (``editor_flops`` per member)."""
        count = self.networks.num_graphs
        arguments = (images, labels)
        settings = (config.finetune_batch, config.finetune_lr)

        def tune(steps: int) -> Batch:
            generator = torch.Generator().manual_seed(config.seed)
            return fine_tune(self.networks, *arguments, steps, *settings, generator, self.activation)

        step_flops = count_flops(tune, 1) // count
        steps = config.finetune_steps
        if steps is None:
            steps = max(1, math.ceil(editor_flops / step_flops))
        started = time.perf_counter()
        tuned = tune(steps)
        tune_seconds = time.perf_counter() - started
        if not (torch.isfinite(tuned.edge_attr).all() and torch.isfinite(tuned.x).all()):
            raise ValueError(
                f"fine-tuning made weights NaN or infinite; lower --finetune-lr (now {config.finetune_lr:g})"
            )
        return {
            **self.score(tuned),
            "flops_per_network": step_flops * steps,
            "seconds_per_network": tune_seconds / count,
            "steps": steps,
            "step_flops_per_network": step_flops,
        }


def train_editor(
    editing: WeightEditing,
    networks: WeightSpaceDataset,
    images: Tensor,
    labels: Tensor,
    config: AdaptConfig,
    name: str = "",
) -> list[float]:
    """Adam (gradient norm clipped) on the edited classifiers' cross-entropy: per step, a batch of networks and a
    fresh batch of images shared by them. Returns the mean loss of every epoch.

    Raises:
        ValueError: the loss became NaN or infinite (naming the editor ``name`` and ``--lr``), before
            the step that would spread it to every weight.
    """
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(networks, batch_size=config.batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(editing.parameters(), lr=config.lr)
    editing.train()
    losses = []
    for epoch in range(config.epochs):
        total, steps = 0.0, 0
        for batch, index in zip(loader, image_batches(images.size(0), config.images_per_step, len(loader), generator)):
            loss = edit_loss(editing, batch, images[index], labels[index], config.activation)
            if not torch.isfinite(loss):
                raise ValueError(
                    f"the {name or 'weight'} editor's training loss became {loss.item()} in epoch {epoch + 1}; "
                    f"lower --lr (now {config.lr:g})"
                )
            optimizer.zero_grad()
            loss.backward()
            # Large steps kill the edited classifiers' ReLUs (a plateau at chance the editor
            # leaves only slowly), so every step's gradient norm is capped.
            torch.nn.utils.clip_grad_norm_(editing.parameters(), config.clip_norm)
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / steps)
    return losses
