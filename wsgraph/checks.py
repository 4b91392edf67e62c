"""Checks of values read from files (JSON documents, checkpoints): a damaged or crafted file
can hold anything where a writer put a number, so readers check before they index or compute."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Sequence
from typing import Any

from wsgraph.errors import short_repr

# The most epochs a run or a zoo member trains: far past any use, so that a mistyped 1e11 is
# an error naming the flag, not a run that never ends.
MOST_EPOCHS = 1_000_000


def first_repeat(values: Sequence[Any]) -> Any | None:
    """The first value that ``values`` holds a second time, or ``None``."""
    return next((value for position, value in enumerate(values) if value in values[:position]), None)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an ``int`` or a ``float`` (not a ``bool``, not a subclass)."""
    return type(value) in (int, float)


def is_count(value: Any, minimum: int = 0) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``."""
    return type(value) is int and value >= minimum


def is_size(value: Any, minimum: int = 0) -> bool:
    """Whether ``value`` is an integer (a Python or NumPy one, not a ``bool``) of at least ``minimum``:
    a size or count passed by a Python caller."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def require_positive_counts(owner: str, **values: Any) -> None:
    """Raise a ``ValueError`` naming the first of ``values`` that is not a positive integer (a
    ``bool`` is not one), as ``owner`` (e.g. ``"DWSLayer"``) takes it: a width of 0 otherwise fails
    later, deep inside torch, with a division by zero or a negative dimension."""
    for name, value in values.items():
        if not is_size(value, minimum=1):
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def dataclass_gaps(cls: type, document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The keys of ``document`` that name no field of the dataclass ``cls`` (in the document's
    order), and the fields without a default that ``document`` lacks (in the class's order)."""
    fields = dataclasses.fields(cls)
    names = {item.name for item in fields}
    unknown = [key for key in document if key not in names]
    required = (
        item.name
        for item in fields
        if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING
    )
    return unknown, [name for name in required if name not in document]


def entry_problem(document: dict[str, Any], entries: dict[str, tuple[type, ...]]) -> str | None:
    """The first of ``entries`` (key: the exact types its value may have) that ``document``
    lacks or holds with another type, said as an error fragment; ``None`` if all fit."""
    for key, types in entries.items():
        if key not in document:
            return f"no '{key}'"
        if type(document[key]) not in types:
            return f"'{key}' is {short_repr(document[key])}"
    return None
