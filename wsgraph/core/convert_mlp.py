"""Network <-> graph conversion, exact both ways (bit for bit)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from wsgraph.core.activations import UNKNOWN, check_activation_argument, make_activation
from wsgraph.core.convert_cnn import conv_graph_params
from wsgraph.core.dense import to_dense_weights
from wsgraph.core.extract_mlp import (
    LinearChain,
    NotAnMLPError,
    check_output_offset,
    from_module,
    from_pairs,
    from_state_dict,
    validate,
)
from wsgraph.core.graph import (
    WeightSpaceGraph,
    assemble,
    carried_biases,
    is_conv_graph,
    mixes_architectures,
    require_float_parameters,
    single_graph,
    sort_edges,
)

MLPLike = nn.Module | Mapping[str, Tensor] | Sequence | LinearChain
Params = list[tuple[Tensor, Tensor | None]]


def mlp_to_graph(
    obj: MLPLike,
    *,
    activation: str | None = None,
    check_finite: bool = True,
    y: Tensor | None = None,
    output_offset: float = 0.0,
) -> WeightSpaceGraph | Batch:
    r"""The graph of an MLP, or the batch of graphs of many MLPs of one architecture.

    Args:
        obj: one of

            * an ``nn.Module`` whose parametrised layers form a chain of ``nn.Linear``
              (``nn.Sequential``, a SIREN, a custom module), read in execution order;
            * a state_dict of ``<prefix>.weight`` / ``<prefix>.bias`` entries;
            * a list of ``(weight, bias)`` pairs in ``nn.Linear`` convention
              (``[out, in]``, ``[out]``; ``bias`` may be ``None``);
            * a list of stacked pairs ``([B, out, in], [B, out])`` for ``B`` networks of
              one architecture: converted in one vectorised call into a :class:`Batch`;
            * a :class:`~wsgraph.core.extract_mlp.LinearChain` already read (e.g. by
              :func:`wsgraph.datasets.checkpoint_folders.read_network`).
        activation: the hidden activation's name, overriding what is read from a module.
        check_finite: raise on NaN or inf weights.
        y: target(s) stored on the graph (``[B, ...]`` for stacked input).
        output_offset: the constant a module's forward adds to its last layer's output
            (DWSNets' INRs add 0.5). A graph does not record it: a module that adds
            another constant is refused, so that no one rebuilds it without knowing.
            (State_dicts and pairs run no forward and are not checked.)

    Returns:
        A :class:`~wsgraph.core.graph.WeightSpaceGraph` with one channel (``x`` ``[N, 1]``,
        ``edge_attr`` ``[E, 1]``), or a :class:`Batch` of them for stacked input.

    Raises:
        NotAnMLPError: naming the layer or key that is not part of a linear chain, or
            holds NaN/inf values, or a module that adds another constant than ``output_offset``
            to its output.
    """
    chain = validate(_read(obj), check_finite=check_finite)
    check_output_offset(chain, output_offset, "output_offset={}")
    if activation is not None:
        make_activation(activation)  # fail early on an unknown name
        chain.activation = activation
    stacked = chain.weights[0].dim() == 3
    weights = [w.transpose(-1, -2).unsqueeze(-1) for w in chain.weights]
    biases = [
        (b if b is not None else w.new_zeros(w.shape[:-1])).unsqueeze(-1) for w, b in zip(chain.weights, chain.biases)
    ]
    if not stacked:
        weights = [w.unsqueeze(0) for w in weights]
        biases = [b.unsqueeze(0) for b in biases]
        if y is not None:
            y = torch.as_tensor(y).reshape(1, *torch.as_tensor(y).shape)
    dtype = torch.promote_types(weights[0].dtype, biases[0].dtype)
    for tensor in (*weights, *biases):
        dtype = torch.promote_types(dtype, tensor.dtype)
    batch = assemble(
        [w.to(dtype) for w in weights],
        [b.to(dtype) for b in biases],
        has_bias=[b is not None for b in chain.biases],
        activation=chain.activation,
        y=y,
    )
    return batch if stacked else single_graph(batch)


def _read(obj: MLPLike) -> LinearChain:
    if isinstance(obj, LinearChain):
        return obj
    if isinstance(obj, nn.Module):
        return from_module(obj)
    if isinstance(obj, Mapping):
        return from_state_dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return from_pairs(obj)
    raise NotAnMLPError(
        f"cannot convert a {type(obj).__name__}: expected an nn.Module, a state_dict or a list of (weight, bias) pairs"
    )


def stacked_params(data: Data) -> list[tuple[Tensor, Tensor]]:
    """Vectorised inverse for one-architecture batches: per layer ``([B, out, in], [B, out])``.

    Missing biases come back as zeros; :func:`graph_to_params` returns ``None`` for them
    (unless the graph holds values there, see :func:`~wsgraph.core.graph.carried_biases`).
    The edges may come in any order.
    """
    require_float_parameters(data)
    dense = to_dense_weights(sort_edges(data))
    if dense.weights[0].size(-1) != 1 or dense.biases[0].size(-1) != 1:
        raise ValueError(
            f"the graph has {dense.weights[0].size(-1)} weight and {dense.biases[0].size(-1)} bias channels; "
            "parameters are read from one-channel graphs"
        )
    # Copies, never views of the graph: a caller that edits a returned tensor must not edit the graph.
    return [
        (
            w.squeeze(-1).transpose(1, 2).clone(memory_format=torch.contiguous_format),
            b.squeeze(-1).clone(memory_format=torch.contiguous_format),
        )
        for w, b in zip(dense.weights, dense.biases)
    ]


def graph_to_params(data: Data) -> Params | list[Params]:
    """The ``(weight, bias)`` pairs, in ``nn.Linear`` convention, of a graph.

    For a :class:`Batch` the result is a list with one such list per network
    (vectorised when the batch has one architecture). The edges may come in any order.
    A CNN's graph gives its convolutions' weights as ``[out, in, kh, kw]``
    (:func:`wsgraph.core.convert_cnn.conv_graph_params`). A bias is ``None`` where the network had
    none and the graph holds zeros there; values written since (by an augmentation or an editing
    model) come back. The tensors are copies, never views of the graph.
    """
    if is_conv_graph(data):
        return conv_graph_params(data)
    if isinstance(data, Batch):
        if mixes_architectures(data):
            # Splitting a batch relies on each network's edges being contiguous.
            return [graph_to_params(graph) for graph in sort_edges(data).to_data_list()]
        stacked = stacked_params(data)
        has_bias = carried_biases(data.has_bias, [b for _, b in stacked]).tolist()
        return [
            [(w[n], b[n] if has_bias[n][layer] else None) for layer, (w, b) in enumerate(stacked)]
            for n in range(data.num_graphs)
        ]
    stacked = stacked_params(data)
    has_bias = carried_biases(data.has_bias, [b for _, b in stacked])[0].tolist()
    return [(w[0], b[0] if has_bias[layer] else None) for layer, (w, b) in enumerate(stacked)]


def graph_to_mlp(data: Data, activation: str | nn.Module | None = None) -> nn.Sequential | list[nn.Sequential]:
    """Rebuild the ``nn.Sequential`` MLP(s) a graph or batch describes.

    Args:
        data: a graph, or a batch (one module per network).
        activation: a name (``"relu"``, ``"sine(30.0)"``, ...) or a module to put
            between layers; by default the activation recorded on the graph.
    """
    check_activation_argument(activation, "graph_to_mlp")
    if is_conv_graph(data):
        raise ValueError("this is the graph of a CNN: rebuild it with wsgraph.graph_to_cnn")
    if isinstance(data, Batch):
        params = graph_to_params(data)
        names = getattr(data, "activation", None) or [UNKNOWN] * data.num_graphs
        return [_build(p, activation if activation is not None else name) for p, name in zip(params, names)]
    return _build(graph_to_params(data), activation if activation is not None else getattr(data, "activation", UNKNOWN))


def _build(params: Params, activation: str | nn.Module | None) -> nn.Sequential:
    if activation in (None, UNKNOWN) and len(params) > 1:
        raise ValueError("the graph's activation is unknown; pass activation='relu' (or another) to graph_to_mlp")
    layers: list[nn.Module] = []
    for position, (weight, bias) in enumerate(params):
        # Built without initialisation: nn.Linear's own would draw from the global generator.
        linear = nn.utils.skip_init(
            nn.Linear, weight.size(1), weight.size(0), bias=bias is not None, dtype=weight.dtype, device=weight.device
        )
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias)
        layers.append(linear)
        if position < len(params) - 1:
            layers.append(make_activation(activation) if isinstance(activation, str) else _fresh(activation))
    return nn.Sequential(*layers)


def _fresh(module: nn.Module) -> nn.Module:
    return copy.deepcopy(module)
