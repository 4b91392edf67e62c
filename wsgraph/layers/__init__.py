"""Layers and models on weight-space graphs: equivariant DWS layers, readouts, baselines."""

from wsgraph.layers.dws import DWSLayer
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout

__all__ = [
    "DWSLayer",
    "WeightSpaceFeatures",
    "WeightSpaceLayout",
]
