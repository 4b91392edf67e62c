"""Probe features: what each neuron computes at a few learned input points."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.checks import is_size
from wsgraph.datasets.transforms import LayerStatistics, NormalizeWeights
from wsgraph.deprecation import renamed_kwargs
from wsgraph.inrs.render import neuron_values


@renamed_kwargs(num_layers="num_weight_layers")
class ProbeFeatures(nn.Module):
    r"""Neuron features from running the networks: each network is evaluated at :math:`K`
    learned input points and every neuron's :math:`K` values become its features.

    The probe features of `"Graph Neural Networks for Learning Equivariant
    Representations of Neural Networks" <https://arxiv.org/abs/2403.12143>`_ (Kofinas et
    al., ICLR 2024), as their released code computes them: the points start uniform in
    :math:`[-1, 1]^{d_0}` and are trained with the model; the values of the neurons of
    layer :math:`k` (the inputs themselves for :math:`k = 0`, hidden neurons after the
    activation, raw outputs) go through a per-layer :math:`\operatorname{LN}(\mathbf{\Theta}_k
    \mathbf{v} + \mathbf{c}_k)`. The networks run with the activation each graph records
    (:func:`wsgraph.inrs.render.neuron_values`), in a batch of any widths.

    Models see normalised weights (``wsgraph train`` standardises each layer), but a
    network computes its function with its raw weights, so the module first undoes the
    normalisation whose statistics it holds as buffers (``statistics``; the identity
    by default, for raw weights). Loading a trained model's ``state_dict`` restores them.

    Hidden-neuron permutations permute the neurons' values along with the neurons, so the
    features are equivariant; input and output neurons keep their identity.

    Args:
        num_weight_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the input width :math:`d_0`.
        num_probes (int): the number :math:`K` of input points.
        channels (int): the size of each neuron's feature.
        statistics (LayerStatistics, optional): the normalisation the inputs carry, to
            undo before running the networks. (default: :obj:`None`, raw weights)

    Shapes:
        - **input:** a graph or batch of networks with one channel
        - **output:** node features :math:`(N, \text{channels})`
    """

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        num_probes: int,
        channels: int,
        statistics: LayerStatistics | None = None,
    ) -> None:
        super().__init__()
        if not all(is_size(value, minimum=1) for value in (num_weight_layers, in_dim, num_probes, channels)):
            raise ValueError(
                f"num_weight_layers, in_dim, num_probes and channels must be positive integers, got {num_weight_layers!r}, "
                f"{in_dim!r}, {num_probes!r}, {channels!r}"
            )
        self.num_weight_layers = num_weight_layers
        self.in_dim = in_dim
        self.num_probes = num_probes
        self.channels = channels
        self.points = nn.Parameter(torch.empty(num_probes, in_dim))
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Linear(num_probes, channels), nn.LayerNorm(channels)) for _ in range(num_weight_layers + 1)
        )
        if statistics is not None and statistics.num_weight_layers != num_weight_layers:
            raise ValueError(
                f"statistics for {statistics.num_weight_layers} weight layers, the model has {num_weight_layers}"
            )
        zeros, ones = torch.zeros(num_weight_layers), torch.ones(num_weight_layers)
        for name, default in (("weight_mean", zeros), ("weight_std", ones), ("bias_mean", zeros), ("bias_std", ones)):
            value = default if statistics is None else getattr(statistics, name).detach().cpu()
            self.register_buffer(name, value.clone())
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.points.uniform_(-1.0, 1.0)
        for projection in self.projections:
            for module in projection:
                module.reset_parameters()

    def statistics(self) -> LayerStatistics:
        """The normalisation that :meth:`forward` undoes."""
        return LayerStatistics(self.weight_mean, self.weight_std, self.bias_mean, self.bias_std)

    def values(self, data: Data) -> Tensor:
        """``[N, K]``: every neuron's value at the probe points, computed with the raw weights."""
        dtype = data.edge_attr.dtype
        statistics = LayerStatistics(*(value.to(dtype) for value in self.statistics().to_dict().values()))
        raw = NormalizeWeights(statistics).inverse(data)
        return neuron_values(raw, self.points.to(data.edge_attr.dtype))

    def forward(self, data: Data) -> Tensor:
        widths = data.layer_widths
        if widths.size(1) != self.num_weight_layers + 1 or bool((widths[:, 0] != self.in_dim).any()):
            raise ValueError(
                f"ProbeFeatures was built for {self.num_weight_layers} weight layers and {self.in_dim} inputs, the batch "
                f"has networks of widths {sorted({tuple(row) for row in widths.tolist()})[:4]}"
            )
        values = self.values(data)
        out = values.new_empty(values.size(0), self.channels)
        for layer, projection in enumerate(self.projections):
            rows = (data.node_layer == layer).nonzero().view(-1)
            out = out.index_copy(0, rows, projection(values.index_select(0, rows)))
        return out

    def extra_repr(self) -> str:
        return (
            f"num_weight_layers={self.num_weight_layers}, in_dim={self.in_dim}, num_probes={self.num_probes}, "
            f"channels={self.channels}"
        )
