"""What a run reports: the per-epoch CSV, the result JSON, and the machine it ran on."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch
import torch_geometric

from wsgraph.io import atomic_write

METRICS_CSV, RESULT_JSON = "metrics.csv", "result.json"


def history_columns(metric: str) -> list[str]:
    """The columns of ``metrics.csv`` for a task whose metric is ``metric``."""
    return [
        "epoch",
        "train_loss",
        "val_loss",
        f"val_{metric}",
        "lr",
        "train_seconds",
        "eval_seconds",
        "train_networks_per_second",
    ]


def write_history(path: str | os.PathLike, rows: list[dict[str, Any]], metric: str) -> None:
    """Write one row per finished epoch to ``path`` (rewritten whole, atomically, every epoch)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=history_columns(metric), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format(row[key]) for key in writer.fieldnames})
    text = buffer.getvalue()
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    except RecursionError:
        raise ValueError(f"{path}: not valid JSON (nested too deeply to read)") from None


def hardware(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """The machine a run used: CPU, GPU, thread count, library versions."""
    info: dict[str, Any] = {
        "device": str(device),
        "processes": world_size,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import torch_scatter

        info["torch_scatter"] = torch_scatter.__version__
    except ImportError:
        info["torch_scatter"] = None
    return info


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _format(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
