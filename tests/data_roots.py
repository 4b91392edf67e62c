"""Where the tests find the real MNIST idx files: ``$WSGRAPH_MNIST_ROOT``, else ``data/mnist``.

Tests that need them skip when neither folder exists (``data/`` is git-ignored, so a fresh
clone skips them unless the variable points at a copy).
"""

import os
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


def mnist_root() -> Path | None:
    """The folder holding the four MNIST idx files, or None on a machine without them."""
    root = Path(os.environ.get("WSGRAPH_MNIST_ROOT", REPOSITORY / "data" / "mnist"))
    return root if root.is_dir() else None
