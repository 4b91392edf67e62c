"""Networks <-> graphs: the architecture spec, the graph schema, reading MLPs and CNNs from
modules, state_dicts and files, exact conversion both ways, dense views, hidden-neuron
permutations and drawings.

Everything else in wsgraph builds on this package; it imports nothing from them.
"""

from wsgraph.core.activations import Sine, make_activation
from wsgraph.core.convert_cnn import batch_cnn_graphs, cnn_to_graph, graph_to_cnn, pad_kernels
from wsgraph.core.convert_mlp import graph_to_mlp, graph_to_params, mlp_to_graph, stacked_params
from wsgraph.core.dense import DenseWeights, from_dense_weights, to_dense_weights
from wsgraph.core.extract_cnn import NotACNNError
from wsgraph.core.extract_mlp import NotAnMLPError
from wsgraph.core.graph import WeightSpaceGraph, common_spec, graph_specs, sort_edges
from wsgraph.core.network_files import CheckpointError, load_network_file
from wsgraph.core.permute import permute_hidden
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.core.visualize import draw_network, to_networkx

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
