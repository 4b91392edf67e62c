"""Process-level settings that make CPU training fast: the glibc allocator's thresholds.

PyTorch frees and re-allocates tensors of tens of MB many times per training step. By
default glibc serves each one with a fresh ``mmap`` and returns it on free, so every
step pays page faults for memory it just gave back; on a 2-core machine that costs more
than the arithmetic (measured: a DWSNet step went from 3.0 s to 0.9 s, see
docs/benchmarks.md). Keeping freed memory in the heap avoids it, at the price of a
higher resident size. Commands that train or fit call :func:`tune_cpu_allocator`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_ENV_OPT_OUT = "WSGRAPH_DEFAULT_MALLOC"


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
