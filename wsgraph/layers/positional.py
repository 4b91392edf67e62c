"""Positional features of neurons and weights that respect the hidden-neuron symmetry."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.deprecation import renamed_kwargs


def check_signature(data: Data, num_weight_layers: int, in_dim: int, out_dim: int, model: str) -> None:
    """Raise a :class:`ValueError` naming ``model`` unless every network of ``data`` has signature ``(M, d_0, d_M)``."""
    widths = getattr(data, "layer_widths", None)
    if not isinstance(widths, Tensor) or widths.dim() != 2:
        raise ValueError(f"{model} needs graphs with 'layer_widths' [B, M+1]; build them with wsgraph.mlp_to_graph")
    if widths.size(1) != num_weight_layers + 1:
        raise ValueError(f"{model} was built for {num_weight_layers} weight layers, the batch has {widths.size(1) - 1}")
    if widths.size(0) and not (bool((widths[:, 0] == in_dim).all()) and bool((widths[:, -1] == out_dim).all())):
        found = sorted({(int(row[0]), int(row[-1])) for row in widths.tolist()})
        raise ValueError(
            f"{model} was built for {in_dim} inputs and {out_dim} outputs, the batch has (inputs, outputs) in {found}"
        )


@renamed_kwargs(num_layers="num_weight_layers")
class NeuronPositionalEncoding(nn.Module):
    r"""Learned positional features of neurons that hidden-neuron permutations cannot see.

    Input and output neurons keep their identity (permuting them is not a symmetry of
    an MLP), while all neurons of one hidden layer share a single embedding, as in the
    graph construction of `"Graph Neural Networks for Learning Equivariant
    Representations of Neural Networks" <https://arxiv.org/abs/2403.12143>`_ (Kofinas et
    al., 2024):

    .. math::
        \mathbf{p}_v =
        \begin{cases}
            \mathbf{E}^{\mathrm{in}}_{i} & v = (0, i) \\
            \mathbf{E}^{\mathrm{hid}}_{k} & v = (k, i),\ 0 < k < M \\
            \mathbf{E}^{\mathrm{out}}_{i} & v = (M, i)
        \end{cases}

    so the table has :math:`d_0 + (M - 1) + d_M` rows and the features depend only on
    ``node_layer`` and ``node_index``. Networks whose hidden widths differ share it.

    Args:
        num_weight_layers (int): the number of weight layers :math:`M` of the networks.
        in_dim (int): the input width :math:`d_0`.
        out_dim (int): the output width :math:`d_M`.
        channels (int): the size of each embedding.

    Shapes:
        - **input:** a :class:`~wsgraph.core.graph.WeightSpaceGraph` or batch of them with
          ``node_layer`` :math:`(N)`, ``node_index`` :math:`(N)` and ``layer_widths``
          :math:`(B, M+1)`
        - **output:** node features :math:`(N, \text{channels})`
    """

    def __init__(self, num_weight_layers: int, in_dim: int, out_dim: int, channels: int) -> None:
        super().__init__()
        if min(num_weight_layers, in_dim, out_dim, channels) < 1:
            raise ValueError(
                f"num_weight_layers, in_dim, out_dim and channels must be positive, got {num_weight_layers}, {in_dim}, {out_dim}, "
                f"{channels}"
            )
        self.num_weight_layers = num_weight_layers
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.channels = channels
        self.embedding = nn.Embedding(in_dim + (num_weight_layers - 1) + out_dim, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()

    def rows(self, node_layer: Tensor, node_index: Tensor) -> Tensor:
        """The embedding row of each neuron: its index for input/output neurons, its layer for hidden ones."""
        hidden_row = self.in_dim + node_layer - 1
        output_row = self.in_dim + self.num_weight_layers - 1 + node_index
        rows = torch.where(node_layer == self.num_weight_layers, output_row, hidden_row)
        return torch.where(node_layer == 0, node_index, rows)

    def forward(self, data: Data) -> Tensor:
        check_signature(data, self.num_weight_layers, self.in_dim, self.out_dim, type(self).__name__)
        return self.embedding(self.rows(data.node_layer, data.node_index))

    def extra_repr(self) -> str:
        return f"num_weight_layers={self.num_weight_layers}, in_dim={self.in_dim}, out_dim={self.out_dim}, channels={self.channels}"


@renamed_kwargs(num_layers="num_weight_layers")
class EdgePositionalEncoding(nn.Module):
    r"""One learned embedding per weight layer: :math:`\mathbf{q}_e = \mathbf{E}_{l}` for an edge of :math:`W_l`.

    Every weight of a layer gets the same features, so they are unchanged by any
    permutation of hidden neurons; which neurons an edge joins reaches the model
    through its endpoints' :class:`NeuronPositionalEncoding`.

    Args:
        num_weight_layers (int): the number of weight layers :math:`M`.
        channels (int): the size of each embedding.

    Shapes:
        - **input:** a graph or batch with ``edge_layer`` :math:`(E)` (values ``1..M``)
        - **output:** edge features :math:`(E, \text{channels})`
    """

    def __init__(self, num_weight_layers: int, channels: int) -> None:
        super().__init__()
        if min(num_weight_layers, channels) < 1:
            raise ValueError(f"num_weight_layers and channels must be positive, got {num_weight_layers} and {channels}")
        self.num_weight_layers = num_weight_layers
        self.channels = channels
        self.embedding = nn.Embedding(num_weight_layers, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        widths = getattr(data, "layer_widths", None)
        if isinstance(widths, Tensor) and widths.dim() == 2 and widths.size(1) != self.num_weight_layers + 1:
            raise ValueError(
                f"{type(self).__name__} was built for {self.num_weight_layers} weight layers, the batch has {widths.size(1) - 1}"
            )
        return self.embedding(data.edge_layer - 1)

    def extra_repr(self) -> str:
        return f"num_weight_layers={self.num_weight_layers}, channels={self.channels}"
