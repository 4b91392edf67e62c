"""Invariant readout: one vector per network from every weight and bias layer."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.objects import weight_space_objects
from wsgraph.layers.ops import REDUCTIONS, make_ops, network_pools
from wsgraph.layers.signature import check_signature
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout, supply_layout


@renamed_kwargs(num_layers="num_weight_layers")
class InvariantReadout(nn.Module):
    r"""Reduce every object of a weight space over its permuted (hidden) neurons.

    The result concatenates, in the order :math:`W_1..W_M, b_1..b_M`, each object's
    ``mean``/``sum``/``max`` over the hidden neurons that index it, keeping the input
    neurons of :math:`W_1` and the output neurons of :math:`W_M, b_M` as separate
    features (they are not permuted). It is invariant to hidden-neuron permutations.

    Args:
        in_channels (int): feature channels :math:`C`.
        num_weight_layers (int): the number :math:`M` of weight layers.
        in_dim (int): the input width :math:`d_0`.
        out_dim (int): the output width :math:`d_M`.
        reduce (str): ``"mean"``, ``"sum"`` or ``"max"``.
        backend (str): ``"scatter"`` or ``"dense"``.

    Shapes:
        - **input:** a graph or batch of :math:`B` networks with :math:`C` channels
        - **output:** :math:`(B, \text{out\_features})` with
          :math:`\text{out\_features} = C \sum_X f(X)`
    """

    def __init__(
        self,
        in_channels: int,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        reduce: str = "mean",
        backend: str = "scatter",
    ) -> None:
        super().__init__()
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduce!r}; choose from {REDUCTIONS}")
        self.in_channels = in_channels
        self.num_weight_layers = num_weight_layers
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.reduce = reduce
        self.backend = backend
        self.out_features = in_channels * sum(
            obj.fold for obj in weight_space_objects(num_weight_layers, in_dim, out_dim)
        )
        self.register_forward_pre_hook(supply_layout, with_kwargs=True)

    def reset_parameters(self) -> None:
        """The readout has no parameters."""

    def forward(self, data: Data, layout: WeightSpaceLayout | None = None) -> Tensor:
        layout = layout if layout is not None else WeightSpaceLayout.of(data)
        check_signature(self, layout)
        return self.forward_features(layout.split(data.x, data.edge_attr), layout)

    def forward_features(self, features: WeightSpaceFeatures, layout: WeightSpaceLayout) -> Tensor:
        ops = make_ops(self.backend, features, layout)
        return torch.cat(network_pools(ops, self.reduce), dim=-1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, num_weight_layers={self.num_weight_layers}, in_dim={self.in_dim}, out_dim={self.out_dim}, "
            f"reduce={self.reduce!r}, out_features={self.out_features}"
        )
