r"""Weight-space transforms: symmetries, augmentations and normalisation of network graphs.

Every transform is a PyG :class:`~torch_geometric.transforms.BaseTransform` that works on
one :class:`~wsgraph.core.graph.WeightSpaceGraph` or on a :class:`~torch_geometric.data.Batch`
of them (vectorised, one random draw per network where the transform draws per network),
keeps the graph structure (``edge_index``, layer labels, widths) and changes only the
values: ``edge_attr`` (weights) and ``x`` (biases; input neurons keep their 0).
Random transforms draw from ``generator`` if given, else from torch's global generator
(which :class:`torch.utils.data.DataLoader` reseeds in every worker).

The published INR augmentations (DWSNets, ``experiments/data.py``, ``INRDataset._augment``,
used for training in its MNIST/Fashion-MNIST classification experiments) act on a network
in the order: translation, rotation, noise, dropout, scale, then per-entry normalisation:

* translation: ``t ~ U(-0.25, 0.25)^{d_0}``; with probability ``1/(M-1)`` it adds
  :math:`W_1 t` to :math:`b_1` (the INR evaluated at shifted coordinates), otherwise
  :math:`W_l \cdots W_1 t` to a deeper bias, which ignores the activations:
  :class:`RandomInputTranslation`;
* rotation, only for 2-D inputs: :math:`W_1 \leftarrow W_1 R(\theta)^\top` (``nn.Linear``
  convention), :math:`\theta \sim U(-45^\circ, 45^\circ)`: :class:`FirstLayerRotation`;
* "noise": every weight and bias layer is shifted by ``0.1 * std(layer)``, a constant,
  not a random draw (no ``randn`` in the published code): :class:`LayerStdShift`;
  :class:`GaussianWeightNoise` draws real Gaussian noise instead;
* dropout: ``F.dropout(p=0.01)`` on every weight and bias (survivors scaled by
  ``1 / (1 - p)``): :class:`WeightDropout`;
* scale: :math:`W_1 \leftarrow s W_1`, :math:`s \sim U(0.8, 1.2)`: :class:`FirstLayerScale`.

Hidden-neuron permutations (:class:`RandomHiddenPermutation`) were a separate switch,
off by default there.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from wsgraph.core.convert_cnn import kernel_entry_mask
from wsgraph.core.graph import canonical_positions, inverse_permutation, is_conv_graph
from wsgraph.core.permute import check_generator, permute_hidden
from wsgraph.deprecation import renamed_property


class RandomHiddenPermutation(BaseTransform):
    r"""Permute the hidden neurons of every network at random (a symmetry: the function
    each network computes does not change, its weights do).

    Uses :func:`wsgraph.permute_hidden`, one independent uniform permutation per hidden
    layer and network.

    Args:
        generator (torch.Generator, optional): the random generator. (default: :obj:`None`)
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        check_generator(generator, type(self).__name__)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        return permute_hidden(data, generator=self.generator)


class GaussianWeightNoise(BaseTransform):
    r"""Add independent Gaussian noise to every weight and bias.

    .. math::
        W_l \leftarrow W_l + \sigma Z, \qquad b_l \leftarrow b_l + \sigma Z',
        \qquad Z, Z' \sim \mathcal{N}(0, 1)

    Input neurons (which carry no bias) keep their 0, and on the graphs of CNNs so does
    each kernel's zero padding in the grid (only real kernel entries get noise).

    Args:
        std (float): the standard deviation :math:`\sigma` of the noise.
        generator (torch.Generator, optional): the random generator. (default: :obj:`None`)
    """

    def __init__(self, std: float, generator: torch.Generator | None = None) -> None:
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not 0 <= std < math.inf:
            raise ValueError(f"GaussianWeightNoise needs a finite std >= 0, got {std!r}")
        check_generator(generator, type(self).__name__)
        self.std = float(std)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        noise = self.std * _randn_like(data.edge_attr, self.generator)
        data.edge_attr = data.edge_attr + noise * _weight_entry_mask(data)
        noise = self.std * _randn_like(data.x, self.generator)
        data.x = data.x + noise * _bias_mask(data).unsqueeze(-1)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(std={self.std})"


class WeightDropout(BaseTransform):
    r"""Zero every weight and bias independently with probability :math:`p`, scaling the
    survivors by :math:`1 / (1 - p)` (inverted dropout, as ``F.dropout`` in the published
    recipe).

    Args:
        p (float): the probability of zeroing an entry, in :math:`[0, 1)`.
        generator (torch.Generator, optional): the random generator. (default: :obj:`None`)
    """

    def __init__(self, p: float, generator: torch.Generator | None = None) -> None:
        if not 0 <= p < 1:
            raise ValueError(f"WeightDropout needs 0 <= p < 1, got {p}")
        self.p = float(p)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        data.edge_attr = data.edge_attr * self._keep_mask(data.edge_attr)
        data.x = data.x * self._keep_mask(data.x)
        return data

    def _keep_mask(self, values: Tensor) -> Tensor:
        draws = _rand(values.shape, values, self.generator)
        return (draws >= self.p).to(values.dtype) / (1 - self.p)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p})"


class FirstLayerScale(BaseTransform):
    r"""Scale the first weight layer of each network by a random factor, which makes an
    INR show its signal zoomed: :math:`f'(x) = f(s x)`.

    .. math::
        W_1 \leftarrow s W_1, \qquad s \sim U(\text{low}, \text{high})

    The published recipe draws :math:`s \sim U(0.8, 1.2)` (the defaults).

    Args:
        low (float): the smallest factor. (default: :obj:`0.8`)
        high (float): the largest factor. (default: :obj:`1.2`)
        generator (torch.Generator, optional): the random generator. (default: :obj:`None`)
    """

    def __init__(self, low: float = 0.8, high: float = 1.2, generator: torch.Generator | None = None) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"FirstLayerScale needs finite low <= high, got low={low}, high={high}")
        self.low = float(low)
        self.high = float(high)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        draws = _rand((data.layer_widths.size(0),), data.edge_attr, self.generator)
        return scale_first_layer(data, self.low + (self.high - self.low) * draws)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(low={self.low}, high={self.high})"


class FirstLayerRotation(BaseTransform):
    r"""Rotate the input coordinates of networks with 2-D inputs (INRs of images) by a
    random angle: :math:`f'(x) = f(R(\theta)^\top x)`.

    .. math::
        W_1 \leftarrow W_1 R(\theta)^\top, \qquad
        R(\theta) = \begin{pmatrix} \cos\theta & -\sin\theta \\ \sin\theta & \cos\theta \end{pmatrix},
        \qquad \theta \sim U(-\theta_{\max}, \theta_{\max})

    in ``nn.Linear`` convention, exactly as the published recipe (``rot_mat @ W`` on its
    ``[in, out]`` weights, :math:`\theta_{\max} = 45^\circ`). Graphs of CNNs are refused:
    their input neurons are image channels, not coordinates.

    Args:
        max_angle (float): :math:`\theta_{\max}` in degrees. (default: :obj:`45.0`)
        generator (torch.Generator, optional): the random generator. (default: :obj:`None`)
    """

    def __init__(self, max_angle: float = 45.0, generator: torch.Generator | None = None) -> None:
        if not 0 <= max_angle < math.inf:
            raise ValueError(f"FirstLayerRotation needs a finite max_angle >= 0 degrees, got {max_angle}")
        self.max_angle = float(max_angle)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        draws = _rand((data.layer_widths.size(0),), data.edge_attr, self.generator)
        degrees = (2 * draws - 1) * self.max_angle
        return rotate_first_layer(data, degrees * (math.pi / 180))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(max_angle={self.max_angle})"


class RandomInputTranslation(BaseTransform):
    r"""The published translation augmentation: shift the input by :math:`t` through one
    chosen layer's bias.

    For each network, :math:`t \sim U(-\text{scale}, \text{scale})^{d_0}` and a layer
    :math:`k \sim U\{1, \dots, M - 1\}`; then

    .. math::
        b_k \leftarrow b_k + W_k W_{k-1} \cdots W_1 t.

    With :math:`k = 1` the network computes :math:`f(x + t)` exactly (an INR shows its
    signal translated); deeper :math:`k` ignore the activations between layers, as the
    published code does (``INRDataset._augment`` of DWSNets' ``experiments/data.py``).
    Networks with one weight layer are left unchanged; graphs of CNNs are refused.

    Args:
        scale (float): the largest shift per coordinate. (default: :obj:`0.25`)
        generator (torch.Generator, optional): the random generator. (default: :obj:`None`)
    """

    def __init__(self, scale: float = 0.25, generator: torch.Generator | None = None) -> None:
        if not 0 <= scale < math.inf:
            raise ValueError(f"RandomInputTranslation needs a finite scale >= 0, got {scale}")
        self.scale = float(scale)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        num_graphs = data.layer_widths.size(0)
        num_weight_layers = _num_weight_layers(data)
        widest_input = int(data.layer_widths[:, 0].max())
        offsets = (2 * _rand((num_graphs, widest_input), data.edge_attr, self.generator) - 1) * self.scale
        draws = _rand((num_graphs,), data.edge_attr, self.generator)
        # k uniform on 1..M-1 per network (M its own number of weight layers).
        choices = (num_weight_layers - 1).clamp(min=1).to(draws)
        layers = (1 + (draws * choices).floor().long()).clamp(max=(num_weight_layers - 1).clamp(min=1))
        layers = torch.where(num_weight_layers > 1, layers, torch.zeros_like(layers))
        return translate_inputs(data, offsets, layers)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(scale={self.scale})"


class LayerStdShift(BaseTransform):
    r"""The published "noise" augmentation, which is a deterministic shift: every weight
    layer and every bias layer of each network is moved by a fraction of its own
    standard deviation,

    .. math::
        W_l \leftarrow W_l + \alpha\, \mathrm{std}(W_l), \qquad
        b_l \leftarrow b_l + \alpha\, \mathrm{std}(b_l),

    with the unbiased standard deviation over the layer's entries, :math:`\alpha = 0.1`.
    The DWSNets code calls this noise (``w + w.std() * noise_scale``), but nothing in it
    is random; it is kept as written so that the published protocol can be reproduced.
    :class:`GaussianWeightNoise` adds real noise. A layer with a single entry (e.g. the
    bias of a one-output network) has no standard deviation and is left unchanged, as
    the published code does for biases. On the graphs of CNNs the standard deviation is
    over the real kernel entries of the layer and the zero padding of the grid stays zero.

    Args:
        fraction (float): :math:`\alpha`. (default: :obj:`0.1`)
    """

    def __init__(self, fraction: float = 0.1) -> None:
        if not math.isfinite(fraction):
            raise ValueError(f"LayerStdShift needs a finite fraction, got {fraction}")
        self.fraction = float(fraction)

    def forward(self, data: Data) -> Data:
        num_groups = _num_weight_layers(data).max().item() + 1
        edge_group = _edge_graph(data) * num_groups + data.edge_layer
        entries = _weight_entry_mask(data)
        shift = self.fraction * _group_std(data.edge_attr, edge_group, entries)
        data.edge_attr = data.edge_attr + shift * entries
        is_bias = _bias_mask(data)
        node_group = _node_graph(data) * num_groups + data.node_layer
        shift = self.fraction * _group_std(data.x, torch.where(is_bias, node_group, -1))
        data.x = data.x + shift * is_bias.unsqueeze(-1)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(fraction={self.fraction})"


def translate_inputs(data: Data, offsets: Tensor, layers: Tensor) -> Data:
    r"""Add :math:`W_k \cdots W_1 t_n` to bias layer :math:`k = \text{layers}[n]` of network ``n``.

    Args:
        data: a graph or batch with one weight channel (``edge_attr`` of shape ``[E, 1]``).
        offsets: ``[B, d]`` the input shifts :math:`t_n`, ``d`` at least every network's
            input width (extra columns are ignored).
        layers: ``[B]`` the bias layer each network's shift lands in, ``0`` for none.
    """
    _refuse_conv_graph(data, "input translation")
    if data.edge_attr.dim() != 2 or data.edge_attr.size(1) != 1:
        raise ValueError(
            f"translate_inputs needs one weight channel, got edge_attr of shape {tuple(data.edge_attr.shape)}"
        )
    networks, widest_input = int(data.layer_widths.size(0)), int(data.layer_widths[:, 0].max())
    if offsets.dim() != 2 or offsets.size(0) != networks or offsets.size(1) < widest_input:
        raise ValueError(
            f"translate_inputs needs offsets of shape [{networks}, >= {widest_input}] (one shift per network and "
            f"input), got {tuple(offsets.shape)}"
        )
    layers_deep = data.layer_widths.size(1) - 1
    if tuple(layers.shape) != (networks,) or bool(((layers < 0) | (layers > layers_deep)).any()):
        raise ValueError(
            f"translate_inputs needs layers of shape [{networks}] with bias layers in 0..{layers_deep}, "
            f"got {layers.tolist()}"
        )
    source, target = data.edge_index
    node_graph = _node_graph(data)
    weights = data.edge_attr[:, 0]
    # value[i]: W_l ... W_1 t at neuron i of layer l, built one layer at a time.
    is_input = data.node_layer == 0
    value = torch.where(is_input, offsets.to(weights)[node_graph, data.node_index.clamp(max=offsets.size(1) - 1)], 0.0)
    shift = torch.zeros_like(value)
    for layer in range(1, int(layers.max().clamp(min=0)) + 1):
        on_layer = data.edge_layer == layer
        value = torch.zeros_like(value).index_add_(0, target[on_layer], weights[on_layer] * value[source[on_layer]])
        lands = (data.node_layer == layer) & (layers.to(node_graph.device)[node_graph] == layer)
        shift = shift + torch.where(lands, value, 0.0)
    out = copy.copy(data)
    out.x = data.x + shift.unsqueeze(-1)
    return out


@dataclass(frozen=True)
class LayerStatistics:
    """Per weight layer ``l = 1..M`` (index ``l - 1``): mean and standard deviation of the
    weights of that layer and of its biases, each a tensor of shape ``[M]``.

    A layer whose entries are all equal has standard deviation 0 and is stored with 1,
    so that normalising it only subtracts the mean.
    """

    weight_mean: Tensor
    weight_std: Tensor
    bias_mean: Tensor
    bias_std: Tensor

    def __post_init__(self) -> None:
        shapes = {tuple(t.shape) for t in (self.weight_mean, self.weight_std, self.bias_mean, self.bias_std)}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"LayerStatistics needs four tensors of shape [M], got shapes {sorted(shapes)}")
        for name in ("weight_mean", "weight_std", "bias_mean", "bias_std"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise ValueError(f"LayerStatistics needs finite values; {name} is {getattr(self, name).tolist()}")
        if bool((self.weight_std <= 0).any()) or bool((self.bias_std <= 0).any()):
            raise ValueError("LayerStatistics needs positive standard deviations")

    @property
    def num_weight_layers(self) -> int:
        return self.weight_mean.numel()

    num_layers = renamed_property("num_weight_layers", "LayerStatistics.num_layers")

    def to_dict(self) -> dict[str, Tensor]:
        return {
            "weight_mean": self.weight_mean,
            "weight_std": self.weight_std,
            "bias_mean": self.bias_mean,
            "bias_std": self.bias_std,
        }


class NormalizeWeights(BaseTransform):
    r"""Standardise the weights and biases of each layer with fixed statistics.

    .. math::
        W_l \leftarrow \frac{W_l - \mu^W_l}{\sigma^W_l}, \qquad
        b_l \leftarrow \frac{b_l - \mu^b_l}{\sigma^b_l}

    One scalar pair per weight layer and per bias layer, so normalisation commutes with
    hidden-neuron permutations and applies to any hidden widths. (The published recipe
    normalises every weight entry by its own mean and deviation over training INRs,
    which is not permutation invariant.) :meth:`inverse` undoes it exactly up to float
    rounding, for tasks that edit weights. Input neurons keep their 0. On the graphs of
    CNNs the statistics are those of the real kernel entries of each layer (as
    :attr:`WeightSpaceDataset.statistics` counts them) and a kernel's zero padding in the
    grid stays exactly zero, both ways.

    Args:
        stats (LayerStatistics): the statistics, e.g. :attr:`WeightSpaceDataset.statistics`.
    """

    def __init__(self, stats: LayerStatistics) -> None:
        self.stats = stats

    def forward(self, data: Data) -> Data:
        return self._apply(data, inverse=False)

    def inverse(self, data: Data) -> Data:
        """Map normalised weights and biases back to the original scale."""
        return self._apply(copy.copy(data), inverse=True)

    def _apply(self, data: Data, inverse: bool) -> Data:
        num_weight_layers = data.layer_widths.size(1) - 1
        if num_weight_layers != self.stats.num_weight_layers:
            raise ValueError(
                f"these statistics are for {self.stats.num_weight_layers} weight layers, the graph has {num_weight_layers}"
            )
        edge_layer = data.edge_layer - 1
        data.edge_attr = _affine(data.edge_attr, edge_layer, self.stats.weight_mean, self.stats.weight_std, inverse)
        if is_conv_graph(data):
            # The statistics are over real kernel entries; a kernel's zero padding stays zero.
            data.edge_attr = torch.where(kernel_entry_mask(data), data.edge_attr, 0.0)
        is_bias = _bias_mask(data)
        node_layer = (data.node_layer - 1).clamp(min=0)
        scaled = _affine(data.x, node_layer, self.stats.bias_mean, self.stats.bias_std, inverse)
        data.x = torch.where(is_bias.unsqueeze(-1), scaled, data.x)
        return data

    def __repr__(self) -> str:
        parts = ", ".join(f"{name}={_format_values(value)}" for name, value in self.stats.to_dict().items())
        return f"{self.__class__.__name__}({parts})"


def _per_network(data: Data, values: Tensor, function: str, name: str) -> Tensor:
    """``values`` as a tensor of one entry per network of ``data``, or a ``ValueError`` naming them."""
    networks = int(data.layer_widths.size(0))
    values = torch.as_tensor(values)
    if tuple(values.shape) != (networks,):
        raise ValueError(f"{function} needs {name} of shape [{networks}] (one per network), got {tuple(values.shape)}")
    return values


def scale_first_layer(data: Data, factors: Tensor) -> Data:
    """Multiply the first weight layer of network ``n`` by ``factors[n]``.

    Args:
        data: a graph or batch.
        factors: ``[B]``, one factor per network.
    """
    factors = _per_network(data, factors, "scale_first_layer", "factors")
    first = _first_layer_edges(data)
    out = copy.copy(data)
    factor = factors.to(data.edge_attr)[_edge_graph(data)[first]].unsqueeze(-1)
    out.edge_attr = data.edge_attr.index_put((first,), data.edge_attr[first] * factor)
    return out


def rotate_first_layer(data: Data, angles: Tensor) -> Data:
    r"""Rotate the 2-D input coordinates of network ``n`` by ``angles[n]`` radians:
    the result computes :math:`f(R(\theta)^\top x)` (see :class:`FirstLayerRotation`).

    Args:
        data: a graph or batch of networks with 2-D inputs, edges in any order.
        angles: ``[B]``, one angle per network, in radians.
    """
    _refuse_conv_graph(data, "first-layer rotation")
    if bool((data.layer_widths[:, 0] != 2).any()):
        found = sorted(set(data.layer_widths[:, 0].tolist()))
        raise ValueError(f"first-layer rotation needs networks with 2-D inputs, got input widths {found}")
    angles = _per_network(data, angles, "rotate_first_layer", "angles")
    first = _first_layer_edges(data)
    row = data.node_index[data.edge_index[0, first]]
    graph = _edge_graph(data)[first]
    width = data.layer_widths[graph, 1]
    positions = canonical_positions(data)
    # In canonical order W_1[0, j] and W_1[1, j] lie d_1 edges apart.
    if positions is None:
        partner = first + (1 - 2 * row) * width
    else:
        partner = inverse_permutation(positions)[positions[first] + (1 - 2 * row) * width]
    angle = angles.to(data.edge_attr)[graph].unsqueeze(-1)
    sign = (2 * row - 1).to(data.edge_attr).unsqueeze(-1)
    own, other = data.edge_attr[first], data.edge_attr[partner]
    out = copy.copy(data)
    out.edge_attr = data.edge_attr.index_put((first,), torch.cos(angle) * own + sign * torch.sin(angle) * other)
    return out


def _affine(values: Tensor, layer: Tensor, mean: Tensor, std: Tensor, inverse: bool) -> Tensor:
    mean = mean.to(values)[layer].unsqueeze(-1)
    std = std.to(values)[layer].unsqueeze(-1)
    return values * std + mean if inverse else (values - mean) / std


def _bias_mask(data: Data) -> Tensor:
    return data.node_layer > 0


def _weight_entry_mask(data: Data) -> Tensor:
    """Which entries of ``edge_attr`` are weights: all of them, except a CNN kernel's padding in its grid."""
    if is_conv_graph(data):
        return kernel_entry_mask(data).to(data.edge_attr.dtype)
    return torch.ones((), dtype=data.edge_attr.dtype, device=data.edge_attr.device)


def _refuse_conv_graph(data: Data, what: str) -> None:
    if is_conv_graph(data):
        raise ValueError(
            f"{what} acts on the input coordinates of MLPs (INRs); this is the graph of a CNN, "
            "whose input neurons are image channels"
        )


def _node_graph(data: Data) -> Tensor:
    batch = getattr(data, "batch", None)
    return data.node_layer.new_zeros(data.node_layer.size(0)) if batch is None else batch


def _num_weight_layers(data: Data) -> Tensor:
    """``[B]`` the number of weight layers of each network (``layer_widths`` is padded with zeros)."""
    return (data.layer_widths > 0).sum(dim=1) - 1


def _group_std(values: Tensor, group: Tensor, entries: Tensor | None = None) -> Tensor:
    """Per row, the unbiased std of its group's entries (0 for groups of one entry; group -1: none).

    ``entries`` (broadcastable to ``values``), if given, marks the entries that count.
    """
    valid = group >= 0
    group = torch.where(valid, group, 0)
    size = int(group.max()) + 1 if group.numel() else 1
    counted = torch.ones_like(values, dtype=torch.float64) if entries is None else entries.double().expand_as(values)
    doubles = values.double() * counted
    entries = doubles.sum(dim=-1) if values.dim() > 1 else doubles
    per_row = counted.sum(dim=-1) if values.dim() > 1 else counted
    mask = valid.double()
    count = torch.zeros(size, dtype=torch.float64, device=values.device).index_add_(0, group, mask * per_row)
    total = torch.zeros_like(count).index_add_(0, group, entries * mask)
    squares = doubles.square()
    squares = squares.sum(dim=-1) if values.dim() > 1 else squares
    total_sq = torch.zeros_like(count).index_add_(0, group, squares * mask)
    variance = (total_sq - total.square() / count.clamp(min=1)) / (count - 1).clamp(min=1)
    std = torch.where(count > 1, variance.clamp(min=0).sqrt(), 0.0)
    return (std[group] * mask).to(values.dtype).unsqueeze(-1)


def _first_layer_edges(data: Data) -> Tensor:
    return (data.edge_layer == 1).nonzero().view(-1)


def _edge_graph(data: Data) -> Tensor:
    batch = getattr(data, "batch", None)
    if batch is None:
        return data.edge_index.new_zeros(data.edge_index.size(1))
    return batch[data.edge_index[0]]


def _rand(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.rand(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def _randn_like(like: Tensor, generator: torch.Generator | None) -> Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def _format_values(values: Tensor) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values.tolist()) + "]"
