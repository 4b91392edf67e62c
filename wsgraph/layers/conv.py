"""A PyG-style convolution interface to the DWS layer: tensors in, tensors out."""

from __future__ import annotations

from torch import Tensor, nn

from wsgraph.layers.dws import DWSLayer
from wsgraph.layers.structure import WeightSpaceLayout


class DWSConv(nn.Module):
    r"""The DWS layer (:class:`~wsgraph.layers.DWSLayer`) with the calling convention of
    PyG's edge-feature convolutions, so it drops into an ordinary PyG model.

    It maps node features (biases) and edge features (weights) to new ones, exactly
    equivariant to hidden-neuron permutations; ``layer_widths`` (a key of every
    :class:`~wsgraph.WeightSpaceGraph` batch) says which networks the nodes form.

    .. math::
        (\mathbf{x}', \mathbf{e}') = \mathrm{DWS}_\Theta(\mathbf{x}, \mathbf{e})

    Args:
        in_channels (int): input feature channels.
        out_channels (int): output feature channels.
        num_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the networks' input width :math:`d_0`.
        out_dim (int): the networks' output width :math:`d_M`.
        backend (str): ``"scatter"`` or ``"dense"``.

    Shapes:
        - **input:** node features :math:`(N, C_{in})` (canonical wsgraph order), edge
          indices :math:`(2, E)` (any order), edge features :math:`(E, C_{in})`, layer
          widths :math:`(B, M+1)`
        - **output:** node features :math:`(N, C_{out})`, edge features :math:`(E, C_{out})`
          in the order of the input edges
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        in_dim: int,
        out_dim: int,
        backend: str = "scatter",
    ) -> None:
        super().__init__()
        self.layer = DWSLayer(in_channels, out_channels, num_layers, in_dim, out_dim, backend)
        self._cached: tuple[Tensor, Tensor, tuple, WeightSpaceLayout] | None = None

    def reset_parameters(self) -> None:
        self.layer.reset_parameters()

    def forward(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, layer_widths: Tensor) -> tuple[Tensor, Tensor]:
        layout = self._layout(edge_index, layer_widths, x.size(0))
        features = self.layer.forward_features(layout.split(x, edge_attr), layout)
        return layout.merge(features)

    def _layout(self, edge_index: Tensor, layer_widths: Tensor, num_nodes: int) -> WeightSpaceLayout:
        # The layout is reused only for the very tensors it was built from, unchanged since
        # (same objects, same version counters). Holding them keeps their memory from being
        # handed to the next batch, whose data pointers would otherwise match a stale layout.
        key = (edge_index._version, layer_widths._version, num_nodes)
        if self._cached is not None:
            cached_edge_index, cached_widths, cached_key, layout = self._cached
            if cached_edge_index is edge_index and cached_widths is layer_widths and cached_key == key:
                return layout
        layout = WeightSpaceLayout.build(layer_widths, edge_index.device, edge_index=edge_index, num_nodes=num_nodes)
        self._cached = (edge_index, layer_widths, key, layout)
        return layout

    def __repr__(self) -> str:
        layer = self.layer
        return (
            f"{self.__class__.__name__}({layer.in_channels}, {layer.out_channels}, num_layers={layer.num_layers}, "
            f"in_dim={layer.in_dim}, out_dim={layer.out_dim})"
        )
