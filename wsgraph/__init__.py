"""wsgraph: learning in deep weight spaces with PyTorch Geometric.

Networks become graphs (neurons as nodes carrying biases, weights as edge features),
processed by layers exactly equivariant to hidden-neuron permutations.
"""

from wsgraph.activations import Sine, make_activation
from wsgraph.checkpoint import CheckpointError, load_checkpoint
from wsgraph.cnn import batch_cnn_graphs, cnn_to_graph, graph_to_cnn, pad_kernels
from wsgraph.convert import graph_to_mlp, graph_to_params, mlp_to_graph, stacked_params
from wsgraph.dense import DenseWeights, from_dense_weights, to_dense_weights
from wsgraph.extract import NotAnMLPError
from wsgraph.extract_cnn import NotACNNError
from wsgraph.graph import WeightSpaceGraph, common_spec, graph_specs, sort_edges
from wsgraph.permute import permute_hidden
from wsgraph.spec import WeightSpaceSpec
from wsgraph.visualize import draw_network, to_networkx

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
    "load_checkpoint",
    "make_activation",
    "mlp_to_graph",
    "pad_kernels",
    "permute_hidden",
    "sort_edges",
    "stacked_params",
    "to_dense_weights",
    "to_networkx",
]
