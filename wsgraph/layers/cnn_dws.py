r"""The DWS layer on CNN weight spaces: kernel entries become channels, layer by layer.

A CNN's graph (:func:`wsgraph.cnn_to_graph`) carries on each edge of weight layer ``l``
the ``kh_l x kw_l`` entries of its kernel, zero-padded into the graph's kernel grid. The
symmetry group permutes channels (neurons), never kernel entries, so an edge's kernel is
a feature vector of ``kh_l * kw_l * C`` numbers whose width depends on the layer.
:class:`KernelLift` maps each weight layer's kernel features (and each bias layer's
features) into one common channel width with a linear map of its own; :class:`CNNDWSLayer`
follows it with the ordinary :class:`~wsgraph.layers.DWSLayer`. docs/layers.md ("CNN
weight spaces") shows why this spans every equivariant linear map of the CNN weight space
once the common width is at least ``max_l kh_l * kw_l * C``, the default.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.checks import require_positive_counts
from wsgraph.core.convert_cnn import kernel_offset
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.dws import DWSLayer
from wsgraph.layers.models import DWSNet
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout


class KernelLift(nn.Module):
    r"""Per weight layer ``l``, a linear map from its kernel features to ``out_channels``.

    Input edge features of layer ``l`` are the graph's kernel grid ``H x W`` with
    ``in_channels`` per entry, ``[E_l, H*W*C_in]`` ordered (grid row, grid column,
    channel); the layer reads the centred ``kh_l x kw_l`` window of its kernel (where
    :func:`wsgraph.cnn_to_graph` put it) and maps its ``kh_l*kw_l*C_in`` numbers with
    ``weight_lins[l-1]``. Biases ``[N_l, C_in]`` are mapped by ``bias_lins[l-1]``. Maps
    that differ between layers but not between neurons commute with every neuron
    permutation.

    Args:
        in_channels (int): channels per kernel entry and per bias (1 for raw weights).
        out_channels (int): the common width.
        kernel_sizes: ``(kh_l, kw_l)`` per weight layer, the largest kernel that layer has
            in the data (``(1, 1)`` for linear layers).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        require_positive_counts("KernelLift", in_channels=in_channels, out_channels=out_channels)
        # Sizes read from a graph's kernel_size come as 0-d tensors.
        kernel_sizes = [
            tuple(int(v) if isinstance(v, torch.Tensor) and v.dim() == 0 else v for v in size) for size in kernel_sizes
        ]
        for layer, (h, w) in enumerate(kernel_sizes):
            require_positive_counts(
                "KernelLift", **{f"kernel_sizes[{layer}] height": h, f"kernel_sizes[{layer}] width": w}
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_sizes = tuple((int(h), int(w)) for h, w in kernel_sizes)
        self.weight_lins = nn.ModuleList(
            nn.Linear(h * w * in_channels, out_channels, bias=False) for h, w in self.kernel_sizes
        )
        self.bias_lins = nn.ModuleList(nn.Linear(in_channels, out_channels, bias=False) for _ in self.kernel_sizes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Unit-variance maps (``std = 1/sqrt(fan_in)``): a generic draw is injective when ``out >= in``."""
        for lin in (*self.weight_lins, *self.bias_lins):
            nn.init.normal_(lin.weight, std=1.0 / math.sqrt(lin.in_features))

    def forward_features(self, features: WeightSpaceFeatures, grid: tuple[int, int]) -> WeightSpaceFeatures:
        """Layer-major features with padded kernel grids -> features of ``out_channels``."""
        weights = []
        for table, kernel, lin in zip(features.weights, self.kernel_sizes, self.weight_lins):
            top, left = kernel_offset(kernel, grid)
            window = table.view(table.size(0), *grid, self.in_channels)[
                :, top : top + kernel[0], left : left + kernel[1]
            ]
            weights.append(lin(window.reshape(table.size(0), -1)))
        biases = [lin(table) for table, lin in zip(features.biases, self.bias_lins)]
        return WeightSpaceFeatures(weights, biases)

    def check_graph(self, data: Data) -> tuple[int, int]:
        """The batch's kernel grid, after checking that every network's kernels fit this lift's windows."""
        kernel_size, grids = getattr(data, "kernel_size", None), getattr(data, "kernel_grid", None)
        if not isinstance(kernel_size, Tensor) or not isinstance(grids, Tensor):
            raise ValueError("the graph records no kernel sizes: build CNN graphs with wsgraph.cnn_to_graph")
        if bool((grids != grids[:1]).any()):
            raise ValueError("the batch mixes kernel grids; batch CNN graphs with wsgraph.batch_cnn_graphs")
        grid = tuple(grids[0].tolist())
        if kernel_size.size(1) != len(self.kernel_sizes):
            raise ValueError(f"the lift is for {len(self.kernel_sizes)} weight layers, got {kernel_size.size(1)}")
        limits = torch.tensor(self.kernel_sizes, device=kernel_size.device)
        too_large = (kernel_size > limits).any(-1)
        if bool(too_large.any()):
            network, layer = (int(v) for v in too_large.nonzero()[0])
            raise ValueError(
                f"network {network} has a {tuple(kernel_size[network, layer].tolist())} kernel in weight layer "
                f"{layer + 1}; the layer reads at most {self.kernel_sizes[layer]}"
            )
        if any(h > grid[0] or w > grid[1] for h, w in self.kernel_sizes):
            raise ValueError(f"the kernel grid {grid} is smaller than the lift's kernels {self.kernel_sizes}")
        expected = grid[0] * grid[1] * self.in_channels
        if data.edge_attr.size(-1) != expected or data.x.size(-1) != self.in_channels:
            raise ValueError(
                f"expected edge features [E, {expected}] ({grid[0]}x{grid[1]} grid x {self.in_channels} channels) and "
                f"node features [N, {self.in_channels}], got {list(data.edge_attr.shape)} and {list(data.x.shape)}"
            )
        return grid

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_sizes={self.kernel_sizes}"


@renamed_kwargs(num_layers="num_weight_layers")
class CNNDWSLayer(nn.Module):
    r"""The equivariant linear layer of a CNN weight space: :class:`KernelLift`, then :class:`DWSLayer`.

    Takes a batch of CNN graphs (edge features: kernels in a grid, ``in_channels`` per
    entry) and returns the same graphs with ``out_channels`` per node and edge, ready for
    further :class:`~wsgraph.layers.DWSLayer`\ s or a :class:`~wsgraph.layers.DWSNet`.

    Args:
        in_channels (int): channels per kernel entry and bias (1 for raw weights).
        out_channels (int): output channels.
        num_weight_layers (int): weight layers :math:`M` (convolutions and linear layers).
        in_dim (int): input channels :math:`d_0` of the CNNs (3 for RGB images).
        out_dim (int): outputs :math:`d_M` of the CNNs (the classes).
        kernel_sizes: per weight layer, its largest kernel in the data.
        lift_channels (int): the common width of the lift; by default
            ``max_l kh_l * kw_l * in_channels``, the least for which the layer spans every
            equivariant linear map (docs/layers.md).
        backend (str): the DWS layer's backend, ``"scatter"`` or ``"dense"``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        kernel_sizes: Sequence[tuple[int, int]],
        lift_channels: int | None = None,
        backend: str = "scatter",
    ) -> None:
        super().__init__()
        kernel_sizes = [(int(h), int(w)) for h, w in kernel_sizes]
        if len(kernel_sizes) != num_weight_layers:
            raise ValueError(f"got {len(kernel_sizes)} kernel sizes for {num_weight_layers} weight layers")
        if lift_channels is None:
            lift_channels = max(h * w for h, w in kernel_sizes) * in_channels
        self.lift = KernelLift(in_channels, lift_channels, kernel_sizes)
        self.dws = DWSLayer(lift_channels, out_channels, num_weight_layers, in_dim, out_dim, backend)

    def forward(self, data: Data) -> Data:
        """Apply the layer to a CNN graph or batch; returns a shallow copy with new features."""
        grid = self.lift.check_graph(data)
        layout = WeightSpaceLayout.of(data)
        self.dws._check_signature(layout)
        lifted = self.lift.forward_features(layout.split(data.x, data.edge_attr), grid)
        out = copy.copy(data)
        out.x, out.edge_attr = layout.merge(self.dws.forward_features(lifted, layout))
        return out


@renamed_kwargs(num_layers="num_weight_layers", num_dws_layers="depth")
class CNNDWSNet(DWSNet):
    r"""DWSNet on CNN weight spaces: :class:`KernelLift`, then a :class:`~wsgraph.layers.DWSNet`
    (DWS layers, invariant readout, MLP head) on the lifted features.

    The lift and the first DWS layer form a :class:`CNNDWSLayer`; the output is
    invariant to permutations of every hidden channel (a hidden neuron of the graph).
    Arguments are those of :class:`~wsgraph.layers.DWSNet`, plus:

    Args:
        kernel_sizes: per weight layer, its largest kernel ``(kh, kw)`` in the data
            (``(1, 1)`` for linear layers).
        lift_channels (int, optional): the lift's common width; by default
            ``max_l kh_l * kw_l * in_channels`` (see :class:`CNNDWSLayer`).

    Shapes:
        - **input:** a batch of :math:`B` CNN graphs (``x`` :math:`(N, C_{in})`,
          ``edge_attr`` :math:`(E, H W C_{in})` for the kernel grid :math:`H \times W`)
        - **output:** :math:`(B, \text{out\_features})`
    """

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        out_features: int,
        kernel_sizes: Sequence[tuple[int, int]],
        in_channels: int = 1,
        lift_channels: int | None = None,
        **kwargs,
    ) -> None:
        kernel_sizes = [(int(h), int(w)) for h, w in kernel_sizes]
        if len(kernel_sizes) != num_weight_layers:
            raise ValueError(f"got {len(kernel_sizes)} kernel sizes for {num_weight_layers} weight layers")
        if lift_channels is None:
            lift_channels = max(h * w for h, w in kernel_sizes) * in_channels
        super().__init__(num_weight_layers, in_dim, out_dim, out_features, in_channels=lift_channels, **kwargs)
        self.lift = KernelLift(in_channels, lift_channels, kernel_sizes)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if "lift" in self._modules:  # DWSNet's constructor resets before the lift exists
            self.lift.reset_parameters()

    def forward(self, data: Data, layout: WeightSpaceLayout | None = None) -> Tensor:
        grid = self.lift.check_graph(data)
        layout = layout if layout is not None else WeightSpaceLayout.of(data)
        lifted = self.lift.forward_features(layout.split(data.x, data.edge_attr), grid)
        features = self.stack(lifted, layout)
        return self.head(self.readout.forward_features(features, layout))
