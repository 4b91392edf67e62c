"""How a converted CNN's convolutions slide: strides, paddings and dilations given to ``wsgraph convert``.

A state_dict stores kernels, not how they are applied, so a CNN root built from
state_dicts cannot be rebuilt as a module unless it is told. ``wsgraph convert`` takes
``--conv-stride``, ``--conv-padding`` and ``--conv-dilation``, or reads them from
``SRC/geometry.json`` (:data:`GEOMETRY_FILE`, e.g. ``{"stride": 2, "padding": 1}``);
flags win over the file, key by key. A value is one integer (every convolution, both
axes), ``"HxW"`` (every convolution), or a list with one entry per convolution, each an
integer, ``"HxW"`` or ``[H, W]``. A dilation left out where a stride or padding is given
is 1, torch's default. Saved modules carry their own geometry, which a given value must
match.

When every network of a root ends up with a known geometry and they agree (networks with
fewer convolutions agreeing with the first ones of the others), ``meta.json`` records it
as ``conv_geometry`` (``{"stride": [[h, w], ...], "padding": ..., "dilation": ...}``,
one pair per convolution), the dataset puts it on every graph and
:func:`wsgraph.graph_to_cnn` rebuilds the networks without being told.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsgraph.core.extract_cnn import ConvChain, ConvGeometry
from wsgraph.io import read_json_file

GEOMETRY_FILE = "geometry.json"
GEOMETRY_KEYS = ("stride", "padding", "dilation")
# The smallest value each accepts: a convolution may pad by 0, it cannot stride by 0.
_LOWEST = {"stride": 1, "padding": 0, "dilation": 1}

Pair = tuple[int, int]
# One pair for every convolution, or a list with one pair per convolution.
GeometryValue = Pair | list[Pair]


def parse_geometry_text(text: str, name: str) -> GeometryValue:
    """A ``--conv-NAME`` flag: ``2``, ``2x1`` (every convolution) or ``2,2,1`` / ``2x1,1x1`` (per convolution)."""
    parts = [part.strip() for part in text.split(",")]
    value: Any = parts[0] if len(parts) == 1 else parts
    return parse_geometry_value(value, name, f"--conv-{name}")


def parse_geometry_value(value: Any, name: str, source: str) -> GeometryValue:
    """An integer, ``"HxW"``, or a list of those (or ``[H, W]``) per convolution, checked."""
    if isinstance(value, list):
        if not value:
            raise ValueError(f"{source}: {name} lists no convolution")
        return [_pair(entry, name, source) for entry in value]
    return _pair(value, name, source)


def read_geometry_file(src: Path) -> dict[str, GeometryValue]:
    """The geometry in ``src/geometry.json``, or ``{}`` if there is none."""
    path = src / GEOMETRY_FILE
    if not path.is_file():
        return {}
    document = read_json_file(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected an object with {', '.join(GEOMETRY_KEYS)}")
    unknown = sorted(set(document) - set(GEOMETRY_KEYS))
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; expected {', '.join(GEOMETRY_KEYS)}")
    return {key: parse_geometry_value(value, key, str(path)) for key, value in document.items()}


def network_geometry(given: Mapping[str, GeometryValue], chain: ConvChain, name: str) -> list[ConvGeometry]:
    """The geometry of each convolution of ``chain`` (read from checkpoint ``name``): given values, else its own.

    Raises:
        ValueError: a per-convolution list of another length, or a value that differs from
            what a saved module says, naming the checkpoint.
    """
    layers = []
    for layer, own in enumerate(chain.geometry[: chain.num_conv]):
        values = {}
        for key in GEOMETRY_KEYS:
            recorded = getattr(own, key)
            if key not in given:
                # Dilated convolutions are rare: whoever gives a geometry and no dilation means torch's default.
                values[key] = (1, 1) if key == "dilation" and given and -1 in recorded else recorded
                continue
            value = given[key]
            if isinstance(value, list):
                if len(value) != chain.num_conv:
                    raise ValueError(
                        f"{name}: {len(value)} values of {key} given for its {chain.num_conv} convolutions"
                    )
                value = value[layer]
            if -1 not in recorded and recorded != value:
                raise ValueError(
                    f"{name}: convolution {layer + 1} ({chain.names[layer]}) has {key} {recorded}, "
                    f"the given {key} says {value}"
                )
            values[key] = value
        layers.append(ConvGeometry(**values))
    return layers


def common_geometry(geometries: Sequence[Sequence[ConvGeometry]]) -> dict[str, list[list[int]]] | None:
    """``meta.json``'s ``conv_geometry`` for networks with these geometries, or ``None`` unless all are
    known and agree (a shorter list agreeing with the start of the longest)."""
    if not geometries:
        return None
    longest = max(geometries, key=len)
    if not all(layer.known for layer in longest):
        return None
    if any(list(geometry) != list(longest[: len(geometry)]) for geometry in geometries):
        return None
    return {key: [list(getattr(layer, key)) for layer in longest] for key in GEOMETRY_KEYS}


def _pair(value: Any, name: str, source: str) -> Pair:
    if isinstance(value, str):
        pieces = value.lower().split("x")
        if len(pieces) in (1, 2) and all(piece.strip().lstrip("-").isdigit() for piece in pieces):
            value = [int(piece) for piece in pieces]
            value = value * 2 if len(value) == 1 else value
    elif isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    valid = (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )
    if not valid:
        raise ValueError(f"{source}: cannot read a {name} from {value!r}; expected e.g. 2, '2x1' or [2, 1]")
    lowest = _LOWEST[name]
    if min(value) < lowest:
        raise ValueError(f"{source}: {name} {tuple(value)} must be at least {lowest}")
    return (int(value[0]), int(value[1]))
