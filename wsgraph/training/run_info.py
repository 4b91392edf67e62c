"""What a training checkpoint holds (``wsgraph info`` on a ``best.pt``, ``last.pt`` or run folder):
the model, what it predicts, the data it was trained on, how far training got and with which
settings. Read with :func:`~wsgraph.training.run_checkpoints.load_run_checkpoint`, which
unpickles nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from wsgraph.checks import is_count, is_number
from wsgraph.errors import shown_path
from wsgraph.training.predict import predictor_from_checkpoint
from wsgraph.training.registry import FLAT_MODELS
from wsgraph.training.run_checkpoints import BEST, LAST, load_run_checkpoint, require_entries

# The settings that say how the model was trained, in the order shown.
_TRAINING_SETTINGS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "amsgrad",
    "schedule",
    "warmup_steps",
    "clip_grad_norm",
    "dropout",
    "augment",
    "patience",
    "max_train",
    "seed",
)


def run_checkpoint_file(path: str | os.PathLike) -> Path | None:
    """The checkpoint ``wsgraph info PATH`` describes for a run: ``path`` itself, or a run
    folder's ``best.pt`` (its ``last.pt`` while no epoch has been validated); ``None`` for a
    folder that holds neither."""
    path = Path(path)
    if not path.is_dir():
        return path
    return next((path / name for name in (BEST, LAST) if (path / name).is_file()), None)


def describe_run_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    """The facts ``wsgraph info`` prints about a training checkpoint, as a JSON-ready dict.

    Args:
        path: the checkpoint file.
        checkpoint: what :func:`~wsgraph.training.run_checkpoints.load_run_checkpoint`
            read from it, if it has been read already.

    Raises:
        ValueError: the file is not a readable wsgraph training checkpoint, or the model it
            stores does not match its settings.
    """
    if checkpoint is None:
        checkpoint = load_run_checkpoint(path)
    require_entries(checkpoint, path, ("config", "model_spec", "model"))
    predictor = predictor_from_checkpoint(checkpoint, path)
    spec, config = predictor.model.spec, checkpoint["config"]
    last = "optimizer" in checkpoint
    history = checkpoint.get("history")
    metric = checkpoint.get("metric") or _metric_of(history)
    info: dict[str, Any] = {
        "path": str(path),
        "kind": "last" if last else "best",
        "model": spec.name,
        "parameters": sum(p.numel() for p in predictor.model.model.parameters()),
        "options": {key: value for key, value in spec.options},
        "probe_features": spec.probe_features,
        "task": spec.task,
        "outputs": predictor.output_names if spec.task != "dilate" else None,
        "signature": dict(zip(("num_weight_layers", "in_dim", "out_dim"), spec.signature)),
        "widths": None if spec.widths is None else list(spec.widths),
        "data": config.get("data") if isinstance(config, dict) else None,
        "data_fingerprint": checkpoint.get("data_fingerprint"),
        "epoch": checkpoint.get("epoch"),
        "metric": metric,
        "settings": {key: config.get(key) for key in _TRAINING_SETTINGS} if isinstance(config, dict) else {},
    }
    if last:
        info.update(best_epoch=checkpoint.get("best_epoch"), best_val_metric=checkpoint.get("best_metric"))
        info.update(stopped_early=checkpoint.get("stopped_early"), wall_seconds=checkpoint.get("wall_seconds"))
    else:
        info["val_metric"] = checkpoint.get("val_metric")
    return info


def _metric_of(history: Any) -> str | None:
    """The validation metric's name, from a ``last.pt``'s per-epoch history (``val_<metric>``)."""
    if not isinstance(history, list) or not history or not isinstance(history[-1], dict):
        return None
    names = [key.removeprefix("val_") for key in history[-1] if key.startswith("val_") and key != "val_loss"]
    return names[0] if names else None


def format_run_info(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`describe_run_checkpoint`'s dict."""
    kind = "the best model" if info["kind"] == "best" else "the last epoch's state (resumable)"
    options = ", ".join(f"{key}={value}" for key, value in info["options"].items())
    model = f"{info['model']}, {info['parameters']:,} parameters"
    model += f", {info['probe_features']} probe features" if info["probe_features"] else ""
    model += f" ({options})" if options else ""
    signature = info["signature"]
    networks = (
        f"M={signature['num_weight_layers']} weight layers, d_0={signature['in_dim']}, d_M={signature['out_dim']}"
    )
    if info["widths"] and info["model"] in FLAT_MODELS:
        networks += f" (exactly {'-'.join(map(str, info['widths']))})"
    lines = [
        f"checkpoint  {shown_path(info['path'])}: {kind}",
        f"model       {model}",
        f"task        {_task_text(info)}",
        f"networks    {networks}",
        f"data        {info['data']}"
        + (f" (fingerprint {info['data_fingerprint']})" if info["data_fingerprint"] else ""),
        f"epoch       {_progress_text(info)}",
        f"settings    {_settings_text(info['settings'])}",
    ]
    return "\n".join(lines)


def _task_text(info: dict[str, Any]) -> str:
    outputs = info["outputs"]
    if outputs is None:
        return f"{info['task']} (edits networks)"
    shown = ", ".join(outputs[:10]) + (f", ... ({len(outputs)} in all)" if len(outputs) > 10 else "")
    noun = "classes" if info["task"] == "classify" else "targets"
    return f"{info['task']}, {len(outputs)} {noun}: {shown}"


def _progress_text(info: dict[str, Any]) -> str:
    metric = info["metric"] or "metric"
    epochs = info["settings"].get("epochs")
    text = f"{info['epoch']}" + (f" of {epochs}" if is_count(epochs) else "")
    if info["kind"] == "best":
        value = info.get("val_metric")
        return text + (f", validation {metric} {value:.4g}" if is_number(value) else "")
    best, value = info.get("best_epoch"), info.get("best_val_metric")
    if is_count(best) and is_number(value):
        text += f"; best validation {metric} {value:.4g} at epoch {best}"
    if info.get("stopped_early"):
        text += "; stopped early"
    return text


def _settings_text(settings: dict[str, Any]) -> str:
    shown = []
    for key, value in settings.items():
        if value is None or value is False or value == []:
            continue
        if isinstance(value, list):
            value = ",".join(map(str, value))
        shown.append(key.replace("_", "-") if value is True else f"{key.replace('_', '-')} {value}")
    return ", ".join(shown)
