"""A PyG-style convolution interface to the DWS layer: tensors in, tensors out."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.dws import DWSLayer
from wsgraph.layers.structure import WeightSpaceLayout


@renamed_kwargs(num_layers="num_weight_layers")
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
        num_weight_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the networks' input width :math:`d_0`.
        out_dim (int): the networks' output width :math:`d_M`.
        backend (str): ``"scatter"`` or ``"dense"``.

    Shapes:
        - **input:** node features :math:`(N, C_{in})` (canonical wsgraph order), edge
          indices :math:`(2, E)` (any order), edge features :math:`(E, C_{in})`, layer
          widths :math:`(B, M+1)`
        - **output:** node features :math:`(N, C_{out})`, edge features :math:`(E, C_{out})`
          in the order of the input edges

    The batch's :class:`~wsgraph.layers.WeightSpaceLayout` is built and checked against
    ``edge_index`` once, kept on that tensor, and shared by every ``DWSConv`` (and every
    wsgraph model) that is called with it; ``layout=`` hands one over explicitly, e.g.
    inside a model compiled as a whole with ``torch.compile(fullgraph=True)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        backend: str = "scatter",
    ) -> None:
        super().__init__()
        self.layer = DWSLayer(in_channels, out_channels, num_weight_layers, in_dim, out_dim, backend)
        self.register_forward_pre_hook(_supply_conv_layout, with_kwargs=True)

    def reset_parameters(self) -> None:
        self.layer.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        layer_widths: Tensor,
        layout: WeightSpaceLayout | None = None,
    ) -> tuple[Tensor, Tensor]:
        if layout is None:
            layout = WeightSpaceLayout.of_edges(edge_index, layer_widths, x.size(0))
        self.layer._check_signature(layout)
        features = self.layer.forward_features(layout.split(x, edge_attr), layout)
        return layout.merge(features)

    def __repr__(self) -> str:
        layer = self.layer
        return (
            f"{self.__class__.__name__}({layer.in_channels}, {layer.out_channels}, num_weight_layers={layer.num_weight_layers}, "
            f"in_dim={layer.in_dim}, out_dim={layer.out_dim})"
        )


@torch.compiler.disable
def _supply_conv_layout(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Forward pre-hook: the layout of ``(x, edge_index, _, layer_widths)``, outside what torch.compile traces."""
    if kwargs.get("layout") is not None:
        return None
    named = dict(zip(("x", "edge_index", "edge_attr", "layer_widths"), args)) | kwargs
    if not all(isinstance(named.get(key), Tensor) for key in ("x", "edge_index", "layer_widths")):
        return None
    layout = WeightSpaceLayout.of_edges(named["edge_index"], named["layer_widths"], named["x"].size(0))
    return args, {**kwargs, "layout": layout}
