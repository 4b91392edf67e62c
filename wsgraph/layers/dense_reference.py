r"""The DWS layer written out term by term on dense tensors: an independent check of :class:`DWSLayer`.

For one architecture with widths ``d_0..d_M`` the weights are ``[B, d_{l-1}, d_l, C]``
(wsgraph's convention: the row index is the neuron of layer ``l-1``, the transpose of
``nn.Linear.weight``) and the biases ``[B, d_l, C]``. The objects are ``W_l``, indexed by
the neurons of layers ``(l-1, l)``, and ``b_l``, indexed by layer ``l``; the hidden
layers ``1..M-1`` are permuted, layers ``0`` and ``M`` are not. Every term of the
characterisation in docs/layers.md,

.. math::
    Y' = \sum_X \sum_{T \subseteq S(X, Y)} \mathrm{bcast}^Y_T\big(\mathrm{mean}^X_{\bar T}(X)\big)\,
         \Theta_{X \to Y, T} + \beta_Y,

is one :class:`Term` here, computed on its own by one mean and one ``torch.einsum``.
The input and output neurons stay tensor axes that :math:`\Theta` contracts and
produces, instead of being folded into channels as the layer does.

This module reads a :class:`DWSLayer`'s parameters and nothing else of it: not its
forward pass, its primitive ops or its folding. So a wrong term, a wrong fold or a
wrong broadcast in the layer, which both of its backends would share, shows up as a
disagreement with :func:`dws_layer_dense_reference` (tests/layers/test_dense_reference.py).
It runs one einsum per term (``sum 2^|S|`` of them: 25 for ``M = 2``, 139 for
``M = 5``), which is fine for tests and nothing else.

How the layer stores :math:`\Theta` and :math:`\beta` (the only thing shared with it):

* ``T = {}``: ``graph_lin``. Its rows list the objects ``W_1..W_M, b_1..b_M`` one after
  the other, each as (its non-permuted neurons in axis order, row-major) x ``C_out``;
  its columns the same with ``C_in``. Its bias holds every :math:`\beta_Y`, laid out like
  the rows.
* ``T = {k}``: ``node_lins[k-1]``, laid out the same way over ``b_k, W_k, W_{k+1}``.
* ``T = {l-1, l}``: ``edge_lins[l-2]``, ``C_out x C_in`` (``W_l -> W_l`` with both of its
  neuron layers hidden).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from wsgraph.deprecation import renamed_kwargs

if TYPE_CHECKING:
    from wsgraph.layers.cnn_dws import CNNDWSLayer
    from wsgraph.layers.dws import DWSLayer

# The einsum index of the neuron of layer k is NEURON_INDICES[k]; a target's non-permuted
# neurons, which Theta maps the source's to, use the upper-case letter.
NEURON_INDICES = "ijklmnopqrstuvwx"
BATCH_INDEX, IN_CHANNEL, OUT_CHANNEL = "b", "c", "d"


@dataclass(frozen=True)
class Term:
    """``source -> target`` keeping the shared hidden indices ``kept`` (the :math:`T` of the sum).

    The source is averaged over its hidden indices outside ``kept``; the result is copied
    along the target's hidden indices outside ``kept``.
    """

    source: str
    target: str
    kept: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target} keep {{{', '.join(map(str, self.kept))}}}"

    def pooled_layers(self, num_weight_layers: int) -> tuple[int, ...]:
        """The hidden layers the source is averaged over."""
        return tuple(k for k in neuron_layers(self.source) if is_hidden(k, num_weight_layers) and k not in self.kept)

    def equation(self, num_weight_layers: int) -> str:
        """The einsum of this term: pooled source, coefficients -> target (before the copy along pooled axes)."""
        pooled = self.pooled_layers(num_weight_layers)
        source_axes = "".join(NEURON_INDICES[k] for k in neuron_layers(self.source) if k not in pooled)
        source_fixed = "".join(NEURON_INDICES[k] for k in fixed_layers(self.source, num_weight_layers))
        target_fixed = "".join(NEURON_INDICES[k].upper() for k in fixed_layers(self.target, num_weight_layers))
        target_axes = "".join(
            NEURON_INDICES[k] if k in self.kept else NEURON_INDICES[k].upper()
            for k in neuron_layers(self.target)
            if k in self.kept or not is_hidden(k, num_weight_layers)
        )
        return (
            f"{BATCH_INDEX}{source_axes}{IN_CHANNEL},{target_fixed}{OUT_CHANNEL}{source_fixed}{IN_CHANNEL}"
            f"->{BATCH_INDEX}{target_axes}{OUT_CHANNEL}"
        )


def is_hidden(layer: int, num_weight_layers: int) -> bool:
    return 0 < layer < num_weight_layers


def object_names(num_weight_layers: int) -> list[str]:
    """``W1..WM, b1..bM``: the order of ``graph_lin``'s blocks."""
    return [f"W{layer}" for layer in range(1, num_weight_layers + 1)] + [
        f"b{layer}" for layer in range(1, num_weight_layers + 1)
    ]


def neuron_layers(name: str) -> tuple[int, ...]:
    """The layers whose neurons index the object's axes: ``(l-1, l)`` for ``W_l``, ``(l,)`` for ``b_l``."""
    layer = int(name[1:])
    return (layer - 1, layer) if name[0] == "W" else (layer,)


def fixed_layers(name: str, num_weight_layers: int) -> tuple[int, ...]:
    """The object's axes that are input or output neurons, which no symmetry moves."""
    return tuple(k for k in neuron_layers(name) if not is_hidden(k, num_weight_layers))


@renamed_kwargs(num_layers="num_weight_layers")
def dws_terms(num_weight_layers: int) -> list[Term]:
    """Every term of the layer: for each target, each source and each subset of their shared hidden layers."""
    if not 1 <= num_weight_layers < len(NEURON_INDICES):
        raise ValueError(
            f"the dense reference handles 1 to {len(NEURON_INDICES) - 1} weight layers, got {num_weight_layers}"
        )
    terms = []
    names = object_names(num_weight_layers)
    for target, source in itertools.product(names, names):
        shared = sorted(
            k for k in set(neuron_layers(source)) & set(neuron_layers(target)) if is_hidden(k, num_weight_layers)
        )
        for size in range(len(shared) + 1):
            terms.extend(Term(source, target, kept) for kept in itertools.combinations(shared, size))
    return terms


def dws_layer_dense_reference(
    layer: DWSLayer, weights: Sequence[Tensor], biases: Sequence[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """What ``layer`` computes, from its parameters alone, on one architecture.

    Args:
        layer: the layer whose parameters are read.
        weights: per weight layer ``l = 1..M``, ``[B, d_{l-1}, d_l, C_in]``.
        biases: per weight layer, ``[B, d_l, C_in]``.

    Returns:
        ``(weights, biases)`` with ``C_out`` channels, shaped like the inputs.
    """
    widths = _check_inputs(layer, weights, biases)
    values = _named_objects(weights, biases)
    batch = weights[0].size(0)
    outputs = {
        name: object_constant(layer, name, widths).expand(batch, *(widths[k] for k in neuron_layers(name)), -1)
        for name in values
    }
    for term, value in dws_layer_dense_terms(layer, weights, biases).items():
        outputs[term.target] = outputs[term.target] + value
    layers = range(1, layer.num_weight_layers + 1)
    return [outputs[f"W{index}"] for index in layers], [outputs[f"b{index}"] for index in layers]


def dws_layer_dense_terms(layer: DWSLayer, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> dict[Term, Tensor]:
    """Each term's contribution to its target, with size-1 axes where it is copied along the target.

    Arguments as for :func:`dws_layer_dense_reference`, which adds these and the constants.
    """
    widths = _check_inputs(layer, weights, biases)
    num_weight_layers = layer.num_weight_layers
    values = _named_objects(weights, biases)
    contributions = {}
    for term in dws_terms(num_weight_layers):
        source_layers = neuron_layers(term.source)
        pooled_axes = [1 + source_layers.index(k) for k in term.pooled_layers(num_weight_layers)]
        source = values[term.source]
        pooled = source.mean(dim=pooled_axes) if pooled_axes else source
        value = torch.einsum(term.equation(num_weight_layers), pooled, term_coefficients(layer, term, widths))
        for axis, k in enumerate(neuron_layers(term.target), start=1):
            if is_hidden(k, num_weight_layers) and k not in term.kept:
                value = value.unsqueeze(axis)
        contributions[term] = value
    return contributions


def _named_objects(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> dict[str, Tensor]:
    named = {f"W{index}": weight for index, weight in enumerate(weights, start=1)}
    named.update({f"b{index}": bias for index, bias in enumerate(biases, start=1)})
    return named


def term_coefficients(layer: DWSLayer, term: Term, widths: tuple[int, ...]) -> Tensor:
    r""":math:`\Theta_{X \to Y, T}` as ``[*target's fixed neurons, C_out, *source's fixed neurons, C_in]``."""
    num_weight_layers = layer.num_weight_layers
    if not term.kept:
        matrix, names = layer.graph_lin.weight, object_names(num_weight_layers)
    elif len(term.kept) == 1:
        (k,) = term.kept
        matrix, names = layer.node_lins[k - 1].weight, [f"b{k}", f"W{k}", f"W{k + 1}"]
    else:
        matrix, names = layer.edge_lins[term.kept[1] - 2].weight, [term.source]
    shape = {name: tuple(widths[k] for k in fixed_layers(name, num_weight_layers)) for name in names}
    rows = _block_span(names, shape, term.target, layer.out_channels)
    cols = _block_span(names, shape, term.source, layer.in_channels)
    return matrix[rows, cols].reshape(*shape[term.target], layer.out_channels, *shape[term.source], layer.in_channels)


def object_constant(layer: DWSLayer, name: str, widths: tuple[int, ...]) -> Tensor:
    r""":math:`\beta_Y` shaped like ``Y`` with size-1 hidden axes, ``[1, ..., C_out]``."""
    num_weight_layers = layer.num_weight_layers
    names = object_names(num_weight_layers)
    shape = {n: tuple(widths[k] for k in fixed_layers(n, num_weight_layers)) for n in names}
    beta = layer.graph_lin.bias[_block_span(names, shape, name, layer.out_channels)]
    per_axis = [widths[k] if not is_hidden(k, num_weight_layers) else 1 for k in neuron_layers(name)]
    return beta.reshape(1, *per_axis, layer.out_channels)


def _block_span(names: list[str], fixed_shape: dict[str, tuple[int, ...]], name: str, channels: int) -> slice:
    """Where ``name``'s block lies among ``names``' blocks of (fixed neurons) x ``channels`` rows or columns."""
    sizes = [math.prod(fixed_shape[n]) * channels for n in names]
    start = sum(sizes[: names.index(name)])
    return slice(start, start + sizes[names.index(name)])


def _check_inputs(layer: DWSLayer, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> tuple[int, ...]:
    """The widths ``d_0..d_M`` the inputs describe, after checking they fit each other and the layer."""
    if len(weights) != layer.num_weight_layers or len(biases) != layer.num_weight_layers:
        raise ValueError(
            f"the layer has {layer.num_weight_layers} weight layers, got {len(weights)} weights and {len(biases)} biases"
        )
    widths = (weights[0].size(1), *(w.size(2) for w in weights))
    batch = weights[0].size(0)
    for index, (weight, bias) in enumerate(zip(weights, biases), start=1):
        expected_weight = (batch, widths[index - 1], widths[index], layer.in_channels)
        expected_bias = (batch, widths[index], layer.in_channels)
        if tuple(weight.shape) != expected_weight or tuple(bias.shape) != expected_bias:
            raise ValueError(
                f"layer {index}: expected weights {expected_weight} and biases {expected_bias} "
                f"([B, d_(l-1), d_l, C_in] / [B, d_l, C_in]), got {tuple(weight.shape)} and {tuple(bias.shape)}"
            )
    if (widths[0], widths[-1]) != (layer.in_dim, layer.out_dim):
        raise ValueError(f"the layer is for d_0 = {layer.in_dim}, d_M = {layer.out_dim}; got widths {widths}")
    return widths


def cnn_dws_layer_dense_reference(
    layer: CNNDWSLayer, weights: Sequence[Tensor], biases: Sequence[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    r"""What a :class:`~wsgraph.layers.cnn_dws.CNNDWSLayer` computes, from its parameters alone.

    The layer is :math:`\mathrm{DWS} \circ A` with :math:`A` one linear map per object on
    its non-permuted feature axes (a weight layer's kernel entries and channels, a bias
    layer's channels). Here :math:`A` is one einsum per object on the unpadded kernels,
    and the DWS part is :func:`dws_layer_dense_reference`, term by term.

    Args:
        layer: the layer whose parameters are read.
        weights: per weight layer ``l``, ``[B, d_{l-1}, d_l, kh_l * kw_l, C_in]`` (wsgraph's
            orientation; the kernel flattened row-major, ``kh_l x kw_l`` the layer's
            ``lift.kernel_sizes[l-1]``; linear layers: ``kh = kw = 1``).
        biases: per weight layer, ``[B, d_l, C_in]``.

    Returns:
        ``(weights, biases)`` of the DWS layer's output, ``[B, d_{l-1}, d_l, C_out]`` and
        ``[B, d_l, C_out]``.
    """
    lift = layer.lift
    if len(weights) != len(lift.kernel_sizes) or len(biases) != len(lift.kernel_sizes):
        raise ValueError(f"the layer has {len(lift.kernel_sizes)} weight layers, got {len(weights)} and {len(biases)}")
    lifted_weights, lifted_biases = [], []
    for index, (weight, bias) in enumerate(zip(weights, biases)):
        height, width = lift.kernel_sizes[index]
        expected = (height * width, lift.in_channels)
        if weight.dim() != 5 or tuple(weight.shape[3:]) != expected:
            raise ValueError(
                f"layer {index + 1}: expected weights [B, d_(l-1), d_l, {expected[0]}, {expected[1]}], "
                f"got {tuple(weight.shape)}"
            )
        # Theta_l[o, s, c]: output channel o from kernel entry s of input channel c.
        theta = lift.weight_lins[index].weight.reshape(lift.out_channels, height * width, lift.in_channels)
        lifted_weights.append(torch.einsum("bijsc,osc->bijo", weight, theta))
        lifted_biases.append(torch.einsum("bjc,oc->bjo", bias, lift.bias_lins[index].weight))
    return dws_layer_dense_reference(layer.dws, lifted_weights, lifted_biases)
