"""Read the layers of a CNN (``nn.Conv2d`` chain, global average pooling, ``nn.Linear`` chain).

Everything here returns weights in torch's convention (``[out, in, kh, kw]`` for a
convolution, ``[out, in]`` for a linear layer) and raises :class:`NotACNNError`, naming
the offending layer or key, for anything a weight-space graph cannot express: skip
connections, normalisation layers, grouped convolutions, a convolution after a linear
layer, pooling other than one global average between the convolutions and the linear
layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from wsgraph.core.activations import (
    SIMPLE_ACTIVATION_NAMES,
    UNKNOWN,
    matching_activations,
    pooled_matching_activations,
)
from wsgraph.core.extract_mlp import (
    NotAnMLPError,
    OutputOffset,
    check_first_layer_reads_the_input,
    check_no_output_activation,
    first_called_layer,
    non_finite_message,
    record_layer_outputs,
    refuse_meta_module,
)
from wsgraph.core.layer_order import AmbiguousLayerOrder, NameSortedStateDict, layer_order

# Any fixed seed: the probe only has to be generic (no zero entries, no ties).
_PROBE_SEED = 0x5EED
# Spatial size of the last convolution's output in the probe: large enough that a
# pooling over part of the image differs from the global average.
_PROBE_OUTPUT_SIZE = 3
# The most values the probe input, or any convolution's output on it, may hold (256 MiB of float32).
MAX_PROBE_ELEMENTS = 2**26
UNKNOWN_GEOMETRY = (-1, -1)


class NotACNNError(NotAnMLPError):
    """The object is not a conv-then-linear network a graph can express (its message names the culprit)."""


@dataclass
class ConvGeometry:
    """How one convolution slides: ``(height, width)`` pairs, ``(-1, -1)`` where unknown."""

    stride: tuple[int, int] = UNKNOWN_GEOMETRY
    padding: tuple[int, int] = UNKNOWN_GEOMETRY
    dilation: tuple[int, int] = UNKNOWN_GEOMETRY

    @property
    def known(self) -> bool:
        return -1 not in (*self.stride, *self.padding, *self.dilation)


LINEAR_GEOMETRY = ConvGeometry((1, 1), (0, 0), (1, 1))


@dataclass
class ConvChain:
    """The layers of one CNN in execution order: ``num_conv`` convolutions, then linear layers."""

    weights: list[Tensor]
    biases: list[Tensor | None]
    names: list[str]
    num_conv: int
    geometry: list[ConvGeometry] = field(default_factory=list)
    activation: str = UNKNOWN
    # Every activation the trace matched, as LinearChain's.
    activation_candidates: tuple[str, ...] = ()
    # What a traced module adds to its output, as LinearChain's.
    output_offset: OutputOffset | None = None

    def __post_init__(self) -> None:
        if not self.geometry:
            self.geometry = [ConvGeometry() for _ in range(self.num_conv)]
            self.geometry += [LINEAR_GEOMETRY] * (len(self.weights) - self.num_conv)


def from_cnn_state_dict(state_dict: Mapping[str, object]) -> ConvChain:
    """Read a state_dict of ``<prefix>.weight`` (4-D: convolution, 2-D: linear) / ``<prefix>.bias`` entries.

    A state_dict holds no strides, paddings or activation: they are recorded as unknown.
    The layers' order comes from the numbers in their names, the key order or their
    shapes (see :func:`wsgraph.core.layer_order.layer_order`).
    """
    groups: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = str(key).rpartition(".")
        if leaf not in ("weight", "bias"):
            hint = (
                " (a normalisation layer's running statistics)" if leaf.startswith(("running_", "num_batches")) else ""
            )
            raise NotACNNError(f"key '{key}' is neither a weight nor a bias{hint}: not a conv-then-linear network")
        if not isinstance(value, Tensor):
            raise NotACNNError(f"'{key}' is a {type(value).__name__}, not a tensor")
        groups.setdefault(prefix, {})[leaf] = value.detach()
    if not groups:
        raise NotACNNError("the state_dict is empty")
    for prefix, group in groups.items():
        if "weight" not in group:
            raise NotACNNError(f"'{prefix}.bias' has no matching '{prefix}.weight'")
        if group["weight"].dim() not in (2, 4):
            raise NotACNNError(
                f"{_key_name(prefix)}: weight has shape {tuple(group['weight'].shape)}; "
                "a convolution's weight is 4-D, a linear layer's 2-D"
            )
    try:
        order = layer_order(
            list(groups),
            chains=lambda order: _chain_problem(order, groups) is None,
            follows=lambda first, second: _can_follow(groups[first]["weight"], groups[second]["weight"]),
            keys_in_order=not isinstance(state_dict, NameSortedStateDict),
            describe=_key_name,
        )
    except AmbiguousLayerOrder as error:
        raise NotACNNError(str(error)) from None
    problem = _chain_problem(order, groups)
    if problem is not None:
        raise NotACNNError(problem)
    weights = [groups[p]["weight"] for p in order]
    return ConvChain(
        weights,
        [groups[p].get("bias") for p in order],
        [_key_name(p) for p in order],
        sum(w.dim() == 4 for w in weights),
    )


def from_cnn_pairs(pairs: Sequence, geometry: Sequence[ConvGeometry] | None = None) -> ConvChain:
    """Read a list of ``(weight, bias)`` pairs (``bias`` may be ``None``), convolutions first."""
    if not pairs:
        raise NotACNNError("got an empty list of layers")
    weights, biases = [], []
    names = [f"layer {i + 1}" for i in range(len(pairs))]
    for name, pair in zip(names, pairs):
        weight, bias = (pair, None) if isinstance(pair, Tensor) else (pair[0], pair[1] if len(pair) > 1 else None)
        for kind, tensor in (("weight", weight), ("bias", bias)):
            if tensor is not None and not isinstance(tensor, Tensor):
                raise NotACNNError(f"{name} {kind} is a {type(tensor).__name__}, not a tensor")
        weights.append(weight.detach())
        biases.append(None if bias is None else bias.detach())
    num_conv = sum(w.dim() == 4 for w in weights)
    chain = ConvChain(weights, biases, names, num_conv, list(geometry) if geometry is not None else [])
    problem = _chain_problem(list(range(len(weights))), {i: {"weight": w} for i, w in enumerate(weights)}, names)
    if problem is not None:
        raise NotACNNError(problem)
    return chain


def from_cnn_module(module: nn.Module, probe_batch: int = 4) -> ConvChain:
    """Read the ``nn.Conv2d`` and ``nn.Linear`` layers of a module in execution order.

    The module is run once on a random image batch with every layer's output cut from
    the autograd graph, so that autograd shows what each layer reads: the previous
    layer's output through an elementwise function, or (for the first linear layer) the
    spatial mean of the last convolution's activated output. The input comes from a
    generator of its own and the global random states are restored afterwards.
    """
    refuse_meta_module(module, NotACNNError)
    layers = _parametrised_layers(module)
    name_of = {m: n for n, m in layers}
    convs = [m for _, m in layers if isinstance(m, nn.Conv2d)]
    if not convs:
        raise NotACNNError(f"{type(module).__name__} has no nn.Conv2d layer: not a CNN")

    def probe_for(ordered: list[nn.Conv2d]) -> Tensor:
        size = _probe_size(ordered)
        _check_probe_budget(ordered, probe_batch, size)
        weight = ordered[0].weight
        generator = torch.Generator().manual_seed(_PROBE_SEED)
        probe = torch.randn(probe_batch, weight.size(1), size, size, generator=generator)
        return probe.to(dtype=weight.dtype, device=weight.device)

    # The layer called first need not be the first registered: a pass stopped as it is entered finds it.
    first = first_called_layer(module, name_of, probe_for(convs))
    if first is not None and not isinstance(first, nn.Conv2d):
        raise NotACNNError(f"the first layer '{name_of[first]}' is a {type(first).__name__}, not nn.Conv2d: not a CNN")
    # Sized for the convolutions in call order as far as known: the first called, then the others as registered.
    first = first or convs[0]
    probe = probe_for([first, *(conv for conv in convs if conv is not first)]).requires_grad_(True)
    records, output_offset = _run_recording(module, {m: n for n, m in layers}, probe)
    called = [name for name, _, _ in records]
    for name, _ in layers:
        count = called.count(name)
        if count != 1:
            problem = "never called in forward" if count == 0 else f"called {count} times in forward (shared weights)"
            raise NotACNNError(f"layer '{name}' is {problem}: not a chain of layers")
    layer_of = dict(layers)
    kinds = [isinstance(layer_of[n], nn.Conv2d) for n in called]
    num_conv = kinds.index(False) if False in kinds else len(kinds)
    if num_conv == len(kinds):
        raise NotACNNError(
            f"{type(module).__name__} has no nn.Linear after its convolutions: not a conv-then-linear CNN"
        )
    if any(kinds[num_conv:]):
        late = called[num_conv + kinds[num_conv:].index(True)]
        raise NotACNNError(f"convolution '{late}' comes after a linear layer: the graph cannot express it")
    leaves = [probe] + [leaf for _, _, leaf in records]
    candidates: list[str] | None = None
    for position, (name, layer_input, _) in enumerate(records):
        previous = "the input" if position == 0 else f"layer '{called[position - 1]}'"
        if position == num_conv:
            _check_global_pooling(layer_input, leaves, position, name, called[position - 1])
            matches = pooled_matching_activations(leaves[position], layer_input, [30.0, 1.0])
            if not matches:
                known = ", ".join(n for n in SIMPLE_ACTIVATION_NAMES if n != "identity")
                raise NotACNNError(
                    f"the input of linear layer '{name}' is not the spatial mean of convolution "
                    f"'{called[position - 1]}' through a known activation ({known} in their default settings, "
                    "sine, or none): either the pooling is not a global average pooling after the activation, "
                    "which alone may join convolutions to linear layers, or the activation is not one a graph records"
                )
        else:
            _check_elementwise(layer_input, leaves, position, f"the input of layer '{name}'", previous)
            if position == 0:
                check_first_layer_reads_the_input(layer_input, probe, name, NotACNNError)
            matches = None if position == 0 else matching_activations(leaves[position], layer_input, [30.0, 1.0])
        if matches is not None:
            candidates = matches if candidates is None else [c for c in candidates if c in matches]
    activation = (candidates[0] if candidates else UNKNOWN) if candidates is not None else "identity"
    modules = [layer_of[n] for n in called]
    chain = ConvChain(
        [m.weight.detach() for m in modules],
        [None if m.bias is None else m.bias.detach() for m in modules],
        called,
        num_conv,
        [_geometry(m, n) for m, n in zip(modules[:num_conv], called)] + [LINEAR_GEOMETRY] * (len(called) - num_conv),
        activation,
        tuple(candidates or ()),
        output_offset,
    )
    return chain


def validate_cnn(chain: ConvChain, check_finite: bool = True) -> ConvChain:
    """Check shapes chain, biases fit, dtypes are floating and (optionally) values finite."""
    for position, (name, weight, bias) in enumerate(zip(chain.names, chain.weights, chain.biases)):
        expected_dim = 4 if position < chain.num_conv else 2
        if weight.dim() != expected_dim:
            raise NotACNNError(f"{name}: weight has shape {tuple(weight.shape)}, expected a {expected_dim}-D weight")
        if not weight.is_floating_point():
            raise NotACNNError(f"{name}: weight has dtype {weight.dtype}, expected a floating type")
        if weight.is_meta or (bias is not None and bias.is_meta):
            raise NotACNNError(f"{name}: on the meta device, holding no values; load or initialise the weights first")
        if 0 in weight.shape:
            raise NotACNNError(f"{name}: weight has shape {tuple(weight.shape)}: a layer without neurons")
        if bias is not None and tuple(bias.shape) != (weight.size(0),):
            raise NotACNNError(f"{name}: bias has shape {tuple(bias.shape)}, expected ({weight.size(0)},)")
        if check_finite:
            for kind, tensor in (("weight", weight), ("bias", bias)):
                if tensor is not None and not bool(torch.isfinite(tensor).all()):
                    raise NotACNNError(non_finite_message(name, kind))
    if not 1 <= chain.num_conv < len(chain.weights):
        raise NotACNNError(
            f"expected convolutions followed by linear layers, got {chain.num_conv} convolutions of {len(chain.weights)} layers"
        )
    problem = _chain_problem(
        list(range(len(chain.weights))), {i: {"weight": w} for i, w in enumerate(chain.weights)}, chain.names
    )
    if problem is not None:
        raise NotACNNError(problem)
    return chain


def _chain_problem(order: Sequence, groups: Mapping, names: Sequence[str] | None = None) -> str | None:
    """Why the weights in ``order`` are not convolutions then linear layers that chain, or ``None``."""
    weights = [groups[p]["weight"] for p in order]
    labels = list(names) if names is not None else [_key_name(p) for p in order]
    seen_linear = None
    for position, weight in enumerate(weights):
        if weight.dim() == 4 and seen_linear is not None:
            return f"convolution {labels[position]} comes after linear layer {seen_linear}: the graph cannot express it"
        if weight.dim() == 2 and seen_linear is None:
            seen_linear = labels[position]
            if position == 0:
                return f"the first layer {labels[0]} is linear: not a CNN (use wsgraph.mlp_to_graph)"
        if position == 0:
            continue
        produced, consumed = weights[position - 1].size(0), weight.size(1)
        if produced == consumed:
            continue
        if weight.dim() == 2 and weights[position - 1].dim() == 4 and consumed % produced == 0:
            return (
                f"{labels[position]} takes {consumed} inputs but convolution {labels[position - 1]} has {produced} "
                "channels: only a global pooling (one value per channel) can join convolutions to linear layers"
            )
        return f"{labels[position]} takes {consumed} inputs but {labels[position - 1]} gives {produced} outputs"
    if seen_linear is None:
        return (
            f"{labels[-1]}: weight has shape {tuple(weights[-1].shape)}, a convolution with no linear layer after it: "
            "neither an MLP (2-D weights) nor a conv-then-linear CNN"
        )
    return None


def _key_name(prefix: object) -> str:
    return f"'{prefix}.weight'" if prefix else "'weight'"


def _can_follow(first: Tensor, second: Tensor) -> bool:
    """Whether layer ``second`` can read ``first``'s output (a convolution never follows a linear layer)."""
    return not (first.dim() == 2 and second.dim() == 4) and first.size(0) == second.size(1)


def _parametrised_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    layers = []
    for name, sub in module.named_modules():
        label = name or type(module).__name__
        own_parameters = list(sub.named_parameters(recurse=False))
        own_buffers = list(sub.named_buffers(recurse=False))
        if isinstance(sub, (nn.Conv2d, nn.Linear)):
            if isinstance(sub, nn.Conv2d):
                _check_conv_options(sub, label)
            weight = sub.weight
            if weight.numel() == 0 or not weight.is_floating_point():
                raise NotACNNError(f"layer '{label}' has a {weight.dtype} weight of shape {tuple(weight.shape)}")
            layers.append((label, sub))
        elif own_parameters or own_buffers:
            kind = "normalisation layer" if "Norm" in type(sub).__name__ else "layer"
            raise NotACNNError(
                f"module '{label}' is a {type(sub).__name__} ({kind} with its own parameters or statistics), "
                "neither nn.Conv2d nor nn.Linear: the graph cannot express it"
            )
    if not layers:
        raise NotACNNError(f"{type(module).__name__} has no nn.Conv2d or nn.Linear layers")
    return layers


def _check_conv_options(conv: nn.Conv2d, label: str) -> None:
    if conv.groups != 1:
        raise NotACNNError(f"convolution '{label}' has groups={conv.groups}: only groups=1 is a graph of channels")
    if conv.padding_mode != "zeros":
        raise NotACNNError(f"convolution '{label}' pads with {conv.padding_mode!r}: only zero padding is recorded")
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise NotACNNError(f"convolution '{label}' has padding='same' that pads unevenly: not recorded")


def _geometry(conv: nn.Conv2d, label: str) -> ConvGeometry:
    if isinstance(conv.padding, str):
        padding = (
            (0, 0)
            if conv.padding == "valid"
            else tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
        )
    else:
        padding = tuple(conv.padding)
    return ConvGeometry(tuple(conv.stride), tuple(padding), tuple(conv.dilation))


def _check_probe_budget(convs: Sequence[nn.Conv2d], batch: int, size: int) -> None:
    """Refuse to run convolutions whose probe input or output would exceed :data:`MAX_PROBE_ELEMENTS`.

    A stride, padding or dilation sizes the probe and what each convolution makes of it;
    values no real CNN has (a module from a crafted file, say) would otherwise allocate
    without bound before any check could see them.
    """
    shape = [size, size]
    if batch * convs[0].in_channels * size * size > MAX_PROBE_ELEMENTS:
        # The probe's size grows with every stride and dilation: name the largest.
        position = max(range(len(convs)), key=lambda i: max(convs[i].stride) * max(convs[i].dilation))
        conv = convs[position]
        raise NotACNNError(
            f"its convolutions' strides and dilations (convolution {position + 1}: stride {tuple(conv.stride)}, "
            f"dilation {tuple(conv.dilation)}) would need a probe of over {MAX_PROBE_ELEMENTS:,} values to trace; "
            "not read"
        )
    elements = 0
    for position, conv in enumerate(convs):
        if isinstance(conv.padding, str):
            reach = [d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size)]
            padding = [0, 0] if conv.padding == "valid" else reach
        else:
            padding = list(conv.padding)
        geometry = zip(shape, padding, conv.dilation, conv.kernel_size, conv.stride)
        shape = [max((n + 2 * p - d * (k - 1) - 1) // s + 1, 0) for n, p, d, k, s in geometry]
        elements = max(elements, batch * conv.out_channels * shape[0] * shape[1])
        if elements > MAX_PROBE_ELEMENTS:
            raise NotACNNError(
                f"convolution {position + 1} (stride {tuple(conv.stride)}, padding {conv.padding}, dilation "
                f"{tuple(conv.dilation)}) would need a probe of over {MAX_PROBE_ELEMENTS:,} values to trace; not read"
            )


def _probe_size(convs: Sequence[nn.Conv2d]) -> int:
    """An input size for which the last convolution's output is at least ``_PROBE_OUTPUT_SIZE`` wide."""
    size = _PROBE_OUTPUT_SIZE
    for conv in reversed(convs):
        if isinstance(conv.padding, str):
            padding = 0 if conv.padding == "valid" else max(conv.dilation) * (max(conv.kernel_size) - 1) // 2
        else:
            padding = min(conv.padding)
        reach = max(d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size))
        size = max((size - 1) * max(conv.stride) + reach + 1 - 2 * padding, _PROBE_OUTPUT_SIZE)
    # Twice that leaves room for a pooling layer the graph cannot express, so tracing reaches it and names it.
    return max(2 * size, 16)


def _run_recording(
    module: nn.Module, names: dict[nn.Module, str], probe: Tensor
) -> tuple[list[tuple[str, Tensor, Tensor]], OutputOffset | None]:
    description = f"a {list(probe.shape)} image batch"
    records, output = record_layer_outputs(module, names, probe, NotACNNError, description)
    leaves = [probe] + [leaf for _, _, leaf in records]
    _check_elementwise(output, leaves, len(records), "the module's output", f"layer '{records[-1][0]}'")
    last_layer = next(layer for layer, name in names.items() if name == records[-1][0])
    # A module that ends in a convolution is refused later, for that.
    if not isinstance(last_layer, nn.Linear):
        return records, None
    return records, check_no_output_activation(output, records[-1][2], records[-1][0], [30.0, 1.0], NotACNNError)


def _gradients(value: Tensor, leaves: list[Tensor], at: tuple[int, ...]) -> tuple[Tensor | None, ...]:
    seed = torch.zeros_like(value)
    seed[at] = 1.0
    return torch.autograd.grad(value, leaves, grad_outputs=seed, retain_graph=True, allow_unused=True)


def _check_only_source(grads: tuple[Tensor | None, ...], source: int, what: str, previous: str) -> Tensor:
    for position, grad in enumerate(grads):
        if grad is None or position == source:
            continue
        if bool(grad.abs().sum() > 0):
            origin = "the input" if position == 0 else f"the output of layer number {position}"
            raise NotACNNError(f"{what} also depends on {origin} (a skip or branch): the graph cannot express it")
    own = grads[source]
    # A zero gradient is fine: a ReLU may be off at the entry looked at.
    if own is None:
        raise NotACNNError(f"{what} does not depend on {previous}: not a chain of layers")
    return own


def _check_elementwise(value: Tensor, leaves: list[Tensor], source: int, what: str, previous: str) -> None:
    """Raise unless ``value`` depends on ``leaves[source]`` only, entry by entry."""
    if not value.requires_grad:
        raise NotACNNError(f"{what} does not depend on {previous}: not a chain of layers")
    if value.shape != leaves[source].shape:
        raise NotACNNError(
            f"{what} has shape {tuple(value.shape)} but {previous} gives {tuple(leaves[source].shape)}: "
            "only elementwise activations may come between two convolutions or two linear layers"
        )
    at = tuple(size // 2 for size in value.shape)
    own = _check_only_source(_gradients(value, leaves, at), source, what, previous).clone()
    own[at] = 0
    if bool(own.abs().sum() > 0):
        raise NotACNNError(f"{what} mixes the entries of {previous}: not an elementwise activation")


def _check_global_pooling(value: Tensor, leaves: list[Tensor], source: int, name: str, conv: str) -> None:
    """Raise unless the first linear layer's input reads each channel of the last convolution over the whole image."""
    what, previous = f"the input of linear layer '{name}'", f"convolution '{conv}'"
    feature_map = leaves[source]
    if not value.requires_grad:
        raise NotACNNError(f"{what} does not depend on {previous}: not a chain of layers")
    if value.dim() != 2 or value.shape != feature_map.shape[:2]:
        raise NotACNNError(
            f"{what} has shape {tuple(value.shape)} but {previous} gives {tuple(feature_map.shape)}: "
            "only a global average pooling (one value per channel) may join convolutions to linear layers"
        )
    row, channel = value.size(0) // 2, value.size(1) // 2
    own = _check_only_source(_gradients(value, leaves, (row, channel)), source, what, previous).clone()
    own[row, channel] = 0
    if bool(own.abs().sum() > 0):
        raise NotACNNError(f"{what} mixes the channels of {previous}: not a global pooling")
