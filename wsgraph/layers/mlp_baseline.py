"""The flat MLP baseline: an ordinary MLP on the concatenated weights and biases of a network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.core.convert_cnn import kernel_offset
from wsgraph.core.dense import to_dense_weights
from wsgraph.core.graph import sort_edges
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.blocks import GlobalBatchNorm
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS


def flatten_params(data: Data, kernel_sizes: Sequence[tuple[int, int]] | None = None) -> Tensor:
    r"""The weights and biases of every network of a one-architecture batch as one row each.

    The order is the canonical one of :mod:`wsgraph.core.spec` and the one of the DWSNets
    baseline: all weights, layer by layer (:math:`W_l[i, j]` row-major), then the
    biases of layers ``1..M`` (input neurons carry no bias); the ``C`` channels of a
    parameter are adjacent.

    Args:
        data: a graph or a batch of graphs of one architecture, edges in any order.
        kernel_sizes: for the graphs of CNNs, the ``(kh, kw)`` window of each weight
            layer to read from its edges' kernel grid (centred, where
            :func:`wsgraph.cnn_to_graph` puts the kernels); a weight then contributes
            ``kh * kw`` entries in row-major order instead of the whole padded grid.

    Returns:
        ``[B, P * C]`` with :math:`P` the number of weights and biases of one network.

    Raises:
        ValueError: if the batch mixes architectures.
    """
    weights, biases = to_dense_weights(sort_edges(data))
    if kernel_sizes is not None:
        grid = tuple(data.kernel_grid[0].tolist())
        weights = [_kernel_window(weight, kernel, grid) for weight, kernel in zip(weights, kernel_sizes)]
    batch_size = weights[0].size(0)
    return torch.cat([tensor.reshape(batch_size, -1) for tensor in (*weights, *biases)], dim=1)


def _kernel_window(weight: Tensor, kernel: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """``[B, d_in, d_out, H*W]`` padded kernels -> ``[B, d_in, d_out, kh*kw]``, their centred window."""
    top, left = kernel_offset(kernel, grid)
    window = weight.unflatten(-1, grid)[..., top : top + kernel[0], left : left + kernel[1]]
    return window.flatten(-2)


@renamed_kwargs(num_hidden_layers="depth")
class FlatMLP(nn.Module):
    r"""The MLP baseline of `"Equivariant Architectures for Learning in Deep Weight
    Spaces" <https://arxiv.org/abs/2301.12780>`_ (Navon et al., ICML 2023).

    The network's parameters are flattened in a fixed order (:func:`flatten_params`)
    and fed to an MLP:

    .. math::
        \mathbf{h}_0 = \operatorname{vec}(W_1, \dots, W_M, b_1, \dots, b_M), \quad
        \mathbf{h}_{t} = \sigma(\operatorname{BN}_t(A_t \mathbf{h}_{t-1} + \mathbf{c}_t)), \quad
        \mathbf{y} = A_{L+1} \mathbf{h}_L + \mathbf{c}_{L+1}

    with ReLU :math:`\sigma`, :math:`L` hidden layers and batch norm on every hidden
    layer but the first. The defaults are those of the published DWSNets INR
    classification code (``MLPModelForClassification`` with ``--dim-hidden 32
    --n-hidden 4 --add-bn true``): five hidden layers of width 32.

    The model is **not** invariant to hidden-neuron permutations: permuting the neurons
    of a hidden layer moves entries of :math:`\mathbf{h}_0` and changes the output
    although the input network computes the same function. The ``mlp-aug`` baseline of
    the same paper is this model trained on a fresh random permutation of every
    network's hidden neurons at each step: the training loop calls
    ``wsgraph.permute_hidden(batch)`` (vectorised over the whole batch) before the
    forward pass; the model itself has no augmentation.

    Args:
        num_params (int): the length of a flattened network, the number of its weights
            and biases times the channels ``C`` (``WeightSpaceSpec.num_params * C``).
        out_features (int): the size of each output.
        hidden_channels (int, optional): the width of the hidden layers. (default: ``32``)
        depth (int, optional): the number :math:`L` of hidden layers.
            (default: ``5``)
        dropout (float, optional): dropout probability after each hidden layer.
            (default: ``0.0``)
        batch_norm (bool, optional): batch norm on hidden layers ``2..L``.
            (default: ``True``)
        kernel_sizes (sequence, optional): for CNN graphs, the window of each weight
            layer's kernel grid to flatten (see :func:`flatten_params`); ``num_params``
            then counts kernel entries. (default: :obj:`None`)

    Shapes:
        - **input:** a batch of :math:`B` :class:`~wsgraph.core.graph.WeightSpaceGraph`\ s
          of one architecture
        - **output:** :math:`(B, \text{out\_features})`
    """

    def __init__(
        self,
        num_params: int,
        out_features: int,
        hidden_channels: int = HIDDEN_CHANNELS["mlp"],
        depth: int = DEPTH["mlp"],
        dropout: float = 0.0,
        batch_norm: bool = True,
        kernel_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        super().__init__()
        if min(num_params, out_features, hidden_channels, depth) < 1:
            raise ValueError(
                "num_params, out_features, hidden_channels and depth must be positive, got "
                f"{num_params}, {out_features}, {hidden_channels}, {depth}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_params = num_params
        self.out_features = out_features
        self.hidden_channels = hidden_channels
        self.depth = depth
        self.dropout = dropout
        self.batch_norm = batch_norm
        self.kernel_sizes = None if kernel_sizes is None else tuple((int(h), int(w)) for h, w in kernel_sizes)

        layers: list[nn.Module] = []
        for position in range(depth):
            layers.append(nn.Linear(num_params if position == 0 else hidden_channels, hidden_channels))
            if batch_norm and position > 0:
                layers.append(GlobalBatchNorm(hidden_channels))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden_channels, out_features))
        self.mlp = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in self.mlp:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, data: Data) -> Tensor:
        flat = flatten_params(data, self.kernel_sizes)
        if flat.size(1) != self.num_params:
            raise ValueError(
                f"FlatMLP was built for {self.num_params} parameters per network, "
                f"the batch has {flat.size(1)} (weights and biases times channels)"
            )
        return self.mlp(flat)

    def extra_repr(self) -> str:
        return (
            f"num_params={self.num_params}, out_features={self.out_features}, "
            f"hidden_channels={self.hidden_channels}, depth={self.depth}, "
            f"dropout={self.dropout}, batch_norm={self.batch_norm}"
        )
