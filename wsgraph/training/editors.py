"""Weight editors built from the flat MLP baseline, for tasks whose output is a network."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch_geometric.data import Data

from wsgraph.core.graph import canonical_positions
from wsgraph.core.spec import WeightSpaceSpec
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers import FlatMLP
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS

# The last layer starts this small, so the editor starts near the identity (as DWSEditNet).
OUTPUT_GAIN = 0.1


@renamed_kwargs(num_hidden_layers="depth")
class FlatMLPEditor(nn.Module):
    r"""The flat MLP baseline as a weight editor: an MLP on the flattened weights predicts
    a change of every weight and bias, which is added to the input network.

    .. math::
        (W', b') = (W, b) + \operatorname{unvec}\big(\operatorname{MLP}(\operatorname{vec}(W, b))\big)

    ``vec`` is :func:`wsgraph.layers.flatten_params` (all weights layer by layer, then
    all biases), whose order is the canonical edge order of each graph followed by its
    non-input neurons, so the change maps back onto ``edge_attr`` and ``x`` without a
    copy of the structure. Like the :class:`~wsgraph.layers.FlatMLP` it is built on, it
    is not equivariant to hidden-neuron permutations.

    Args:
        spec (WeightSpaceSpec): the architecture of the networks (one per model).
        in_channels (int, optional): channels of ``x`` and ``edge_attr``. (default: ``1``)
        hidden_channels (int, optional): width of the hidden layers. (default: ``32``)
        depth (int, optional): hidden layers. (default: ``5``)
        dropout (float, optional): dropout after each hidden layer. (default: ``0.0``)

    Shapes:
        - **input:** a batch of :math:`B` networks of architecture ``spec``
        - **output:** the same batch (a shallow copy) with edited ``x`` and ``edge_attr``
          (input neurons keep their zero rows)
    """

    def __init__(
        self,
        spec: WeightSpaceSpec,
        in_channels: int = 1,
        hidden_channels: int = HIDDEN_CHANNELS["mlp"],
        depth: int = DEPTH["mlp"],
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        size = spec.num_params * in_channels
        self.mlp = FlatMLP(size, size, hidden_channels, depth, dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()
        last = self.mlp.mlp[-1]
        with torch.no_grad():
            last.weight.mul_(OUTPUT_GAIN)
            last.bias.mul_(OUTPUT_GAIN)

    def forward(self, data: Data) -> Data:
        delta = self.mlp(data)
        batch_size, channels, spec = delta.size(0), self.in_channels, self.spec
        edge_part = spec.num_edges * channels
        edge_delta = delta[:, :edge_part].reshape(-1, channels)
        positions = canonical_positions(data)
        if positions is not None:
            # The flat vector lists the weights canonically; give them back in the batch's edge order.
            edge_delta = edge_delta[positions]
        bias_delta = delta[:, edge_part:].reshape(batch_size, -1, channels)
        input_rows = bias_delta.new_zeros(batch_size, spec.in_dim, channels)
        node_delta = torch.cat([input_rows, bias_delta], dim=1).reshape(-1, channels)
        out = copy.copy(data)
        out.edge_attr = data.edge_attr + edge_delta
        out.x = data.x + node_delta
        return out

    def extra_repr(self) -> str:
        return f"spec={self.spec}, in_channels={self.in_channels}"
