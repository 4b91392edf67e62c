"""Layers and models on weight-space graphs: equivariant DWS layers, readouts, baselines."""
