"""Read the layers of an MLP from a module, a state_dict or a list of (weight, bias) pairs.

Everything here returns weights in ``nn.Linear`` convention (``[out, in]``) and raises
:class:`NotAnMLPError`, naming the offending layer or key, for anything that is not a
chain of affine layers joined by elementwise activations.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from wsgraph.core.activations import UNKNOWN, matching_activations
from wsgraph.core.layer_order import AmbiguousLayerOrder, NameSortedStateDict, layer_order
from wsgraph.runtime import preserved_random_state

if TYPE_CHECKING:
    from wsgraph.core.extract_cnn import ConvChain

_OMEGA_ATTRIBUTES = ("omega_0", "omega", "w0", "first_omega_0", "hidden_omega_0")
# Any fixed seed: the probe only has to be generic (no zero entries, no ties).
_PROBE_SEED = 0x5EED


class NotAnMLPError(ValueError):
    """The object is not a chain of linear layers (its message names the culprit)."""


@dataclass(frozen=True)
class OutputOffset:
    """The constant a module's forward adds to its last layer's output, as a trace measured it: ``value``
    up to ``tolerance`` (rounding at the outputs' size and precision)."""

    value: float
    tolerance: float

    def matches(self, declared: float) -> bool:
        # A value written by hand to six significant digits (0.333333 for 1/3) is accepted too.
        return abs(self.value - declared) <= max(self.tolerance, 5e-6 * abs(self.value))


@dataclass
class LinearChain:
    """The affine layers of one MLP, in execution order, in ``nn.Linear`` convention."""

    weights: list[Tensor]
    biases: list[Tensor | None]
    names: list[str]
    activation: str = UNKNOWN
    # Every activation the trace matched (``activation`` is the most specific): a probe whose
    # pre-activations are all positive cannot tell relu from identity.
    activation_candidates: tuple[str, ...] = ()
    # What a traced module adds to its output (None where nothing was traced: state_dicts, pairs).
    output_offset: OutputOffset | None = None


def from_pairs(pairs: Sequence, names: Sequence[str] | None = None) -> LinearChain:
    """Read a list of ``(weight, bias)`` pairs (``bias`` may be ``None``)."""
    weights, biases = [], []
    names = list(names) if names is not None else [f"layer {i + 1}" for i in range(len(pairs))]
    if not pairs:
        raise NotAnMLPError("got an empty list of layers")
    for name, pair in zip(names, pairs):
        if isinstance(pair, Tensor):
            weight, bias = pair, None
        elif isinstance(pair, Sequence) and len(pair) in (1, 2):
            weight, bias = pair[0], (pair[1] if len(pair) == 2 else None)
        else:
            raise NotAnMLPError(f"{name}: expected a (weight, bias) pair, got {type(pair).__name__}")
        weights.append(_as_tensor(weight, f"{name} weight"))
        biases.append(None if bias is None else _as_tensor(bias, f"{name} bias"))
    return LinearChain(weights, biases, names)


def from_state_dict(state_dict: Mapping[str, object]) -> LinearChain:
    """Read a state_dict of ``<prefix>.weight`` / ``<prefix>.bias`` entries, any prefix."""
    groups: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        prefix, _, leaf = str(key).rpartition(".")
        if leaf not in ("weight", "bias"):
            raise NotAnMLPError(f"key '{key}' is neither a weight nor a bias: not the state_dict of an MLP")
        groups.setdefault(prefix, {})[leaf] = _as_tensor(value, f"'{key}'")
    if not groups:
        raise NotAnMLPError("the state_dict is empty")
    for prefix, group in groups.items():
        label = f"{prefix}." if prefix else ""
        if "weight" not in group:
            raise NotAnMLPError(f"'{label}bias' has no matching '{label}weight'")
    for prefix, group in groups.items():
        if group["weight"].dim() != 2:
            raise NotAnMLPError(
                f"{_key_name(prefix)}: weight has shape {tuple(group['weight'].shape)}, a linear layer's weight is 2-D"
            )
    try:
        order = layer_order(
            list(groups),
            chains=lambda order: _chain_break(order, groups) is None,
            follows=lambda first, second: groups[first]["weight"].shape[0] == groups[second]["weight"].shape[1],
            keys_in_order=not isinstance(state_dict, NameSortedStateDict),
            describe=_key_name,
        )
    except AmbiguousLayerOrder as error:
        raise NotAnMLPError(str(error)) from None
    _check_chain([groups[p]["weight"] for p in order], [_key_name(p) for p in order])
    return LinearChain(
        [groups[p]["weight"] for p in order],
        [groups[p].get("bias") for p in order],
        [_key_name(p) for p in order],
    )


def from_module(module: nn.Module, probe_rows: int = 64) -> LinearChain:
    """Read the ``nn.Linear`` layers of a module in execution order, and its activation.

    The module is run once on a random input with every linear output cut from the
    autograd graph, so that autograd can show that each layer reads only the previous
    layer's output, through an elementwise function (a chain, not a branch). The input
    comes from a generator of its own and the global random states are restored after
    the run, so reading a module changes no later random draw of the caller's.
    """
    refuse_meta_module(module, NotAnMLPError)
    linears = _parametrised_submodules(module)
    probe, records, output_offset = _run_recording(module, dict((m, n) for n, m in linears), probe_rows)
    names = [name for name, _, _ in records]
    for name, _ in linears:
        count = names.count(name)
        if count == 0:
            raise NotAnMLPError(f"layer '{name}' is never called in forward: not a chain of linear layers")
        if count > 1:
            raise NotAnMLPError(f"layer '{name}' is called {count} times in forward (shared weights): not an MLP")
    layer_of = dict((n, m) for n, m in linears)
    weights = [layer_of[n].weight.detach() for n in names]
    _check_chain(weights, names)
    leaves = [probe] + [leaf for _, _, leaf in records]
    omegas = _omega_candidates(module)
    candidates: list[str] | None = None
    for position, (name, layer_input, _) in enumerate(records):
        previous = "the input" if position == 0 else f"layer '{names[position - 1]}'"
        _check_elementwise_dependency(layer_input, leaves, position, f"the input of layer '{name}'", previous)
        if position == 0:
            check_first_layer_reads_the_input(layer_input, probe, name, NotAnMLPError)
        else:
            matches = matching_activations(leaves[position], layer_input, omegas)
            candidates = matches if candidates is None else [c for c in candidates if c in matches]
    if candidates is None:
        activation = "identity"
    else:
        activation = candidates[0] if candidates else UNKNOWN
    return LinearChain(
        weights,
        [None if layer_of[n].bias is None else layer_of[n].bias.detach() for n in names],
        names,
        activation,
        tuple(candidates or ()),
        output_offset,
    )


def non_finite_message(name: str, kind: str) -> str:
    """What :func:`validate` says of a layer's ``kind`` (weight or bias) holding NaN or inf: a state_dict's
    layer, named by its weight key, has its bias named by the bias key."""
    if name.endswith(".weight'") or name == "'weight'":
        key = name.removesuffix("weight'") + kind + "'"
        return f"{key} contains NaN or inf"
    return f"{name}: {kind} contains NaN or inf"


def refuse_meta_module(module: nn.Module, error: type[Exception]) -> None:
    """Raise ``error`` for a module with parameters or buffers on the meta device, which hold no values
    to read (tracing it failed on ``Tensor.item()``)."""
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        if tensor.is_meta:
            raise error(f"{name} is on the meta device and holds no values; load or initialise the weights first")


def validate(chain: LinearChain, check_finite: bool = True) -> LinearChain:
    """Check shapes chain, biases fit, dtypes are floating and (optionally) values finite."""
    for name, weight, bias in zip(chain.names, chain.weights, chain.biases):
        if weight.dim() not in (2, 3):
            raise NotAnMLPError(f"{name}: weight has shape {tuple(weight.shape)}, expected [out, in]")
        if not weight.is_floating_point():
            raise NotAnMLPError(f"{name}: weight has dtype {weight.dtype}, expected a floating type")
        if weight.is_meta or (bias is not None and bias.is_meta):
            raise NotAnMLPError(f"{name}: on the meta device, holding no values; load or initialise the weights first")
        if 0 in weight.shape[-2:]:
            raise NotAnMLPError(f"{name}: weight has shape {tuple(weight.shape)}: a layer without neurons")
        if bias is not None and tuple(bias.shape) != tuple(weight.shape[:-1]):
            raise NotAnMLPError(
                f"{name}: bias has shape {tuple(bias.shape)}, expected {tuple(weight.shape[:-1])} for a weight of shape {tuple(weight.shape)}"
            )
        if check_finite:
            for kind, tensor in (("weight", weight), ("bias", bias)):
                if tensor is not None and not bool(torch.isfinite(tensor).all()):
                    raise NotAnMLPError(non_finite_message(name, kind))
    stacked = {w.dim() == 3 for w in chain.weights}
    if len(stacked) > 1:
        raise NotAnMLPError("mixing stacked [B, out, in] and single [out, in] weights")
    if stacked == {True} and len({w.shape[0] for w in chain.weights}) > 1:
        raise NotAnMLPError(
            f"stacked weights disagree on the number of networks: {[w.shape[0] for w in chain.weights]}"
        )
    if stacked == {True} and chain.weights[0].shape[0] == 0:
        raise NotAnMLPError("stacked weights hold no networks (B = 0)")
    _check_chain(chain.weights, chain.names)
    return chain


def _check_chain(weights: Sequence[Tensor], names: Sequence[str]) -> None:
    for position in range(1, len(weights)):
        produced, consumed = weights[position - 1].shape[-2], weights[position].shape[-1]
        if produced != consumed:
            raise NotAnMLPError(
                f"{names[position]} takes {consumed} inputs but {names[position - 1]} gives {produced} outputs: "
                "shapes do not chain"
            )


def _chain_break(order: Sequence[str], groups: Mapping[str, Mapping[str, Tensor]]) -> int | None:
    weights = [groups[p]["weight"] for p in order]
    for position in range(1, len(weights)):
        if weights[position - 1].shape[0] != weights[position].shape[1]:
            return position
    return None


def _key_name(prefix: str) -> str:
    return f"'{prefix}.weight'" if prefix else "'weight'"


def _as_tensor(value: object, name: str) -> Tensor:
    if isinstance(value, nn.Parameter):
        return value.detach()
    if isinstance(value, Tensor):
        return value
    raise NotAnMLPError(f"{name} is a {type(value).__name__}, not a tensor")


def _parametrised_submodules(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    linears = []
    for name, sub in module.named_modules():
        own = [n for n, _ in sub.named_parameters(recurse=False)]
        if not own:
            continue
        label = name or type(module).__name__
        if not isinstance(sub, nn.Linear):
            raise NotAnMLPError(f"module '{label}' is a {type(sub).__name__}, not nn.Linear: not an MLP")
        weight = getattr(sub, "weight", None)
        if not isinstance(weight, Tensor) or weight.dim() != 2 or not weight.is_floating_point():
            kind = (
                f"{weight.dtype} weight of shape {tuple(weight.shape)}" if isinstance(weight, Tensor) else "no weight"
            )
            raise NotAnMLPError(f"layer '{label}' has {kind}, expected a floating-point [out, in] matrix")
        if weight.numel() == 0:
            raise NotAnMLPError(f"layer '{label}' has a weight of shape {tuple(weight.shape)}: a layer without neurons")
        linears.append((label, sub))
    if not linears:
        raise NotAnMLPError(f"{type(module).__name__} has no nn.Linear layers")
    return linears


def record_layer_outputs(
    module: nn.Module,
    names: dict[nn.Module, str],
    probe: Tensor,
    error: type[NotAnMLPError],
    probe_description: str,
) -> tuple[list[tuple[str, Tensor, Tensor]], Tensor]:
    """Run ``module`` on ``probe`` with each named layer's output cut into a fresh leaf.

    Returns ``([(name, layer input, output leaf), ...] in call order, module output)``, so
    that gradients tell what each value depends on. A failing forward pass or a
    non-tensor output raises ``error`` (the probe itself is the test); the module's
    training flag and the global random states are left as they were.
    """
    records: list[tuple[str, Tensor, Tensor]] = []

    def cut_output(layer: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
        leaf = output.detach().requires_grad_(True)
        records.append((names[layer], inputs[0], leaf))
        return leaf

    handles = [layer.register_forward_hook(cut_output) for layer in names]
    try:
        # A module may draw random numbers in its forward pass even in eval mode.
        with torch.enable_grad(), preserved_random_state(probe.device), evaluation_mode(module):
            output = module(probe)
    except Exception as failure:  # any failure means "not this kind of network"
        raise error(
            f"could not run {type(module).__name__} on {probe_description} to trace its layers: {failure}"
        ) from failure
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(output, Tensor):
        raise error(f"{type(module).__name__} returns a {type(output).__name__}, not a tensor")
    return records, output


def _run_recording(
    module: nn.Module, names: dict[nn.Module, str], probe_rows: int
) -> tuple[Tensor, list[tuple[str, Tensor, Tensor]], OutputOffset | None]:
    probe, records, output = _record_with_a_fitting_probe(module, names, probe_rows)
    if not records:
        return probe, records, None
    _check_elementwise_dependency(
        output,
        [probe] + [leaf for _, _, leaf in records],
        len(records),
        "the module's output",
        f"layer '{records[-1][0]}'",
    )
    omegas = _omega_candidates(module)
    return probe, records, check_no_output_activation(output, records[-1][2], records[-1][0], omegas, NotAnMLPError)


def _record_with_a_fitting_probe(
    module: nn.Module, names: dict[nn.Module, str], probe_rows: int
) -> tuple[Tensor, list[tuple[str, Tensor, Tensor]], Tensor]:
    """Run ``module`` on a probe as wide as the input of the layer it calls first, which need not be the
    first it registers (see :func:`first_called_layer`)."""
    first_registered = next(iter(names))
    weight = first_registered.weight

    def probe_of(width: int) -> Tensor:
        generator = torch.Generator().manual_seed(_PROBE_SEED)
        return torch.randn(probe_rows, width, generator=generator).to(dtype=weight.dtype, device=weight.device)

    # Widths come from the weights, not `in_features`: a loaded module's attributes are whatever the file said.
    first = first_called_layer(module, names, probe_of(weight.size(1)))
    if first is not None:
        widths = [first.weight.size(1)]
    else:
        # The pass failed before any layer (a forward that checks its input's width, say): try every width.
        widths = list(dict.fromkeys(layer.weight.size(1) for layer in names))
    first_failure: NotAnMLPError | None = None
    for width in widths:
        probe = probe_of(width).requires_grad_(True)
        try:
            records, output = record_layer_outputs(
                module, names, probe, NotAnMLPError, f"a [{probe_rows}, {width}] input"
            )
        except NotAnMLPError as failure:
            first_failure = first_failure or failure
            continue
        return probe, records, output
    assert first_failure is not None
    raise first_failure


class _LayerEntered(BaseException):
    """Stops a forward pass as a layer is entered (a BaseException, so that a module's own
    ``except Exception`` does not swallow it)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer


def first_called_layer(module: nn.Module, layers: Iterable[nn.Module], probe: Tensor) -> nn.Module | None:
    """The layer among ``layers`` that ``module`` calls first on ``probe``, or ``None`` if its forward pass
    fails before calling any.

    The pass stops as that layer is entered, before it computes, so a probe of another layer's input width
    reaches it as well: a module may register its last layer first. The module's training flag and the
    global random states are left as they were.
    """

    def stop(layer: nn.Module, _inputs: tuple) -> None:
        raise _LayerEntered(layer)

    handles = [layer.register_forward_pre_hook(stop) for layer in layers]
    try:
        with torch.no_grad(), preserved_random_state(probe.device), evaluation_mode(module):
            module(probe)
    except _LayerEntered as entered:
        return entered.layer
    except Exception:  # the run that follows reports what fails
        return None
    finally:
        for handle in handles:
            handle.remove()
    return None


@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """``module.eval()`` for the block, then every submodule's own training flag back (``module.train(flag)``
    would set them all alike)."""
    flags = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, flag in flags:
            sub.training = flag


def check_first_layer_reads_the_input(
    layer_input: Tensor, probe: Tensor, name: str, error: type[NotAnMLPError]
) -> None:
    """Raise ``error`` unless the first layer reads the module's input as it is: a graph has no place for a
    function applied before it (``x * 10``, ``x + 1``, ``sin(x)``), so the rebuilt network would leave it out."""
    if layer_input.shape == probe.shape and torch.equal(layer_input.detach(), probe.detach()):
        return
    raise error(
        f"the module transforms its input before its first layer '{name}': a graph records no such function, "
        "so the network rebuilt from it would compute something else"
    )


def check_no_output_activation(
    output: Tensor, last: Tensor, name: str, omegas: list[float], error: type[NotAnMLPError]
) -> OutputOffset | None:
    """Raise ``error`` unless the module's ``output`` is its last layer's output ``last`` plus a constant
    (DWSNets' INRs add 0.5), and return that constant (``None`` where it cannot be told). A graph records
    the hidden activation only, so a network rebuilt from it would leave out an output activation; the
    constant is checked against what the caller declares (:func:`check_output_offset`)."""
    difference = (output - last).detach()
    # Non-finite weights make the comparison meaningless; `validate` names them.
    if difference.numel() == 0 or not torch.isfinite(difference).all():
        return None
    # `(last + c) - last` is c only up to rounding at the outputs' magnitude, in their precision.
    scale = 1.0 + max(float(last.detach().abs().max()), float(output.detach().abs().max()))
    tolerance = 8 * torch.finfo(difference.dtype).eps * scale
    if float(difference.max() - difference.min()) <= tolerance:
        return OutputOffset(_shortest_within(float(difference.double().mean()), tolerance), tolerance)
    matches = matching_activations(last, output, omegas)
    applied = f"an elementwise {matches[0]}" if matches else "an elementwise function"
    raise error(
        f"the module applies {applied} after its last linear layer '{name}': a graph records no output "
        "activation, so the network rebuilt from it would compute something else; save the module without it"
    )


def _shortest_within(value: float, tolerance: float) -> float:
    """The number of fewest significant digits within ``tolerance`` of ``value``: the 0.5 a module adds,
    not the 0.49999999 its float32 outputs' rounding leaves (and 0 for a module that adds nothing)."""
    if abs(value) <= tolerance:
        return 0.0
    for digits in range(1, 18):
        rounded = float(f"{value:.{digits}g}")
        if abs(rounded - value) <= tolerance:
            return rounded
    return value


def check_output_offset(
    chain: LinearChain | ConvChain, declared: float, how: str, error: type[NotAnMLPError] = NotAnMLPError
) -> None:
    """Raise ``error`` unless the constant a traced module adds to its output is ``declared``: a graph does
    not record it, so whoever renders or evaluates the rebuilt network must know it. ``how`` says where to
    declare it, with ``{}`` for the value: ``"output_offset={}"`` or ``"--output-offset {}"``."""
    if isinstance(declared, bool) or not isinstance(declared, numbers.Real) or not math.isfinite(declared):
        raise ValueError(f"output_offset must be a finite number, got {declared!r}")
    measured = chain.output_offset
    if measured is None or measured.matches(declared):
        return
    # The value is already the shortest decimal within the trace's rounding: declared as printed, it matches.
    last, value = chain.names[-1], repr(measured.value)
    if declared == 0:
        raise error(
            f"the module adds {value} to the output of its last layer '{last}': a graph does not record that "
            f"constant, so the network rebuilt from it would compute {value} less; declare it with {how.format(value)}"
        )
    raise error(
        f"{how.format(repr(float(declared)))} was declared, but the module adds {value} to the output of its last layer "
        f"'{last}'"
    )


def _check_elementwise_dependency(value: Tensor, leaves: list[Tensor], source: int, what: str, previous: str) -> None:
    """Raise unless ``value`` depends on ``leaves[source]`` only, elementwise."""
    if not value.requires_grad:
        raise NotAnMLPError(f"{what} does not depend on {previous}: not a chain of linear layers")
    if value.shape != leaves[source].shape:
        raise NotAnMLPError(
            f"{what} has shape {tuple(value.shape)} but {previous} gives {tuple(leaves[source].shape)}: not a chain"
        )
    row, col = value.size(0) // 2, value.size(-1) // 2
    seed = torch.zeros_like(value)
    seed[row, col] = 1.0
    grads = torch.autograd.grad(value, leaves, grad_outputs=seed, retain_graph=True, allow_unused=True)
    for position, grad in enumerate(grads):
        if grad is None or position == source:
            continue
        if bool(grad.abs().sum() > 0):
            origin = "the input" if position == 0 else f"the output of linear layer number {position}"
            raise NotAnMLPError(f"{what} also depends on {origin} (a skip or branch): not a chain")
    own = grads[source]
    if own is None:
        raise NotAnMLPError(f"{what} does not depend on {previous}: not a chain of linear layers")
    off_diagonal = own.clone()
    off_diagonal[row, col] = 0
    if bool(off_diagonal.abs().sum() > 0):
        raise NotAnMLPError(f"{what} mixes the neurons of {previous}: not an elementwise activation")


def _omega_candidates(module: nn.Module) -> list[float]:
    found = []
    for sub in module.modules():
        for attribute in _OMEGA_ATTRIBUTES:
            value = getattr(sub, attribute, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                found.append(float(value))
    return [*dict.fromkeys(found), 30.0, 1.0]
