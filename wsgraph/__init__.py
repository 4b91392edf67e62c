"""wsgraph: learning in deep weight spaces with PyTorch Geometric.

Networks become graphs (neurons as nodes carrying biases, weights as edge features),
processed by layers exactly equivariant to hidden-neuron permutations.
"""

from wsgraph.core import (
    CheckpointError,
    DenseWeights,
    NotACNNError,
    NotAnMLPError,
    Sine,
    WeightSpaceGraph,
    WeightSpaceSpec,
    batch_cnn_graphs,
    cnn_to_graph,
    common_spec,
    draw_network,
    from_dense_weights,
    graph_specs,
    graph_to_cnn,
    graph_to_mlp,
    graph_to_params,
    load_network_file,
    make_activation,
    mlp_to_graph,
    pad_kernels,
    permute_hidden,
    sort_edges,
    stacked_params,
    to_dense_weights,
    to_networkx,
)
from wsgraph.core.network_files import load_checkpoint as load_checkpoint  # deprecated name of load_network_file

__version__ = "0.1.0"

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
