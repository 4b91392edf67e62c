"""A user's network file, read safely: PyTorch ``.pt``/``.pth``/``.ckpt`` files and ``.safetensors``.

Loading runs no code from the file. :func:`torch.load` runs with ``weights_only=True``,
which rebuilds tensors and plain containers only, and a whole saved ``nn.Module`` is
rebuilt only when every module in it is one of :data:`SAFE_MODULE_CLASSES` (containers,
``nn.Linear``, ``nn.Conv2d``, ``nn.AdaptiveAvgPool2d``, ``nn.Flatten``, ``nn.Dropout``
and the activations a graph records). Anything else the
file names (a class of your own, or ``os.system`` in a crafted file) is refused with
an error naming it. ``trust_pickles=True`` (``--trust-pickles`` on the command line)
unpickles such files with ``weights_only=False``, **which runs any code the file
contains: use it only for files you made**.

Whatever loads is then checked before anything reads its values: every tensor must be
a dense CPU tensor no larger than the file (a crafted view can declare billions of
elements over a few bytes), so a small file cannot make a reader allocate gigabytes.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from wsgraph.core.activations import ACTIVATION_CLASSES
from wsgraph.core.convert_mlp import mlp_to_graph
from wsgraph.core.extract_mlp import NotAnMLPError
from wsgraph.core.graph import WeightSpaceGraph
from wsgraph.core.layer_order import NameSortedStateDict
from wsgraph.deprecation import renamed
from wsgraph.errors import load_error_reason, shown_path

TORCH_SUFFIXES = frozenset({".pt", ".pth", ".ckpt"})
SAFETENSORS_SUFFIX = ".safetensors"
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES | {SAFETENSORS_SUFFIX}
# Keys under which training scripts commonly nest the weights, tried in this order.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
# The modules a saved network may be built of when it is loaded without trust_pickles:
# what the extractors read (linear layers and convolutions, the global average pooling
# and flattening between them, elementwise activations, containers), and Dropout, an
# identity in eval mode. None of them runs code of its own when rebuilt; the options
# their forward reads from the file are checked (`_check_layer_options`).
SAFE_MODULE_CLASSES: tuple[type[nn.Module], ...] = (
    nn.Sequential,
    nn.ModuleList,
    nn.ModuleDict,
    nn.Linear,
    nn.Conv2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Dropout,
    *ACTIVATION_CLASSES,
)
TRUST_HINT = (
    "pass --trust-pickles (trust_pickles=True in Python) to load it anyway, which runs any code the file contains"
)


class CheckpointError(ValueError):
    """A checkpoint file cannot be read; the one-line message names the file."""


def load_network_file(path: str | os.PathLike, *, trust_pickles: bool = False) -> nn.Module | dict[str, Tensor]:
    """The saved module, or the state_dict, in a checkpoint file.

    Common containers are unwrapped: ``{"state_dict": ...}``, ``{"model_state_dict":
    ...}``, ``{"model": ...}``, ``{"net": ...}`` and ``{"weights": ...}``, nested or
    not; entries that are not tensors (epoch counters, optimiser states, configs) are
    dropped. Tensors are loaded to the CPU.

    Args:
        path: a ``.pt``, ``.pth`` or ``.ckpt`` file written by :func:`torch.save`, or a
            ``.safetensors`` file (needs the ``safetensors`` package).
        trust_pickles: unpickle whatever the file holds, classes of your own included.
            **This runs any code the file contains**: only for files you made.

    Returns:
        An ``nn.Module`` for a file that saved a whole module, otherwise a ``dict``
        from parameter names to tensors.

    Raises:
        CheckpointError: the file is missing, a directory or not a regular file, of an unknown kind, corrupt
            or truncated, holds no tensors, names a global outside the allow-list
            (without ``trust_pickles``), or holds a sparse, meta or oversized tensor.
    """
    path = Path(path)
    name = shown_path(path)
    if not path.exists():
        raise CheckpointError(f"{name}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{name}: is a directory, expected a checkpoint file")
    if not path.is_file():
        # Reading a named pipe or a device such as /dev/zero would wait or run forever.
        raise CheckpointError(f"{name}: not a regular file (a pipe, socket or device), expected a checkpoint file")
    try:
        # A file we may not read is not a damaged one: say which.
        with path.open("rb"):
            pass
    except PermissionError as error:
        raise CheckpointError(f"{name}: cannot be read ({error.strerror})") from None
    suffix = path.suffix.lower()
    unpickled = False  # with trust_pickles, past the allowlist
    if suffix == SAFETENSORS_SUFFIX:
        content: nn.Module | dict[str, Tensor] = _load_safetensors(path, name)
    elif suffix in TORCH_SUFFIXES:
        loaded, unpickled = _load_torch(path, name, trust_pickles)
        content = _unwrap(loaded, name)
    else:
        known = ", ".join(sorted(CHECKPOINT_SUFFIXES))
        raise CheckpointError(
            f"{name}: unknown checkpoint extension {path.suffix or '(none)'!r}; expected one of {known}"
        )
    check_tensors(content, path, hooks_allowed=unpickled)
    return content


def graph_from_network_file(
    path: str | os.PathLike, *, trust_pickles: bool = False, **kwargs
) -> WeightSpaceGraph | Batch:
    """:func:`load_network_file` followed by :func:`wsgraph.mlp_to_graph` (``kwargs`` go to the latter).

    Raises:
        CheckpointError: the file cannot be read.
        NotAnMLPError: the file holds no MLP; the message names the file and the layer.
    """
    network = load_network_file(path, trust_pickles=trust_pickles)
    try:
        return mlp_to_graph(network, **kwargs)
    except NotAnMLPError as error:
        raise NotAnMLPError(f"{shown_path(path)}: {error}") from error


class _CallRefused(type):
    """Metaclass of the stand-ins below: calling one (pickle's REDUCE) raises."""

    def __call__(cls, *args, **kwargs):
        target = cls._target
        raise pickle.UnpicklingError(
            f"the file calls {target.__module__}.{target.__qualname__}(...), which a saved module never does"
        )


def _allow_list() -> list[tuple[object, str]]:
    """The ``torch.serialization.safe_globals`` entries for :data:`SAFE_MODULE_CLASSES`.

    A saved module is rebuilt by pickle's NEWOBJ (an empty instance, no ``__init__``)
    and BUILD (its ``__dict__``). Allowing the class itself would also let a crafted
    file *call* it, e.g. ``nn.Linear(10**5, 10**5)``, which allocates and initialises
    40 GB before any check could run. So the file's name for each class resolves to a
    stand-in whose ``__new__`` makes the empty instance and whose call raises; the real
    class is allowed (BUILD checks the instance's type) under a name containing a
    newline, which no pickle GLOBAL can spell, since it reads names line by line.
    """
    entries: list[tuple[object, str]] = []
    for cls in SAFE_MODULE_CLASSES:
        qualified = f"{cls.__module__}.{cls.__qualname__}"

        def empty_instance(_stand_in: type, *_args: object, cls: type = cls) -> nn.Module:
            return cls.__new__(cls)

        stand_in = _CallRefused(cls.__name__, (), {"_target": cls, "__new__": staticmethod(empty_instance)})
        entries += [(stand_in, qualified), (cls, f"{qualified}\n(instance type)")]
    return entries


_SAFE_GLOBALS = _allow_list()


def load_tensors_only(path: str | os.PathLike, mmap: bool = False) -> object:
    """``torch.load`` of tensors and plain data only (``weights_only=True``, to the CPU), without torch's
    warning about a pickle protocol it was not written for (a damaged file's first bytes), which would
    come before the one-line error that says what is wrong."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _load_torch(path: Path, name: str, trust_pickles: bool) -> tuple[object, bool]:
    """The file's content, and whether it took unrestricted unpickling (``trust_pickles``) to read it."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(_SAFE_GLOBALS):
            # torch warns about pickle protocols it was not written for; the load itself says what fails.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as error:
        refusal = error
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise CheckpointError(
            f"{name}: not a readable PyTorch checkpoint (corrupt or truncated?): {load_error_reason(error)}"
        ) from None
    if not trust_pickles:
        raise CheckpointError(_refusal(path, name, refusal))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=False), True
    except Exception as error:
        raise CheckpointError(
            f"{name}: cannot unpickle it (even trusting its pickles): {load_error_reason(error)}"
        ) from None


def _refusal(path: Path, name: str, error: pickle.UnpicklingError) -> str:
    """The one-line refusal of a file that safe loading stopped: the globals it names, if any."""
    detail = load_error_reason(error)
    offenders = _unsafe_globals(path)
    if not offenders:
        # Old-format (non-zip) files cannot be listed beforehand; torch names the first global it met.
        match = re.search(r"GLOBAL (\S+)", detail)
        offenders = [match.group(1)] if match else []
    if offenders:
        listed = ", ".join(repr(offender) for offender in offenders[:3])
        if len(offenders) > 3:
            listed += f" and {len(offenders) - 3} more"
        return f"{name}: refuses to unpickle {listed} (not a known torch.nn class); {TRUST_HINT}"
    if _starts_with(path, _LEGACY_MAGIC):
        return (
            f"{name}: safe loading cannot read this file in torch.save's old (non-zip) format ({detail}); "
            f"if it saves a whole module, save its state_dict instead, or {TRUST_HINT}"
        )
    return f"{name}: not a readable PyTorch checkpoint (corrupt, truncated or a plain pickle?): {detail}"


def _unsafe_globals(path: Path) -> list[str]:
    """The globals of a zip checkpoint that neither torch nor :data:`SAFE_MODULE_CLASSES` allows, sorted."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint, or too damaged to list: torch's own message is all there is
        return []


# torch.save's old format opens with its magic number, pickled.
_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)


def _starts_with(path: Path, prefix: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(prefix)) == prefix


def _load_safetensors(path: Path, name: str) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{name}: reading .safetensors files needs the 'safetensors' package (pip install safetensors)"
        ) from None
    try:
        tensors = load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError for damaged files
        raise CheckpointError(
            f"{name}: not a readable safetensors file (corrupt or truncated?): {load_error_reason(error)}"
        ) from None
    if not tensors:
        raise CheckpointError(f"{name}: holds no tensors")
    return NameSortedStateDict(tensors)


def _unwrap(content: object, name: str) -> nn.Module | dict[str, Tensor]:
    # A loop, not recursion: a crafted file can nest containers deeper than Python's stack, or in a cycle.
    visited: set[int] = set()
    while not isinstance(content, nn.Module) and id(content) not in visited:
        if not isinstance(content, Mapping):
            kind = type(content).__name__
            article = "an" if kind[:1].lower() in "aeiou" else "a"
            raise CheckpointError(f"{name}: holds {article} {kind}, expected a state_dict or an nn.Module")
        visited.add(id(content))
        inner = next(
            (content[key] for key in CONTAINER_KEYS if isinstance(content.get(key), (Mapping, nn.Module))), None
        )
        if inner is None:
            break
        content = inner
    if isinstance(content, nn.Module):
        return content
    tensors = {
        key: value.detach() if isinstance(value, nn.Parameter) else value
        for key, value in content.items()
        if isinstance(key, str) and isinstance(value, Tensor)
    }
    if not tensors:
        keys = ", ".join(shown_path(_key_text(key)) for key in list(content)[:5])
        nested = [key for key, value in content.items() if isinstance(value, (Mapping, nn.Module))]
        if len(nested) > 1:
            # e.g. {"generator": state_dict, "discriminator": state_dict}: which one is meant is the user's call.
            raise CheckpointError(
                f"{name}: holds several networks or dicts (keys: {keys}), not one state_dict; "
                "save the network to convert on its own"
            )
        raise CheckpointError(f"{name}: holds no tensors (keys: {keys or 'none'})")
    return tensors


# What every nn.Module keeps in its __dict__, with the type of each entry (None may also be a bool).
_MODULE_STATE = {key: type(value) for key, value in vars(nn.Module()).items()}
# Every registry of callables a module runs (forward, backward and state-dict hooks), and the
# flags that go with them.
_HOOK_REGISTRIES = tuple(key for key, kind in _MODULE_STATE.items() if "hook" in key and issubclass(kind, dict))
_MISSING = object()
_REGISTRIES = {
    "_parameters": (Tensor, type(None)),
    "_buffers": (Tensor, type(None)),
    "_modules": (nn.Module, type(None)),
}


def check_tensors(content: object, path: str | os.PathLike, *, hooks_allowed: bool = False) -> None:
    """Refuse the tensors in ``content``, read from the file ``path``, that no reader should touch.

    Every tensor reachable from ``content`` (through modules' attributes, mappings,
    lists and tuples) must be a plain dense CPU tensor, not quantized, whose elements
    take no more bytes than the whole file: a view with zero strides can declare
    billions of elements over a few stored bytes, and the first reader to copy it
    would allocate them all.

    A module's hooks (forward, backward, state-dict) would run when the module does;
    ``hooks_allowed`` is for a file read with ``trust_pickles``, whose own code they are.
    Without it, a module that carries any is refused.

    Raises:
        CheckpointError: naming the file and the tensor, or the malformed module.
    """
    name = shown_path(path)
    file_size = Path(path).stat().st_size
    for label, tensor in _named_tensors(content, name, hooks_allowed):
        where = f"{name}: {label!r}"
        if type(tensor) not in (Tensor, nn.Parameter):
            raise CheckpointError(f"{where} is a {type(tensor).__name__}, a tensor subclass; expected a plain tensor")
        if tensor.layout != torch.strided:
            kind = str(tensor.layout).removeprefix("torch.")
            raise CheckpointError(f"{where} is a sparse tensor ({kind}); only dense weights can be read")
        if tensor.is_meta:
            raise CheckpointError(f"{where} is a meta tensor: the file records its shape but no values")
        if tensor.device.type != "cpu":
            raise CheckpointError(f"{where} is on {tensor.device}, expected the CPU")
        if tensor.is_quantized:
            raise CheckpointError(f"{where} is a quantized tensor; only floating-point weights can be read")
        size = tensor.numel() * tensor.element_size()
        if size > file_size:
            raise CheckpointError(
                f"{where} declares {tensor.numel():,} elements ({size:,} bytes) but the file holds "
                f"{file_size:,} bytes (a view repeating a few values?); refusing to read it"
            )


def _named_tensors(content: object, name: str, hooks_allowed: bool) -> Iterator[tuple[str, Tensor]]:
    """Every tensor reachable from ``content`` with a dotted label, each object visited once.

    Walks modules' attributes too, not only their parameters, since the extractor runs
    the module and its forward may read any of them. Iterative, so that a deeply
    nested crafted file cannot exhaust the stack.
    """
    seen: set[int] = set()
    pending: list[tuple[str, object]] = [("", content)]
    while pending:
        label, value = pending.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, Tensor):
            yield label, value
        elif isinstance(value, nn.Module):
            _check_module(value, label, name, hooks_allowed)
            # The registries hold the attributes; their own names are not part of state_dict keys.
            items = [
                (label if key in ("_parameters", "_buffers", "_modules") else _join(label, key), item)
                for key, item in vars(value).items()
            ]
            # Reversed onto the stack, so that the first tensor in the file is the first one named.
            pending.extend(reversed(items))
        elif isinstance(value, Mapping):
            pending.extend(reversed([(_join(label, _key_text(key)), item) for key, item in value.items()]))
        elif isinstance(value, (list, tuple, set, frozenset)):
            pending.extend(reversed([(_join(label, str(index)), item) for index, item in enumerate(value)]))


def _check_module(module: nn.Module, label: str, name: str, hooks_allowed: bool) -> None:
    """Refuse a module whose bookkeeping a damaged or crafted file got wrong.

    The extractor calls ``named_modules``, ``register_forward_hook``, ``eval`` and the
    module itself; each needs the attributes every ``nn.Module`` has, of the right
    types, and no instance attribute may hide one of the class's methods.
    """
    state = vars(module)
    where = f"{name}: the saved {type(module).__name__}" + (f" {label!r}" if label else "")
    for key, kind in _MODULE_STATE.items():
        value = state.get(key, _MISSING)
        if not (isinstance(value, kind) or (kind is type(None) and isinstance(value, bool))):
            raise CheckpointError(f"{where} has a missing or malformed {key!r}")
    for registry, kinds in _REGISTRIES.items():
        if not all(isinstance(key, str) and isinstance(entry, kinds) for key, entry in state[registry].items()):
            raise CheckpointError(f"{where} has a malformed {registry!r}")
    if not hooks_allowed:
        hooked = next((key for key in _HOOK_REGISTRIES if state[key]), None)
        if hooked is not None:
            raise CheckpointError(
                f"{where} carries {_key_text(hooked)} in the file, callables that would run with it; "
                "only a module of your own classes, read with --trust-pickles, may carry them"
            )
    for key in state:
        found = getattr(type(module), key, None)
        if callable(found) or isinstance(found, property):
            raise CheckpointError(f"{where} has an attribute {_key_text(key)!r} that hides its method of that name")
    problem = _layer_option_problem(module, state)
    if problem is not None:
        raise CheckpointError(f"{where} {problem}")


def _layer_option_problem(module: nn.Module, state: dict) -> str | None:
    """What is wrong with the options a layer's forward reads from the file, or ``None``.

    A convolution's options size what it computes: a crafted stride, padding or dilation
    could make running it allocate without bound, a kernel size that disagrees with the
    weight would make the recorded graph lie. Only the values torch's own constructors
    produce pass; the extractor then bounds the probe it runs (``wsgraph.core.extract_cnn``).
    """
    if isinstance(module, nn.Conv2d):
        weight = state["_parameters"].get("weight")
        bias = state["_parameters"].get("bias", _MISSING)
        checks = {
            "in_channels": _is_int(state.get("in_channels"), 1),
            "out_channels": _is_int(state.get("out_channels"), 1),
            "kernel_size": _is_int_pair(state.get("kernel_size"), 1),
            "stride": _is_int_pair(state.get("stride"), 1),
            "dilation": _is_int_pair(state.get("dilation"), 1),
            "padding": state.get("padding") in ("same", "valid") or _is_int_pair(state.get("padding"), 0),
            "groups": _is_int(state.get("groups"), 1),
            "padding_mode": state.get("padding_mode") in ("zeros", "reflect", "replicate", "circular"),
            "transposed": state.get("transposed") is False,
            "output_padding": state.get("output_padding") in ((0, 0), (0,)),
        }
        bad = next((key for key, passed in checks.items() if not passed), None)
        if bad is not None:
            return f"has a malformed {bad!r} ({_value_text(state.get(bad, _MISSING))})"
        # What padding modes other than zeros pad by; it must be what `padding` implies.
        padding, reach = state["padding"], [d * (k - 1) for d, k in zip(state["dilation"], state["kernel_size"])]
        widest = 0 if padding == "valid" else max(reach) if padding == "same" else max(padding)
        repeated = state.get("_reversed_padding_repeated_twice")
        if not (
            isinstance(repeated, (list, tuple))
            and len(repeated) == 4
            and all(_is_int(v, 0) and v <= widest for v in repeated)
        ):
            return "has a malformed '_reversed_padding_repeated_twice'"
        shape = (state["out_channels"], state["in_channels"] // state["groups"], *state["kernel_size"])
        if not isinstance(weight, Tensor) or tuple(weight.shape) != shape:
            found = tuple(weight.shape) if isinstance(weight, Tensor) else None
            return f"has a weight of shape {found}, not the {shape} its options say"
        if bias is _MISSING or (bias is not None and (not isinstance(bias, Tensor) or tuple(bias.shape) != shape[:1])):
            return "has a bias that does not match its output channels"
    elif isinstance(module, nn.AdaptiveAvgPool2d):
        if state.get("output_size") not in (1, (1, 1)):
            return (
                f"pools to {_value_text(state.get('output_size', _MISSING))}; only a global average pooling "
                "(output_size=1) is read"
            )
    elif isinstance(module, nn.Flatten) and not all(
        _is_int(state.get(key), -(2**31)) for key in ("start_dim", "end_dim")
    ):
        return "has a malformed 'start_dim' or 'end_dim'"
    return None


def _is_int(value: object, lowest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value < 2**31


def _is_int_pair(value: object, lowest: int) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and all(_is_int(v, lowest) for v in value)


def _value_text(value: object) -> str:
    # Only short, plain values are shown: a crafted option could be a huge object.
    if value is _MISSING:
        return "missing"
    if isinstance(value, (int, str)) or (isinstance(value, tuple) and len(value) <= 4):
        text = repr(value)
        return text if len(text) <= 40 else text[:40] + "..."
    return f"<{type(value).__name__}>"


def _join(label: str, key: str) -> str:
    return f"{label}.{key}" if label else key


def _key_text(key: object) -> str:
    # Printing an arbitrary key from the file (a huge tensor, say) could cost more than the load.
    return str(key) if isinstance(key, (str, int)) else f"<{type(key).__name__}>"


load_checkpoint = renamed(load_network_file, "wsgraph.load_checkpoint", "wsgraph.load_network_file")
graph_from_checkpoint = renamed(
    graph_from_network_file,
    "wsgraph.core.network_files.graph_from_checkpoint",
    "wsgraph.core.network_files.graph_from_network_file",
)
