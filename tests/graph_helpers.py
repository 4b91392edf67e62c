"""Helpers shared by the tests: weight-space graphs with their edges listed in another order."""

from __future__ import annotations

import torch


def reorder_edges(data, perm: torch.Tensor):
    """``data`` with its edges listed in the order ``perm`` (edge ``e`` is old edge ``perm[e]``)."""
    out = data.clone()
    out.edge_index = data.edge_index[:, perm]
    out.edge_attr = data.edge_attr[perm]
    out.edge_layer = data.edge_layer[perm]
    return out
