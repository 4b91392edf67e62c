"""DWSNet models: invariant predictors and equivariant weight editors built from DWS layers."""

from __future__ import annotations

import copy
import itertools

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from wsgraph.checks import require_positive_counts
from wsgraph.datasets.transforms import LayerStatistics
from wsgraph.deprecation import renamed_kwargs
from wsgraph.layers.blocks import WeightSpaceActivation, WeightSpaceDropout, WeightSpaceNorm, residual
from wsgraph.layers.defaults import DEPTH, HIDDEN_CHANNELS
from wsgraph.layers.dws import BACKENDS, DWSLayer
from wsgraph.layers.probe import ProbeFeatures
from wsgraph.layers.readout import InvariantReadout
from wsgraph.layers.signature import check_features, check_signature
from wsgraph.layers.structure import WeightSpaceFeatures, WeightSpaceLayout, supply_layout


@renamed_kwargs(num_layers="num_weight_layers", num_dws_layers="depth")
class DWSStack(nn.Module):
    r"""``depth`` DWS layers, each followed by normalisation, ReLU and dropout.

    Args:
        in_channels (int): input channels (1 for raw weights).
        hidden_channels (int): channels of every layer's output.
        depth (int): how many DWS layers.
        num_weight_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the networks' input width :math:`d_0`.
        out_dim (int): the networks' output width :math:`d_M`.
        norm (str, optional): ``"layer"``, ``"batch"`` or ``None`` (see
            :class:`~wsgraph.layers.blocks.WeightSpaceNorm`).
        dropout (float): dropout probability after each layer.
        backend (str): ``"scatter"`` or ``"dense"``.
        owner (str): the model an error about these sizes names (the one that builds the stack).
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        depth: int,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        norm: str | None = "batch",
        dropout: float = 0.0,
        backend: str = "scatter",
        *,
        owner: str = "DWSStack",
    ) -> None:
        super().__init__()
        require_positive_counts(
            owner,
            in_channels=in_channels,
            hidden_channels=hidden_channels,
            depth=depth,
            num_weight_layers=num_weight_layers,
            in_dim=in_dim,
            out_dim=out_dim,
        )
        channels = [in_channels] + [hidden_channels] * depth
        self.convs = nn.ModuleList(
            DWSLayer(c_in, c_out, num_weight_layers, in_dim, out_dim, backend=backend)
            for c_in, c_out in itertools.pairwise(channels)
        )
        self.norms = nn.ModuleList(
            WeightSpaceNorm(hidden_channels, num_weight_layers, norm) if norm else nn.Identity() for _ in self.convs
        )
        self.activation = WeightSpaceActivation(nn.ReLU())
        self.dropout = WeightSpaceDropout(dropout)

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters(gain=2**0.5)
        for norm in self.norms:
            if isinstance(norm, WeightSpaceNorm):
                norm.reset_parameters()

    def forward(self, features: WeightSpaceFeatures, layout: WeightSpaceLayout) -> WeightSpaceFeatures:
        for conv, norm in zip(self.convs, self.norms):
            features = self.dropout(self.activation(norm(conv.forward_features(features, layout))))
        return features


class _DWSModel(nn.Module):
    """What DWSNet and DWSEditNet share: the networks' signature and a :class:`DWSStack`."""

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        in_channels: int,
        hidden_channels: int,
        depth: int,
        norm: str | None,
        dropout: float,
        backend: str,
    ) -> None:
        super().__init__()
        self.num_weight_layers, self.in_dim, self.out_dim = num_weight_layers, in_dim, out_dim
        self.stack = DWSStack(
            in_channels,
            hidden_channels,
            depth,
            num_weight_layers,
            in_dim,
            out_dim,
            norm,
            dropout,
            backend,
            owner=type(self).__name__,
        )
        # The batch's layout is built (or found) once per call, before `forward` and
        # outside what torch.compile traces, and every layer below reads that one object.
        self.register_forward_pre_hook(supply_layout, with_kwargs=True)

    def set_backend(self, backend: str) -> None:
        """Run every DWS layer and readout with ``backend`` (``"scatter"`` or ``"dense"``)."""
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        for module in self.modules():
            if isinstance(module, (DWSLayer, InvariantReadout)):
                module.backend = backend

    def extra_repr(self) -> str:
        return f"num_weight_layers={self.num_weight_layers}, in_dim={self.in_dim}, out_dim={self.out_dim}"


@renamed_kwargs(num_layers="num_weight_layers", num_dws_layers="depth")
class DWSNet(_DWSModel):
    r"""DWSNet for classification and regression on networks (Navon et al., ICML 2023):
    a stack of DWS layers, an invariant readout and an MLP head.

    .. math::
        \hat y = \mathrm{MLP}\big(\mathrm{readout}(\sigma(L_K \cdots \sigma(L_1(W, b))))\big)

    The output is invariant to hidden-neuron permutations of the input networks.

    Args:
        num_weight_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the networks' input width :math:`d_0`.
        out_dim (int): the networks' output width :math:`d_M`.
        out_features (int): classes (logits) or regression targets.
        in_channels (int): channels of the input graphs (1 for raw weights).
        hidden_channels (int): channels of the DWS layers.
        depth (int): how many DWS layers.
        readout (str): ``"mean"``, ``"sum"`` or ``"max"``.
        head_hidden (int): width of the MLP head's hidden layer.
        norm (str, optional): per-object normalisation after each DWS layer.
        dropout (float): dropout after each DWS layer and in the head.
        backend (str): ``"scatter"`` or ``"dense"``.
        probe_features (int): learned input points :math:`K` at which the networks are run
            (:class:`~wsgraph.layers.probe.ProbeFeatures`); each neuron's :math:`K`
            values, mapped by its layer's linear map and layer norm, join its bias as
            :math:`K` more channels, and every weight gets :math:`K` zero channels (a
            DWS layer has the same channels on weights and biases). Hidden-neuron
            permutations permute the values with the neurons, so the model stays
            invariant. ``0`` for none; needs ``in_channels=1``.
        probe_statistics (LayerStatistics, optional): the normalisation the inputs
            carry, which the probe features undo to run the networks. (default:
            :obj:`None`, raw weights)

    Shapes:
        - **input:** a batch of :math:`B` networks (``x`` :math:`(N, C_{in})`,
          ``edge_attr`` :math:`(E, C_{in})`)
        - **output:** :math:`(B, \text{out\_features})`
    """

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        out_features: int,
        in_channels: int = 1,
        hidden_channels: int = HIDDEN_CHANNELS["dwsnet"],
        depth: int = DEPTH["dwsnet"],
        readout: str = "mean",
        head_hidden: int = 128,
        norm: str | None = "batch",
        dropout: float = 0.0,
        backend: str = "scatter",
        probe_features: int = 0,
        probe_statistics: LayerStatistics | None = None,
    ) -> None:
        require_positive_counts("DWSNet", out_features=out_features, head_hidden=head_hidden)
        if probe_features < 0 or (probe_features and in_channels != 1):
            raise ValueError(
                f"probe_features must be >= 0 and needs in_channels=1, got {probe_features} and {in_channels}"
            )
        super().__init__(
            num_weight_layers,
            in_dim,
            out_dim,
            in_channels + probe_features,
            hidden_channels,
            depth,
            norm,
            dropout,
            backend,
        )
        self.out_features = out_features
        self.probe_features = probe_features
        self.probe = (
            ProbeFeatures(num_weight_layers, in_dim, probe_features, probe_features, probe_statistics)
            if probe_features
            else None
        )
        self.readout = InvariantReadout(hidden_channels, num_weight_layers, in_dim, out_dim, readout, backend)
        self.head = nn.Sequential(
            nn.Linear(self.readout.out_features, head_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, out_features),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.stack.reset_parameters()
        for module in self.head:
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        if self.probe is not None:
            self.probe.reset_parameters()

    def forward(self, data: Data, layout: WeightSpaceLayout | None = None) -> Tensor:
        layout = layout if layout is not None else WeightSpaceLayout.of(data)
        check_signature(self, layout)
        x, edge_attr = data.x, data.edge_attr
        check_features(self, x, edge_attr, self.stack.convs[0].in_channels - self.probe_features)
        if self.probe is not None:
            x = torch.cat([x, self.probe(data)], dim=-1)
            edge_attr = torch.cat([edge_attr, edge_attr.new_zeros(edge_attr.size(0), self.probe_features)], dim=-1)
        features = self.stack(layout.split(x, edge_attr), layout)
        return self.head(self.readout.forward_features(features, layout))

    def extra_repr(self) -> str:
        probes = f", probe_features={self.probe_features}" if self.probe_features else ""
        return f"{super().extra_repr()}, out_features={self.out_features}{probes}"


@renamed_kwargs(num_layers="num_weight_layers", num_dws_layers="depth")
class DWSEditNet(_DWSModel):
    r"""An equivariant weight editor: maps networks to networks of the same architecture,
    e.g. to change what an implicit neural representation shows (INR dilation).

    .. math::
        (W', b') = (W, b) + \alpha \, L_{out}(\mathrm{DWSStack}(W, b))

    with :math:`\alpha = 1` when ``residual`` (otherwise the input is not added). The last
    layer starts small (gain ``0.1``) so a residual editor starts near the identity.

    Args:
        num_weight_layers (int): the number :math:`M` of weight layers of the networks.
        in_dim (int): the networks' input width :math:`d_0`.
        out_dim (int): the networks' output width :math:`d_M`.
        in_channels (int): channels of the input (and output) graphs.
        hidden_channels (int): channels of the hidden DWS layers.
        depth (int): hidden DWS layers before the output layer.
        residual (bool): add the input weights to the predicted update.
        norm (str, optional): per-object normalisation after each hidden layer.
        dropout (float): dropout after each hidden layer.
        backend (str): ``"scatter"`` or ``"dense"``.

    Shapes:
        - **input:** a graph or batch with ``x`` :math:`(N, C_{in})`, ``edge_attr`` :math:`(E, C_{in})`
        - **output:** the same structure with edited ``x`` and ``edge_attr`` (:math:`C_{in}`
          channels; input neurons keep zero rows)
    """

    def __init__(
        self,
        num_weight_layers: int,
        in_dim: int,
        out_dim: int,
        in_channels: int = 1,
        hidden_channels: int = HIDDEN_CHANNELS["dwsnet"],
        depth: int = DEPTH["dwsnet"],
        residual: bool = True,
        norm: str | None = "batch",
        dropout: float = 0.0,
        backend: str = "scatter",
    ) -> None:
        super().__init__(
            num_weight_layers, in_dim, out_dim, in_channels, hidden_channels, depth, norm, dropout, backend
        )
        self.residual = residual
        self.output = DWSLayer(hidden_channels, in_channels, num_weight_layers, in_dim, out_dim, backend=backend)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.stack.reset_parameters()
        self.output.reset_parameters(gain=0.1)

    def forward(self, data: Data, layout: WeightSpaceLayout | None = None) -> Data:
        layout = layout if layout is not None else WeightSpaceLayout.of(data)
        check_signature(self, layout)
        check_features(self, data.x, data.edge_attr, self.output.out_channels)
        inputs = layout.split(data.x, data.edge_attr)
        update = self.output.forward_features(self.stack(inputs, layout), layout)
        edited = residual(inputs, update) if self.residual else update
        out = copy.copy(data)
        out.x, out.edge_attr = layout.merge(edited)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, residual={self.residual}"
