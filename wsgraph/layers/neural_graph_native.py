"""The compiled per-edge loops of NeuralGraphGNN's fused backend, built on first use.

:mod:`wsgraph.layers.neural_graph_fused` runs each chunk's per-edge work either as torch
operations (a dozen passes over the chunk, each a separate call) or, when this module can
build ``csrc/neural_graph_edges.cpp`` with the machine's C++ compiler, as one or two loops
over it. The build takes under a minute once per CPU, torch and Python version, and is kept
in ``~/.cache/torch_extensions`` (or ``$TORCH_EXTENSIONS_DIR``). Without a compiler the
torch operations run, after a one-line warning. ``WSGRAPH_NATIVE_KERNELS=0`` skips the
build and always runs the torch operations.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import time
import warnings
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).with_name("csrc") / "neural_graph_edges.cpp"
SWITCH = "WSGRAPH_NATIVE_KERNELS"
# The compiler flags to try, in order. -ffp-contract=off: the forward and backward loops must evaluate each
# message to the same bits (the backward finds the extremes again by comparison), which fused multiply-adds in
# one loop but not the other would break. -march=native vectorises for this CPU; compilers that refuse it (some
# clang versions on ARM) get the portable flags. MSVC contracts nothing under /fp:precise.
FLAG_SETS = (
    [["/O2", "/fp:precise"]]
    if platform.system() == "Windows"
    else [["-O3", "-march=native", "-ffp-contract=off"], ["-O3", "-ffp-contract=off"]]
)
# torch's build lock is only ever this old when its builder died: a build takes under a minute.
STALE_LOCK_SECONDS = 600


def _cpu_features() -> str:
    """The CPU's instruction-set flags: the build is for this CPU (``-march=native``), and a shared cache must not
    hand it to another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return " ".join([platform.machine(), platform.processor(), platform.platform()])


def _build_name(flags: list[str]) -> str:
    import torch

    parts = [SOURCE.read_text(), _cpu_features(), " ".join(flags), torch.__version__, platform.python_version()]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]
    return f"wsgraph_neural_graph_edges_{key}"


def _build_root(cpp_extension: ModuleType) -> Path:
    """torch's own choice: ``$TORCH_EXTENSIONS_DIR``, else its cache folder."""
    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())


def _load(cpp_extension: ModuleType, flags: list[str]) -> ModuleType:
    """Builds (or finds) and imports the module, one process at a time.

    torch's own build lock is a file that only the builder removes: a process killed during the build (say,
    a training run stopped in its first minute) leaves it behind, and every later build waits for it forever.
    So builds also take an advisory lock, which the system releases when its holder dies; whoever holds it
    waits for torch's file to go, and removes it once it is too old to belong to a build still running (a
    killed builder's compiler may outlive it for a while).
    """
    name = _build_name(flags)
    directory = _build_root(cpp_extension) / name
    directory.mkdir(parents=True, exist_ok=True)
    arguments = {"name": name, "sources": [str(SOURCE)], "extra_cflags": flags, "build_directory": str(directory)}
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's lock alone
        return cpp_extension.load(**arguments, verbose=False)
    with open(directory / "wsgraph.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _clear_stale_lock(directory / "lock")
        return cpp_extension.load(**arguments, verbose=False)


def _clear_stale_lock(lock: Path) -> None:
    while True:
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return
        if age > STALE_LOCK_SECONDS:
            lock.unlink(missing_ok=True)
            return
        time.sleep(1.0)


def _build_failure(text: str) -> str:
    """One line for a failed build's message: its first, without the ninja command torch appends to it, and
    the compiler's first error, which says what went wrong."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    head = lines[0].split(": [", 1)[0]
    cause = next((line for line in lines[1:] if re.search(r"\berror\b", line, re.IGNORECASE)), None)
    return head if cause is None else f"{head}: {cause[:300]}"


@functools.cache
def native_kernels() -> ModuleType | None:
    """The compiled module, or ``None`` when ``WSGRAPH_NATIVE_KERNELS=0`` or no build succeeds (with a warning)."""
    if os.environ.get(SWITCH, "1").strip() == "0":
        return None
    reason = "no compiler flags to try"
    for flags in FLAG_SETS:
        try:
            from torch.utils import cpp_extension

            return _load(cpp_extension, flags)
        except Exception as error:  # a missing compiler or ninja, a failed compilation: the torch path still works
            reason = _build_failure(str(error)) or type(error).__name__
    warnings.warn(
        f"wsgraph: could not build the compiled NeuralGraphGNN kernels ({reason}); running torch operations "
        f"instead, which is slower. Set {SWITCH}=0 to skip the attempt.",
        RuntimeWarning,
        stacklevel=2,
    )
    return None
