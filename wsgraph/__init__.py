"""wsgraph: learning in deep weight spaces with PyTorch Geometric.

Networks become graphs (neurons as nodes carrying biases, weights as edge features),
processed by layers exactly equivariant to hidden-neuron permutations.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgraph.core import *  # noqa: F403
    from wsgraph.core.network_files import load_checkpoint as load_checkpoint

__version__ = "0.1.0"

# wsgraph.core's public names, offered here at first use: `import wsgraph` then loads no torch, so
# the `wsgraph` command starts at once and a Ctrl-C during its imports ends it with one line rather
# than a traceback. `__all__` itself is read from wsgraph.core when asked for (a star import).


def _core_names() -> list[str]:
    return importlib.import_module("wsgraph.core").__all__


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return list(_core_names())
    if name == "load_checkpoint":  # the deprecated name of load_network_file
        value = importlib.import_module("wsgraph.core.network_files").load_checkpoint
    elif name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    elif name in _core_names():
        value = getattr(importlib.import_module("wsgraph.core"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_core_names()})
