"""Process-level choices: which device to run on, how seeds are derived, and the glibc
allocator's thresholds.

:func:`resolve_device` turns a ``--device`` flag into a :class:`torch.device`, with a
one-line error naming the flag's value when the device is unknown or absent.
:func:`derived_seed` gives each purpose of a seeded run (an epoch's batch order, dropout
on one rank, ...) a seed of its own. :func:`preserved_random_state` gives back the
global random generators as it found them, around code that draws from them as a side
effect.

PyTorch frees and re-allocates tensors of tens of MB many times per training step. By
default glibc serves each one with a fresh ``mmap`` and returns it on free, so every
step pays page faults for memory it just gave back; on a 2-core machine that costs more
than the arithmetic (measured: a DWSNet step went from 3.0 s to 0.9 s, see
docs/benchmarks.md). Keeping freed memory in the heap avoids it, at the price of a
higher resident size. Commands that train or fit call :func:`tune_cpu_allocator`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import sys
from collections.abc import Iterator

import numpy as np
import torch

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_ENV_OPT_OUT = "WSGRAPH_DEFAULT_MALLOC"
# A prime larger than any key, so that seed * stride + key never collides for small keys.
_SEED_STRIDE = 1_000_003


def tune_cpu_allocator() -> bool:
    """Stop glibc from returning large freed blocks to the kernel; ``True`` if applied.

    A no-op (``False``) on other C libraries, or when the environment variable
    ``WSGRAPH_DEFAULT_MALLOC=1`` asks to keep the defaults.
    """
    if os.environ.get(_ENV_OPT_OUT) == "1" or not sys.platform.startswith("linux"):
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    serve_from_heap = mallopt(_M_MMAP_MAX, 0) == 1
    keep_freed = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return serve_from_heap and keep_freed


# Where Linux says how much memory a container may use (cgroup v2, then v1); "max" or a huge number: no limit.
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def physical_memory() -> int | None:
    """The memory this process may use in bytes: the machine's (``sysconf`` on POSIX), or a smaller
    container limit; ``None`` where the OS says neither."""
    try:
        total: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = None
    for path in _CGROUP_LIMITS:
        try:
            with open(path) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = int(text)
            total = limit if total is None else min(total, limit)
        break
    return total


def resolve_device(device: torch.device | str | None = "auto", local_rank: int | None = None) -> torch.device:
    """The device a ``--device`` value names.

    Args:
        device: ``"auto"`` or ``None`` (CUDA when available, else the CPU), ``"cpu"``,
            ``"cuda"``, ``"cuda:N"``, or ``"mps"`` where torch has an MPS device; a
            :class:`torch.device` is checked the same way.
        local_rank: the index a bare ``"cuda"`` (or ``"auto"`` on a CUDA machine) gets,
            e.g. ``LOCAL_RANK`` under ``torchrun``; without it a bare ``"cuda"`` stays
            torch's current CUDA device.

    Raises:
        ValueError: naming the value, for an unknown device or one this machine lacks.
    """
    flag = "auto" if device is None else str(device)
    name = ("cuda" if torch.cuda.is_available() else "cpu") if flag == "auto" else flag
    choices = "auto, cpu, cuda, cuda:N or mps" if torch.backends.mps.is_available() else "auto, cpu, cuda or cuda:N"
    try:
        resolved = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {flag}: unknown device; expected {choices}") from error
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {flag}: MPS is not available on this machine")
    if resolved.type in ("cpu", "mps"):
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"--device {flag}: unknown device; expected {choices}")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {flag}: CUDA is not available on this machine")
    if resolved.index is None and local_rank is not None:
        resolved = torch.device("cuda", local_rank)
    count = torch.cuda.device_count()
    if resolved.index is not None and resolved.index >= count:
        raise ValueError(f"--device {flag}: no CUDA device {resolved.index} (this machine has {count})")
    return resolved


# The largest seed a command takes: torch seeds its generators with 64-bit integers, and a negative seed
# would alias a large one.
MAX_SEED = 2**63 - 1


def derived_seed(seed: int, *keys: int) -> int:
    """A seed for one purpose of a run seeded with ``seed``, e.g. the batch order of one
    epoch: ``derived_seed(seed, SHUFFLE_STREAM, epoch)``. Different keys give unrelated
    streams, and the result is a valid :meth:`torch.Generator.manual_seed` in ``[0, 2^63)``.

    Args:
        seed: the run's seed.
        keys: small non-negative integers naming the purpose, most general first.
    """
    value = seed
    for key in keys:
        value = strided_seed(value, key + 1) % (2**63)
    return value


def strided_seed(seed: int, index: int) -> int:
    """``seed * 1_000_003 + index``: the step :func:`derived_seed` repeats, without its
    offset and reduction.

    Image-INR datasets seed the hidden-neuron shuffle of the shard starting at network
    ``first`` with ``strided_seed(seed, first)``; datasets fitted with it must stay
    reproducible, so that formula cannot become a :func:`derived_seed`.

    Args:
        seed: the sequence's seed.
        index: the item's position, below ``1_000_003`` for distinct seeds.
    """
    return seed * _SEED_STRIDE + index


@contextlib.contextmanager
def preserved_random_state(*devices: torch.device | str) -> Iterator[None]:
    """Restore the global random states on exit: torch's CPU generator and those of the
    given CUDA ``devices`` (others are ignored), Python's :mod:`random` and NumPy's.
    """
    cuda = sorted({_cuda_index(torch.device(device)) for device in devices if torch.device(device).type == "cuda"})
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()
