"""Layers and models on weight-space graphs: equivariant DWS layers, readouts, baselines.

As ``torch.nn`` modules do, the constructors (and ``reset_parameters``) draw the initial
parameters from torch's global random generator, so ``torch.manual_seed`` fixes them,
and dropout draws from it in training mode. A forward pass in eval mode draws nothing.
"""

from wsgraph.layers.blocks import GlobalBatchNorm, WeightSpaceActivation, WeightSpaceDropout, WeightSpaceNorm
from wsgraph.layers.cnn_dws import CNNDWSLayer, CNNDWSNet, KernelLift
from wsgraph.layers.conv import DWSConv
from wsgraph.layers.dws import DWSLayer
from wsgraph.layers.gnn_baselines import EdgeUpdate, WeightSpaceGNN, pna_degree_histogram
from wsgraph.layers.mlp_baseline import FlatMLP, flatten_params
from wsgraph.layers.models import DWSEditNet, DWSNet, DWSStack
from wsgraph.layers.neural_graph import NeuralGraphGNN
from wsgraph.layers.positional import EdgePositionalEncoding, NeuronPositionalEncoding
from wsgraph.layers.probe import ProbeFeatures
from wsgraph.layers.readout import InvariantReadout
from wsgraph.layers.relational_transformer import NeuralGraphTransformer
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout

__all__ = [
    "CNNDWSLayer",
    "CNNDWSNet",
    "DWSConv",
    "DWSEditNet",
    "DWSLayer",
    "DWSNet",
    "DWSStack",
    "EdgePositionalEncoding",
    "EdgeUpdate",
    "FlatMLP",
    "GlobalBatchNorm",
    "InvariantReadout",
    "KernelLift",
    "NeuralGraphGNN",
    "NeuralGraphTransformer",
    "NeuronPositionalEncoding",
    "ProbeFeatures",
    "WeightSpaceActivation",
    "WeightSpaceDropout",
    "WeightSpaceFeatures",
    "WeightSpaceGNN",
    "WeightSpaceLayout",
    "WeightSpaceNorm",
    "flatten_params",
    "pna_degree_histogram",
]
