"""wsgraph: learning in deep weight spaces with PyTorch Geometric.

Networks become graphs (neurons as nodes carrying biases, weights as edge features),
processed by layers exactly equivariant to hidden-neuron permutations.
"""

# The names of __all__ come from wsgraph.core, for type checkers through the star import below.
# ruff: noqa: F405

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsgraph.core import *  # noqa: F403
    from wsgraph.core.network_files import load_checkpoint as load_checkpoint

__version__ = "0.1.0"

# wsgraph.core's public names (a test holds the two lists equal). They are imported at first use:
# `import wsgraph` then loads no torch, so that the `wsgraph` command starts at once and a Ctrl-C
# during its imports ends it with one line rather than a traceback.
__all__ = [
    "CheckpointError",
    "DenseWeights",
    "NotACNNError",
    "NotAnMLPError",
    "Sine",
    "WeightSpaceGraph",
    "WeightSpaceSpec",
    "batch_cnn_graphs",
    "cnn_to_graph",
    "common_spec",
    "draw_network",
    "from_dense_weights",
    "graph_specs",
    "graph_to_cnn",
    "graph_to_mlp",
    "graph_to_params",
    "load_network_file",
    "make_activation",
    "mlp_to_graph",
    "pad_kernels",
    "permute_hidden",
    "sort_edges",
    "stacked_params",
    "to_dense_weights",
    "to_networkx",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("wsgraph.core"), name)
    elif name == "load_checkpoint":  # the deprecated name of load_network_file
        value = importlib.import_module("wsgraph.core.network_files").load_checkpoint
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
