"""Old names that still work for one release, each with a :class:`DeprecationWarning` naming its replacement.

Three kinds of old name, one helper each:

- a moved module (``wsgraph.spec`` is now ``wsgraph.core.spec``): the file at the old
  path calls :func:`moved_module`, which puts the new module in its place, so both
  paths give the same module object;
- a renamed function or class: :func:`renamed` wraps the new one under its old name;
  :func:`moved_attributes` gives a package a module ``__getattr__`` for names that now
  live elsewhere, imported only when asked for (which keeps the import graph acyclic);
- a renamed keyword argument or attribute: :func:`renamed_kwargs` maps old keywords to
  new ones, :func:`renamed_property` reads an old attribute name.

Stored training runs hold their settings under names that did not change
(``TrainConfig`` and ``ModelSpec`` already said ``depth``), so they need no upgrading.

The warnings name the caller's line, not this module's.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _warn(message: str, stacklevel: int) -> None:
    warnings.warn(message, DeprecationWarning, stacklevel=stacklevel + 1)


def moved_module(old: str, new: str) -> None:
    """Make the module being imported as ``old`` be the module ``new``, with a warning.

    Called at the top level of the file at the old path, with that file's ``__name__`` and the new path.
    """
    # Frames of the import machinery are skipped by `warnings`: level 3 is the importer's line.
    _warn(f"{old} is deprecated and will be removed in the next release; import {new} instead", stacklevel=3)
    sys.modules[old] = importlib.import_module(new)


def renamed(target: F, old_name: str, new_path: str) -> F:
    """``target`` under its old name ``old_name``: calling it warns, naming ``new_path``."""

    @functools.wraps(target)
    def alias(*args: Any, **kwargs: Any) -> Any:
        _warn(f"{old_name} is deprecated and will be removed in the next release; use {new_path}", stacklevel=2)
        return target(*args, **kwargs)

    alias.__name__ = alias.__qualname__ = old_name.rsplit(".", 1)[-1]
    alias.__doc__ = f"Deprecated name of :func:`{new_path}`."
    return alias  # type: ignore[return-value]


def moved_attributes(package: str, moves: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: ``moves`` maps an old attribute name
    to the module that now holds it (same name there)."""

    def __getattr__(name: str) -> Any:
        if name not in moves:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        _warn(
            f"{package}.{name} is deprecated and will be removed in the next release; use {moves[name]}.{name}",
            stacklevel=2,
        )
        return getattr(importlib.import_module(moves[name]), name)

    return __getattr__


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Accept old keyword names (``old="new"``) for a function or a class's ``__init__``, with a warning.

    Passing both the old and the new name is a ``TypeError``, as passing one twice would be.
    """

    def decorate(target: F) -> F:
        function = target.__init__ if inspect.isclass(target) else target
        where = target.__qualname__

        @functools.wraps(function)
        def accepting_old_names(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{where}() got both {old}= and its new name {new}=; pass {new}= only")
                    _warn(
                        f"{where}({old}=...) is deprecated and will be removed in the next release; use {new}=",
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return function(*args, **kwargs)

        if inspect.isclass(target):
            target.__init__ = accepting_old_names
            return target
        return accepting_old_names  # type: ignore[return-value]

    return decorate


def renamed_property(new_name: str, old_qualname: str) -> property:
    """A read-only property under an old name that returns attribute ``new_name``, with a warning."""

    def getter(self: Any) -> Any:
        _warn(f"{old_qualname} is deprecated and will be removed in the next release; use .{new_name}", stacklevel=2)
        return getattr(self, new_name)

    return property(getter, doc=f"Deprecated name of ``{new_name}``.")
