"""Each checkpoint's hidden activation, written next to state_dicts that cannot say it themselves.

A state_dict stores weights, not the function between them, so a folder of state_dicts
converts to networks whose activation is ``"unknown"`` unless ``wsgraph convert`` is told.
``--activation NAME`` tells it for every file; a folder whose files differ (a model zoo
that draws ``relu`` or ``tanh`` per member) says it per file in ``SRC/activations.json``
(:data:`ACTIVATIONS_FILE`)::

    {"shard-00000/m000000-e03.pt": "relu", "shard-00000/m000001-e03.pt": "tanh"}

Keys are paths relative to the file's folder with ``/`` separators; values are recorded
activation names (``relu``, ``sine(30.0)``, ...). ``wsgraph zoo`` writes the file. A
checkpoint's entry is looked up in the nearest ``activations.json`` in its folder or
above (:class:`RecordedActivations`), so converting one shard folder of a zoo, or giving
``wsgraph predict`` one member's file, finds it too. A saved module's own trace must
agree with its entry, and ``--activation`` must agree with every entry of the files it
is given for, so a mixed folder is never recorded or run as one activation.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    document = read_json_file(path, object_pairs_hook=_refuse_repeated_keys)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected an object of checkpoint path -> activation name")
    activations = {}
    for name, activation in document.items():
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or any(part in ("", ".", "..") for part in parts):
            # It could name no file below the folder: a typo or a path written for another place.
            raise ValueError(f"{path}: entry {name!r} is not a path below {src} ('/'-separated, no '.' or '..')")
        if not isinstance(activation, str):
            raise ValueError(f"{path}: entry {name!r} is {activation!r}, not an activation name")
        try:
            activations[name] = canonical_activation(activation)
        except ValueError as error:
            raise ValueError(f"{path}: entry {name!r}: {error}") from None
    return activations


def _refuse_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [key for key, _ in pairs]
    repeated = next((key for position, key in enumerate(keys) if key in keys[:position]), None)
    if repeated is not None:
        raise ValueError(f"entry {repeated!r} is given twice")
    return dict(pairs)


class RecordedActivations:
    """Each checkpoint file's entry in the nearest ``activations.json`` in its folder or above.

    The nearest file decides: one that does not list a checkpoint leaves it without an entry,
    whatever files further up say. Each folder is looked at, and each file read, once.
    """

    def __init__(self) -> None:
        self._nearest: dict[Path, tuple[Path, dict[str, str]] | None] = {}

    def lookup(self, checkpoint: Path) -> tuple[str, Path] | None:
        """The activation recorded for ``checkpoint`` and the ``activations.json`` that records it, or ``None``.

        Raises:
            ValueError: the nearest ``activations.json`` is malformed (see :func:`read_activation_file`).
        """
        given = Path(checkpoint).absolute()
        # The path as given, then (through symlinked folders or a symlinked file) where the file really is.
        for place in dict.fromkeys((given, given.resolve())):
            found = self._file_for(place.parent)
            if found is None:
                continue
            path, activations = found
            entry = activations.get(place.relative_to(path.parent).as_posix())
            if entry is not None:
                return entry, path
        return None

    def files(self) -> list[Path]:
        """The ``activations.json`` files read so far."""
        return sorted({found[0] for found in self._nearest.values() if found is not None})

    def _file_for(self, folder: Path) -> tuple[Path, dict[str, str]] | None:
        walked = []
        found: tuple[Path, dict[str, str]] | None = None
        for candidate in (folder, *folder.parents):
            if candidate in self._nearest:
                found = self._nearest[candidate]
                break
            walked.append(candidate)
            if (candidate / ACTIVATIONS_FILE).is_file():
                found = (candidate / ACTIVATIONS_FILE, read_activation_file(candidate))
                break
        for candidate in walked:
            self._nearest[candidate] = found
        return found


def write_activation_file(src: Path, activations: Mapping[str, str]) -> None:
    """Write ``src/activations.json`` (atomically), keys in sorted order."""
    write_json(src / ACTIVATIONS_FILE, dict(sorted(activations.items())))


def check_activation_flag(given: str, entries: Mapping[Path, tuple[str, Path] | None]) -> None:
    """Raise a ``ValueError`` if an ``activations.json`` records another activation than ``--activation given``
    (canonical) for any of the checkpoints of ``entries`` (each one's :meth:`RecordedActivations.lookup`)."""
    other = [(checkpoint, *entry) for checkpoint, entry in entries.items() if entry is not None and entry[0] != given]
    if not other:
        return
    found = sorted({activation for _, activation, _ in other})
    first, _, path = other[0]
    raise ValueError(
        f"--activation {given}: {path} records {', '.join(found)} for {len(other)} of the checkpoints (first: "
        f"{first}); leave --activation out to use each checkpoint's own"
    )
