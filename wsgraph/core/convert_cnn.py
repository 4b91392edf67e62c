r"""CNN <-> graph conversion, exact both ways (bit for bit).

A CNN here is a chain of ``nn.Conv2d`` layers with elementwise activations, a global
average pooling (``nn.AdaptiveAvgPool2d(1)`` + ``nn.Flatten``, or ``x.mean((2, 3))``),
then a chain of ``nn.Linear`` layers. Its graph is the graph of an MLP whose neurons are
the channels: a node per channel carrying its bias, an edge per (input channel, output
channel) pair. The pooling turns channel ``c`` of the last convolution into input ``c``
of the first linear layer, so permuting the hidden channels of any layer, together with
the matching rows and columns of its neighbours' weights, leaves the function unchanged:
the symmetry group is the one of the MLP with these widths.

An edge's feature is its kernel ``W_l[i, j]`` (``kh x kw`` entries), zero-padded into the
graph's kernel grid ``H x W`` (by default the largest kernel of the network) with the
kernel centred (offset ``((H - kh) // 2, (W - kw) // 2)``) and flattened row-major:
``edge_attr`` is ``[E, H*W]``. A linear layer's weight is a ``1 x 1`` kernel, at the centre.
The graph records every layer's kernel size, so the padding is undone exactly.
Graphs of CNNs with different grids batch after :func:`pad_kernels` (or
:func:`batch_cnn_graphs`, which pads them to their common grid).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from wsgraph.core.activations import UNKNOWN, check_activation_argument, make_activation
from wsgraph.core.dense import to_dense_weights
from wsgraph.core.extract_cnn import (
    ConvChain,
    ConvGeometry,
    NotACNNError,
    from_cnn_module,
    from_cnn_pairs,
    from_cnn_state_dict,
    validate_cnn,
)
from wsgraph.core.extract_mlp import check_output_offset
from wsgraph.core.graph import (
    WeightSpaceGraph,
    assemble,
    carried_biases,
    graph_specs,
    is_conv_graph,
    require_float_parameters,
    single_graph,
    sort_edges,
)

CNNLike = nn.Module | Mapping[str, Tensor] | Sequence | ConvChain
Pair = int | tuple[int, int]


def holds_cnn(content: object) -> bool:
    """Whether a loaded checkpoint is a CNN: a module with ``nn.Conv2d`` layers, or a state_dict with a 4-D weight."""
    if isinstance(content, nn.Module):
        return any(isinstance(module, nn.Conv2d) for module in content.modules())
    return isinstance(content, Mapping) and any(
        isinstance(value, Tensor) and value.dim() == 4 and str(key).endswith("weight") for key, value in content.items()
    )


def cnn_to_graph(
    obj: CNNLike,
    *,
    activation: str | None = None,
    kernel_grid: Pair | None = None,
    check_finite: bool = True,
    y: Tensor | None = None,
    output_offset: float = 0.0,
) -> WeightSpaceGraph:
    """The graph of a CNN (see the module docstring for the layout).

    Args:
        obj: an ``nn.Module`` (read in execution order, its strides, paddings, dilations
            and activation recorded), a state_dict (4-D ``weight``: convolution, 2-D:
            linear; geometry and activation unknown), a list of ``(weight, bias)`` pairs, or a
            :class:`~wsgraph.core.extract_cnn.ConvChain` already read.
        activation: the hidden activation's name, overriding what is read from a module.
        kernel_grid: ``(H, W)`` to pad every kernel into (default: the largest kernel).
        check_finite: raise on NaN or inf weights.
        y: target stored on the graph.
        output_offset: the constant a module's forward adds to its output, which a graph
            does not record; a module that adds another is refused (as for
            :func:`wsgraph.mlp_to_graph`).

    Raises:
        NotACNNError: naming the layer or key the graph cannot express.
    """
    chain = validate_cnn(_read(obj), check_finite=check_finite)
    check_output_offset(chain, output_offset, "output_offset={}", NotACNNError)
    if activation is not None:
        make_activation(activation)  # fail early on an unknown name
        chain.activation = activation
    kernels = [tuple(w.shape[2:]) if w.dim() == 4 else (1, 1) for w in chain.weights]
    grid = (
        _checked_grid(kernel_grid) if kernel_grid is not None else tuple(max(k[i] for k in kernels) for i in range(2))
    )
    for name, kernel in zip(chain.names, kernels):
        if kernel[0] > grid[0] or kernel[1] > grid[1]:
            raise ValueError(f"{name}: kernel {kernel[0]}x{kernel[1]} does not fit the grid {grid[0]}x{grid[1]}")
    dtype = chain.weights[0].dtype
    for tensor in (*chain.weights, *chain.biases):
        if tensor is not None:
            dtype = torch.promote_types(dtype, tensor.dtype)
    weights = [pad_kernel(w if w.dim() == 4 else w[:, :, None, None], grid).to(dtype) for w in chain.weights]
    biases = [
        (b if b is not None else w.new_zeros(w.size(0))).to(dtype).view(1, -1, 1)
        for w, b in zip(chain.weights, chain.biases)
    ]
    # wsgraph's layout: [B, d_{l-1}, d_l, H*W], the transpose of torch's [out, in].
    weights = [w.permute(1, 0, 2, 3).reshape(1, w.size(1), w.size(0), -1) for w in weights]
    conv = {
        "conv_layers": torch.tensor([chain.num_conv]),
        "kernel_size": torch.tensor([kernels]),
        "kernel_grid": torch.tensor([grid]),
        "conv_stride": torch.tensor([[g.stride for g in chain.geometry]]),
        "conv_padding": torch.tensor([[g.padding for g in chain.geometry]]),
        "conv_dilation": torch.tensor([[g.dilation for g in chain.geometry]]),
    }
    target = None if y is None else torch.as_tensor(y).reshape(1, *torch.as_tensor(y).shape)
    batch = assemble(
        weights,
        biases,
        has_bias=[b is not None for b in chain.biases],
        activation=chain.activation,
        y=target,
        conv=conv,
    )
    return single_graph(batch)


def pad_kernel(weight: Tensor, grid: tuple[int, int]) -> Tensor:
    """``[out, in, kh, kw]`` kernels centred in zeros of ``[out, in, H, W]``."""
    kh, kw = weight.shape[-2:]
    top, left = kernel_offset((kh, kw), grid)
    padded = weight.new_zeros(*weight.shape[:-2], *grid)
    padded[..., top : top + kh, left : left + kw] = weight
    return padded


def kernel_offset(kernel: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """Where a ``kernel`` starts in a ``grid``: centred, rounding up and left."""
    if kernel[0] > grid[0] or kernel[1] > grid[1]:
        # A negative start would slice the wrong entries, not fail.
        raise ValueError(
            f"a {kernel[0]}x{kernel[1]} kernel does not fit the graph's {grid[0]}x{grid[1]} kernel grid "
            "(kernel_size or kernel_grid edited?)"
        )
    return ((grid[0] - kernel[0]) // 2, (grid[1] - kernel[1]) // 2)


def _edge_kernel_sizes(data: Data) -> Tensor:
    """``[E, 2]``: the kernel size of each edge's layer."""
    batch = getattr(data, "batch", None)
    edge_graph = data.edge_index.new_zeros(data.edge_index.size(1)) if batch is None else batch[data.edge_index[0]]
    return data.kernel_size.view(-1, data.kernel_size.size(-2), 2)[edge_graph, data.edge_layer - 1]


def kernel_entry_mask(data: Data) -> Tensor:
    """``[E, H*W]``, true at the entries of each edge's padded grid that hold its layer's kernel.

    The rest is padding: zero in every graph :func:`cnn_to_graph` builds, and to be kept
    zero by whatever rescales the weights (see :class:`~wsgraph.datasets.transforms.NormalizeWeights`).
    """
    grid = tuple(data.kernel_grid[0].tolist())
    kernel = _edge_kernel_sizes(data)
    start = torch.div(torch.tensor(grid, device=kernel.device) - kernel, 2, rounding_mode="floor")
    rows = torch.arange(grid[0], device=kernel.device)
    cols = torch.arange(grid[1], device=kernel.device)
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + kernel[:, :1])
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + kernel[:, 1:])
    return (in_rows.unsqueeze(2) & in_cols.unsqueeze(1)).reshape(-1, grid[0] * grid[1])


def pad_kernels(data: Data, grid: Pair) -> Data:
    """A CNN graph (or batch) with its kernels re-padded into a larger ``grid`` (a shallow copy).

    Graphs of CNNs batch when their ``edge_attr`` widths agree: pad them to one grid first.
    """
    grid = _checked_grid(grid)
    _require_raw_kernels(data)
    old = tuple(data.kernel_grid[0].tolist())
    if bool((data.kernel_grid != data.kernel_grid[:1]).any()):
        raise ValueError("the batch mixes kernel grids; pad its graphs one by one")
    if grid[0] < old[0] or grid[1] < old[1]:
        raise ValueError(f"cannot pad the kernel grid {old[0]}x{old[1]} into the smaller {grid[0]}x{grid[1]}")
    out = copy.copy(data)
    # Each kernel moves from its centre in the old grid to its centre in the new one: shifting the old grid
    # as a whole would put it off centre where the grids' sizes differ by an odd number.
    kernels = data.edge_attr.view(-1, *old)
    padded = kernels.new_zeros(kernels.size(0), *grid)
    edge_kernels = _edge_kernel_sizes(data)
    for size in torch.unique(edge_kernels, dim=0).tolist():
        kh, kw = size
        edges = (edge_kernels == edge_kernels.new_tensor(size)).all(dim=1)
        (top, left), (new_top, new_left) = kernel_offset((kh, kw), old), kernel_offset((kh, kw), grid)
        padded[edges, new_top : new_top + kh, new_left : new_left + kw] = kernels[
            edges, top : top + kh, left : left + kw
        ]
    out.edge_attr = padded.reshape(kernels.size(0), -1)
    out.kernel_grid = torch.tensor([grid], device=data.kernel_grid.device).expand_as(data.kernel_grid).contiguous()
    return out


def batch_cnn_graphs(graphs: Iterable[Data]) -> Batch:
    """One PyG batch of CNN graphs, their kernels padded to the largest grid among them."""
    graphs = list(graphs)
    if len(graphs) == 0:
        raise ValueError("batch_cnn_graphs needs at least one graph")
    for position, graph in enumerate(graphs):
        if isinstance(graph, Batch):
            raise ValueError(f"graph {position} is a batch; give the graphs one by one (batch.to_data_list())")
        if not is_conv_graph(graph):
            raise ValueError(
                f"graph {position} is not the graph of a CNN (no 'kernel_size'); batch the graphs of MLPs "
                "with torch_geometric.data.Batch.from_data_list"
            )
    grids = [tuple(graph.kernel_grid[0].tolist()) for graph in graphs]
    grid = (max(g[0] for g in grids), max(g[1] for g in grids))
    return Batch.from_data_list([graph if g == grid else pad_kernels(graph, grid) for graph, g in zip(graphs, grids)])


def conv_graph_params(data: Data) -> list[tuple[Tensor, Tensor | None]] | list[list[tuple[Tensor, Tensor | None]]]:
    """The ``(weight, bias)`` pairs of a CNN graph in torch's convention (conv ``[out, in, kh, kw]``,
    linear ``[out, in]``), or one such list per network of a batch. The edges may come in any order."""
    _require_raw_kernels(data)
    require_float_parameters(data)
    if data.x.size(-1) != 1:
        raise ValueError(
            f"the graph has {data.x.size(-1)} bias channels; parameters are read from graphs with one bias per neuron"
        )
    if not isinstance(data, Batch):
        return _stacked_conv_params(data)[0]
    specs = graph_specs(data)
    grids = data.kernel_grid
    if len(set(specs)) > 1 or bool((grids != grids[:1]).any()):
        return [conv_graph_params(graph) for graph in sort_edges(data).to_data_list()]
    return _stacked_conv_params(data)


def _stacked_conv_params(data: Data) -> list[list[tuple[Tensor, Tensor | None]]]:
    spec = graph_specs(data)[0]
    grid = tuple(data.kernel_grid[0].tolist())
    dense = to_dense_weights(sort_edges(data))
    per_layer = []
    for layer, (weight, bias) in enumerate(zip(dense.weights, dense.biases)):
        kernel = spec.kernel_sizes[layer]
        top, left = kernel_offset(kernel, grid)
        grid_view = weight.reshape(*weight.shape[:3], *grid)[..., top : top + kernel[0], left : left + kernel[1]]
        torch_weight = grid_view.permute(0, 2, 1, 3, 4)
        if layer >= spec.conv_layers:
            torch_weight = torch_weight[..., 0, 0]
        # Copies, never views of the graph: a caller that edits a returned tensor must not edit the graph.
        contiguous = torch.contiguous_format
        per_layer.append(
            (torch_weight.clone(memory_format=contiguous), bias.squeeze(-1).clone(memory_format=contiguous))
        )
    has_bias = carried_biases(data.has_bias, [bias for _, bias in per_layer]).tolist()
    return [
        [(w[n], b[n] if has_bias[n][layer] else None) for layer, (w, b) in enumerate(per_layer)]
        for n in range(len(has_bias))
    ]


def graph_to_cnn(
    data: Data,
    activation: str | nn.Module | None = None,
    *,
    stride: Pair | Sequence[Pair] | None = None,
    padding: Pair | Sequence[Pair] | None = None,
    dilation: Pair | Sequence[Pair] | None = None,
) -> nn.Sequential | list[nn.Sequential]:
    """Rebuild the CNN(s) a graph or batch describes: ``Conv2d, act, ..., AdaptiveAvgPool2d(1), Flatten, Linear, ...``.

    Args:
        data: a CNN graph, or a batch (one module per network).
        activation: a name or a module to put after every layer but the last; by default
            the activation recorded on the graph.
        stride, padding, dilation: one pair for every convolution, or one per
            convolution; by default what the graph records (required where it does not
            know them, as for graphs read from state_dicts).
    """
    check_activation_argument(activation, "graph_to_cnn")
    if isinstance(data, Batch):
        params = conv_graph_params(data)
        names = getattr(data, "activation", None) or [UNKNOWN] * data.num_graphs
        return [
            _build(p, activation if activation is not None else name, geometry)
            for p, name, geometry in zip(params, names, _recorded_geometry(data, stride, padding, dilation))
        ]
    params = conv_graph_params(data)
    recorded = activation if activation is not None else getattr(data, "activation", UNKNOWN)
    return _build(params, recorded, _recorded_geometry(data, stride, padding, dilation)[0])


def _recorded_geometry(data: Data, stride, padding, dilation) -> list[list[ConvGeometry]]:
    per_network = []
    conv_layers = data.conv_layers.reshape(-1).tolist()
    for network, num_conv in enumerate(conv_layers):
        recorded = {
            name: data[f"conv_{name}"][network, :num_conv].tolist() for name in ("stride", "padding", "dilation")
        }
        given = {"stride": stride, "padding": padding, "dilation": dilation}
        layers = []
        for layer in range(num_conv):
            values = {}
            for name, override in given.items():
                value = (
                    tuple(recorded[name][layer]) if override is None else _per_layer(override, layer, num_conv, name)
                )
                if -1 in value and override is None:
                    raise ValueError(
                        f"the graph does not record the {name} of convolution {layer + 1} (it was read from a "
                        f"state_dict); pass {name}=... to graph_to_cnn"
                    )
                smallest = 0 if name == "padding" else 1
                if min(value) < smallest:
                    raise ValueError(
                        f"convolution {layer + 1} has {name} {value}; graph_to_cnn needs a {name} of at least "
                        f"{smallest}"
                    )
                values[name] = value
            layers.append(ConvGeometry(values["stride"], values["padding"], values["dilation"]))
        per_network.append(layers)
    return per_network


def _per_layer(value: Pair | Sequence[Pair], layer: int, num_conv: int, name: str) -> tuple[int, int]:
    if _is_integer(value) or (isinstance(value, tuple) and len(value) == 2 and all(map(_is_integer, value))):
        return _pair(value)
    # A string would be read one character per convolution, a float or tensor fail inside torch.
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name}={value!r}: expected an integer, a pair of integers, or one of these per convolution")
    values = list(value)
    if len(values) != num_conv:
        raise ValueError(f"got {len(values)} values of {name} for {num_conv} convolutions")
    item = values[layer]
    if not (_is_integer(item) or (isinstance(item, (tuple, list)) and len(item) == 2 and all(map(_is_integer, item)))):
        raise ValueError(f"{name} of convolution {layer + 1} is {item!r}: expected an integer or a pair of integers")
    return _pair(item)


def _is_integer(value: object) -> bool:
    """An integer, as Python, numpy or a 0-d integer tensor holds it (not a ``bool``)."""
    if isinstance(value, torch.Tensor):
        return (
            value.dim() == 0 and not value.is_floating_point() and not value.is_complex() and value.dtype != torch.bool
        )
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _build(params, activation: str | nn.Module | None, geometry: list[ConvGeometry]) -> nn.Sequential:
    if activation in (None, UNKNOWN):
        raise ValueError("the graph's activation is unknown; pass activation='relu' (or another) to graph_to_cnn")
    layers: list[nn.Module] = []
    num_conv = len(geometry)
    for position, (weight, bias) in enumerate(params):
        if position < num_conv:
            shape = geometry[position]
            # Built without initialisation: the layers' own would draw from the global generator.
            layer = nn.utils.skip_init(
                nn.Conv2d,
                weight.size(1),
                weight.size(0),
                tuple(weight.shape[2:]),
                stride=shape.stride,
                padding=shape.padding,
                dilation=shape.dilation,
                bias=bias is not None,
                dtype=weight.dtype,
                device=weight.device,
            )
        else:
            layer = nn.utils.skip_init(
                nn.Linear,
                weight.size(1),
                weight.size(0),
                bias=bias is not None,
                dtype=weight.dtype,
                device=weight.device,
            )
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        layers.append(layer)
        if position < len(params) - 1:
            layers.append(make_activation(activation) if isinstance(activation, str) else copy.deepcopy(activation))
        if position == num_conv - 1:
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def _read(obj: CNNLike) -> ConvChain:
    if isinstance(obj, ConvChain):
        return obj
    if isinstance(obj, nn.Module):
        return from_cnn_module(obj)
    if isinstance(obj, Mapping):
        return from_cnn_state_dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return from_cnn_pairs(obj)
    raise NotACNNError(
        f"cannot convert a {type(obj).__name__}: expected an nn.Module, a state_dict or a list of (weight, bias) pairs"
    )


def _require_raw_kernels(data: Data) -> None:
    if not is_conv_graph(data):
        raise ValueError(
            f"{type(data).__name__} is not the graph of a CNN (no 'kernel_size'); see wsgraph.cnn_to_graph"
        )
    grid = data.kernel_grid[0].tolist()
    if data.edge_attr.size(-1) != grid[0] * grid[1]:
        raise ValueError(
            f"the edges carry {data.edge_attr.size(-1)} features, not the {grid[0]}x{grid[1]} kernel grid: "
            "parameters are read from the graphs cnn_to_graph builds"
        )


# Past any kernel a CNN has: a grid of 10^5 x 10^5 asked the allocator for terabytes.
MOST_KERNEL_GRID = 1024


def _checked_grid(grid: Pair) -> tuple[int, int]:
    """``grid`` as ``(H, W)``, each an integer in ``1..MOST_KERNEL_GRID``, or a ``ValueError`` saying why."""
    if isinstance(grid, torch.Tensor) and grid.dim() == 1:  # e.g. another graph's kernel_grid[0]
        grid = tuple(grid.unbind())
    if _is_integer(grid) or (isinstance(grid, (tuple, list)) and len(grid) == 2 and all(map(_is_integer, grid))):
        pair = (int(grid), int(grid)) if _is_integer(grid) else (int(grid[0]), int(grid[1]))
        if all(1 <= side <= MOST_KERNEL_GRID for side in pair):
            return pair
    raise ValueError(f"kernel grid {grid!r}: expected an integer or a pair of integers in 1..{MOST_KERNEL_GRID}")


def _pair(value: Pair) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))
