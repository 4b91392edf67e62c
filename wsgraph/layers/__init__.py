"""Layers and models on weight-space graphs: equivariant DWS layers, readouts, baselines."""

from wsgraph.layers.dws import DWSLayer
from wsgraph.layers.gnn_baselines import EdgeUpdate, WeightSpaceGNN, pna_degree_histogram
from wsgraph.layers.mlp_baseline import FlatMLP, flatten_params
from wsgraph.layers.positional import EdgePositionalEncoding, NeuronPositionalEncoding
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout

__all__ = [
    "DWSLayer",
    "EdgePositionalEncoding",
    "EdgeUpdate",
    "FlatMLP",
    "NeuronPositionalEncoding",
    "WeightSpaceFeatures",
    "WeightSpaceGNN",
    "WeightSpaceLayout",
    "flatten_params",
    "pna_degree_histogram",
]
