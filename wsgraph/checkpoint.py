"""Read network checkpoints: PyTorch ``.pt``/``.pth``/``.ckpt`` files and ``.safetensors``.

Loading is safe by default: :func:`torch.load` runs with ``weights_only=True``, which
rebuilds tensors and plain containers but runs no code from the file. A file that
pickles a whole ``nn.Module`` cannot be read that way; for those only, and only when
every object the file names is importable and at least one is an ``nn.Module``
subclass, the file is read again with ``weights_only=False``. **That executes pickle
code from the file: load whole saved modules only from files you trust** (or save
``model.state_dict()`` instead, which always loads safely).
"""

from __future__ import annotations

import importlib
import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from wsgraph.convert import mlp_to_graph
from wsgraph.extract import NotAnMLPError
from wsgraph.graph import WeightSpaceGraph

TORCH_SUFFIXES = frozenset({".pt", ".pth", ".ckpt"})
SAFETENSORS_SUFFIX = ".safetensors"
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES | {SAFETENSORS_SUFFIX}
# Keys under which training scripts commonly nest the weights, tried in this order.
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read; the one-line message names the file."""


def load_checkpoint(path: str | os.PathLike) -> nn.Module | dict[str, Tensor]:
    """The saved module, or the state_dict, in a checkpoint file.

    Common containers are unwrapped: ``{"state_dict": ...}``, ``{"model_state_dict":
    ...}``, ``{"model": ...}``, ``{"net": ...}`` and ``{"weights": ...}``, nested or
    not; entries that are not tensors (epoch counters, optimiser states, configs) are
    dropped. Tensors are loaded to the CPU.

    Args:
        path: a ``.pt``, ``.pth`` or ``.ckpt`` file written by :func:`torch.save`, or a
            ``.safetensors`` file (needs the ``safetensors`` package).

    Returns:
        An ``nn.Module`` for a file that saved a whole module (see the module notes on
        trust), otherwise a ``dict`` from parameter names to tensors.

    Raises:
        CheckpointError: the file is missing, a directory, of an unknown kind, corrupt
            or truncated, or holds no tensors.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _load_safetensors(path)
    if suffix not in TORCH_SUFFIXES:
        known = ", ".join(sorted(CHECKPOINT_SUFFIXES))
        raise CheckpointError(
            f"{path}: unknown checkpoint extension {path.suffix or '(none)'!r}; expected one of {known}"
        )
    return _unwrap(_load_torch(path), path)


def graph_from_checkpoint(path: str | os.PathLike, **kwargs) -> WeightSpaceGraph | Batch:
    """:func:`load_checkpoint` followed by :func:`wsgraph.mlp_to_graph` (``kwargs`` go to the latter).

    Raises:
        CheckpointError: the file cannot be read.
        NotAnMLPError: the file holds no MLP; the message names the file and the layer.
    """
    network = load_checkpoint(path)
    try:
        return mlp_to_graph(network, **kwargs)
    except NotAnMLPError as error:
        raise NotAnMLPError(f"{path}: {error}") from error


def _load_torch(path: Path) -> object:
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols it was not written for; the load itself says what fails.
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return _load_pickled_module(path)
    except Exception as error:  # torch raises RuntimeError, EOFError, ... for damaged files
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (corrupt or truncated?): {_reason(error)}"
        ) from None


def _load_pickled_module(path: Path) -> object:
    """Read a file that ``weights_only`` refused, if it saves an ``nn.Module`` (runs pickle code)."""
    list_globals = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if list_globals is None:  # added in torch 2.5; without it the file cannot be vetted before unpickling
        raise CheckpointError(
            f"{path}: holds more than tensors; reading saved modules needs torch >= 2.5 "
            f"(this is {torch.__version__}); save model.state_dict() instead"
        )
    try:
        names = list_globals(path)
    except Exception as error:
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint written by torch.save (corrupt, truncated or a plain pickle?): {_reason(error)}"
        ) from None
    resolved = {name: _resolve(name) for name in names}
    missing = [name for name, found in resolved.items() if found is None]
    if missing:
        raise CheckpointError(
            f"{path}: saves objects whose classes cannot be imported here ({', '.join(missing[:3])}); "
            "save model.state_dict() instead"
        )
    if not any(isinstance(found, type) and issubclass(found, nn.Module) for found in resolved.values()):
        raise CheckpointError(
            f"{path}: holds objects that safe loading refuses ({', '.join(names[:3])}) and no nn.Module; "
            "not unpickled, since that would run code from the file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(f"{path}: cannot unpickle the saved module: {_reason(error)}") from None


def _resolve(qualified_name: str) -> object | None:
    """The object a pickle global such as ``torch.nn.modules.linear.Linear`` names, imported without unpickling."""
    parts = qualified_name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            found = getattr(found, attribute, None)
            if found is None:
                return None
        return found
    return None


def _load_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            f"{path}: reading .safetensors files needs the 'safetensors' package (pip install safetensors)"
        ) from None
    try:
        tensors = load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError for damaged files
        raise CheckpointError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {_reason(error)}"
        ) from None
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors")
    return tensors


def _unwrap(content: object, path: Path) -> nn.Module | dict[str, Tensor]:
    if isinstance(content, nn.Module):
        return content
    if not isinstance(content, Mapping):
        raise CheckpointError(f"{path}: holds a {type(content).__name__}, expected a state_dict or an nn.Module")
    for key in CONTAINER_KEYS:
        inner = content.get(key)
        if isinstance(inner, (Mapping, nn.Module)):
            return _unwrap(inner, path)
    tensors = {
        key: value.detach() if isinstance(value, nn.Parameter) else value
        for key, value in content.items()
        if isinstance(key, str) and isinstance(value, Tensor)
    }
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(content)[:5])) or 'none'})")
    return tensors


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    # torch's messages run on with advice after the first sentence; the first one says what failed.
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__
