"""What every benchmark script shares: timing, the allocator switch, the machine's description, atomic JSON output."""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch

# wsgraph is imported inside the functions below: importing it imports torch_geometric, and
# bench_layers.py's children must be able to hide torch_scatter before that happens.

RESULTS_DIR = Path(__file__).resolve().parent / "results"
Result = TypeVar("Result")
_ALIGNMENT = {"l": "---", "r": "---:", "c": ":---:"}


def add_common_flags(parser: argparse.ArgumentParser, benchmark: str) -> None:
    """Add ``--out`` (default ``results/<benchmark>_<hostname>.json``) and ``--default-malloc``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR / f"{benchmark}_{socket.gethostname()}.json",
        help=f"JSON file (default: benchmarks/results/{benchmark}_<hostname>.json)",
    )
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="keep glibc's default allocator thresholds instead of wsgraph.runtime.tune_cpu_allocator(), as the "
        "wsgraph commands use (for comparison)",
    )


def tune_allocator(default_malloc: bool) -> bool:
    """Tune glibc's allocator as the ``wsgraph`` CLI does, unless ``default_malloc``; ``True`` if applied.

    Call it once at start-up, before the large allocations it is meant to speed up.
    """
    from wsgraph.runtime import tune_cpu_allocator

    return False if default_malloc else tune_cpu_allocator()


def time_calls(
    function: Callable[[], Any], repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None
) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        function()
    if sync:
        sync()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        if sync:
            sync()
        seconds.append(time.perf_counter() - started)
    return seconds


def timed(function: Callable[[], Result]) -> tuple[Result, tuple[float, float]]:
    """The result of one call of ``function`` and its (wall-clock, this process's CPU) seconds.

    On a shared machine wall-clock time depends on the others' load; CPU time much less.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, (time.perf_counter() - wall, time.process_time() - cpu)


def summarize(seconds: Sequence[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "all_s": list(seconds)}


def hardware() -> str:
    """The CPU model where Linux says it, else what :mod:`platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the system has them."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def environment() -> dict[str, Any]:
    """Versions, CPU, GPU, load and allocator settings: what a reader needs to judge a number."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hardware": hardware(),
        "hostname": socket.gethostname(),
        "load_average": load_average(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        # glibc reads MALLOC_* at start-up; with the tuning above they change CPU step times a lot.
        "malloc_env": {
            key: value
            for key, value in os.environ.items()
            if key.startswith("MALLOC_") or key == "WSGRAPH_DEFAULT_MALLOC"
        },
    }
    try:
        import torch_geometric

        info["torch_geometric"] = torch_geometric.__version__
    except ImportError:
        info["torch_geometric"] = None
    return info


def machine_summary(info: dict[str, Any]) -> str:
    """One line from :func:`environment`: torch version, CPUs, CPU model and the 1-minute load average."""
    load = info["load_average"]
    return f"torch {info['torch']}, {info['cpu_count']} CPUs ({info['hardware']})" + (
        f", load average {load[0]:.1f}" if load else ""
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A markdown table; ``align`` holds one of ``l``, ``r``, ``c`` per column (left where it stops)."""
    rules = [_ALIGNMENT[align[column]] if column < len(align) else "---" for column in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rules) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
