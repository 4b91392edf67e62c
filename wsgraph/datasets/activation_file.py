"""Each checkpoint's hidden activation, written next to state_dicts that cannot say it themselves.

A state_dict stores weights, not the function between them, so a folder of state_dicts
converts to networks whose activation is ``"unknown"`` unless ``wsgraph convert`` is told.
``--activation NAME`` tells it for every file; a folder whose files differ (a model zoo
that draws ``relu`` or ``tanh`` per member) says it per file in ``SRC/activations.json``
(:data:`ACTIVATIONS_FILE`)::

    {"shard-00000/m000000-e03.pt": "relu", "shard-00000/m000001-e03.pt": "tanh"}

Keys are paths relative to ``SRC`` with ``/`` separators; values are recorded activation
names (``relu``, ``sine(30.0)``, ...). ``wsgraph zoo`` writes the file. A saved module's
own trace must agree with its entry, and ``--activation`` must agree with every entry of
the files it converts, so a mixed folder is never recorded as one activation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from wsgraph.core.activations import canonical_activation
from wsgraph.io import read_json_file, write_json

ACTIVATIONS_FILE = "activations.json"


def read_activation_file(src: Path) -> dict[str, str]:
    """The per-file activations of ``src/activations.json`` (canonical names), or ``{}`` if there is none.

    Raises:
        ValueError: the file is not a JSON object of path strings to known activation names,
            naming the file and the first bad entry.
    """
    path = src / ACTIVATIONS_FILE
    if not path.is_file():
        return {}
    document = read_json_file(path)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected an object of checkpoint path -> activation name")
    activations = {}
    for name, activation in document.items():
        if not isinstance(activation, str):
            raise ValueError(f"{path}: entry {name!r} is {activation!r}, not an activation name")
        try:
            activations[name] = canonical_activation(activation)
        except ValueError as error:
            raise ValueError(f"{path}: entry {name!r}: {error}") from None
    return activations


def write_activation_file(src: Path, activations: Mapping[str, str]) -> None:
    """Write ``src/activations.json`` (atomically), keys in sorted order."""
    write_json(src / ACTIVATIONS_FILE, dict(sorted(activations.items())))


def check_activation_flag(given: str, recorded: Mapping[str, str], names: Iterable[str], src: Path) -> None:
    """Raise a ``ValueError`` if ``src/activations.json`` records another activation than ``--activation given``
    (canonical) for any of the checkpoints ``names`` to convert."""
    other = [(name, recorded[name]) for name in names if recorded.get(name, given) != given]
    if not other:
        return
    found = sorted({activation for _, activation in other})
    raise ValueError(
        f"--activation {given}: {src / ACTIVATIONS_FILE} records {', '.join(found)} for {len(other)} of the "
        f"checkpoints (first: {other[0][0]}); leave --activation out to record each checkpoint's own"
    )
