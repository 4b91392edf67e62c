"""Training checkpoints: written atomically, read back with clear errors, random states included.

A run folder holds ``last.pt`` (everything needed to continue: model, optimiser,
scheduler, gradient scaler, random states, epoch, best metric, early-stopping counter,
per-epoch history) after every epoch, and ``best.pt`` (the model with the best
validation metric, its :class:`~wsgraph.training.registry.ModelSpec` and the
configuration) whenever validation improves. Both hold the input normalisation
(``normalization``: the train split's per-layer statistics as tensors), without which
the stored model would silently mispredict on raw networks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from wsgraph.core.network_files import load_tensors_only
from wsgraph.deprecation import renamed
from wsgraph.errors import load_error_reason, shown_path
from wsgraph.io import atomic_write
from wsgraph.training.config import TrainConfig

FORMAT = "wsgraph-train-checkpoint"
VERSION = 1
LAST, BEST = "last.pt", "best.pt"
# The class or target names of the model's outputs (checkpoints before 2026-12 lack them).
OUTPUT_NAMES = "output_names"
# How an editing run's INRs show their images: {"image_shape": [H, W, C], "output_offset": float}
# (checkpoints before 2026-12 lack it; it is then read from the training data's meta.json).
IMAGE_RENDERING = "image_rendering"


def save_run_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, lists and dicts) to ``path`` atomically."""
    document = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda handle: torch.save(document, handle))


def load_run_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_run_checkpoint` (safely: tensors and plain data only).

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if the file is not a wsgraph training checkpoint or lacks ``required`` entries.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: a folder, not a checkpoint (a run folder holds {LAST} and {BEST})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        document = load_tensors_only(path)
    except Exception as error:
        raise ValueError(
            f"{shown_path(path)}: not a readable checkpoint ({type(error).__name__}: {load_error_reason(error)})"
        ) from error
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{path}: not a wsgraph training checkpoint")
    if document.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {document.get('version')}, this wsgraph reads {VERSION}")
    require_entries(document, path, required)
    return document


def require_entries(checkpoint: dict[str, Any], path: str | os.PathLike, required: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming ``path`` if the checkpoint read from it lacks any of ``required``."""
    missing = [key for key in required if key not in checkpoint]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}")


def read_run_checkpoint_or_none(path: str | os.PathLike) -> dict[str, Any] | None:
    """What :func:`load_run_checkpoint` reads from ``path``, or ``None`` where it is not a
    training checkpoint (another kind of file, or none). The file is first looked at with its
    tensors mapped, not read, so that a large file of another kind costs little; a training
    checkpoint is then read in full (mapped tensors would fault if the file changed while in use)."""
    if not Path(path).is_file():
        # A FIFO or a device would block or never end the read; none is a checkpoint.
        return None
    try:
        peek = load_tensors_only(path, mmap=True)
    except Exception:
        # Not torch's zip format, not readable, or on a filesystem that cannot map it: a plain read tells.
        pass
    else:
        if not isinstance(peek, dict) or peek.get("format") != FORMAT:
            return None
    try:
        return load_run_checkpoint(path)
    except (OSError, ValueError):
        return None


def not_resumable(path: str | os.PathLike, part: str, reason: str) -> ValueError:
    """The error for a ``last.pt`` whose ``part`` cannot be restored: one line, naming the file."""
    return ValueError(f"{shown_path(path)}: not a resumable run checkpoint ({part}: {reason})")


def stored_config(path: str | os.PathLike, checkpoint: dict[str, Any]) -> TrainConfig:
    """The settings a checkpoint read from ``path`` stores, checked (:meth:`TrainConfig.from_dict`).

    Raises:
        ValueError: naming ``path`` if they are not settings a run writes.
    """
    try:
        return TrainConfig.from_dict(checkpoint["config"])
    except ValueError as error:
        raise not_resumable(path, "config", str(error)) from None


def random_state(augment_generator: torch.Generator) -> dict[str, Any]:
    """This process's random states: torch's CPU and CUDA generators (dropout, initialisation)
    and the generator that draws augmentations. Batch order needs no state: it is drawn
    afresh from the seed and the epoch."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "augment": augment_generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any], augment_generator: torch.Generator) -> None:
    """Undo everything drawn since :func:`random_state` returned ``state``."""
    torch.set_rng_state(state["torch"])
    augment_generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


save_checkpoint = renamed(
    save_run_checkpoint,
    "wsgraph.training.checkpointing.save_checkpoint",
    "wsgraph.training.run_checkpoints.save_run_checkpoint",
)
load_checkpoint = renamed(
    load_run_checkpoint,
    "wsgraph.training.checkpointing.load_checkpoint",
    "wsgraph.training.run_checkpoints.load_run_checkpoint",
)
