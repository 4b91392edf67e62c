"""``--model-options`` against a model class's constructor: each name must be one of its
arguments and each value one its annotation admits, so that a mistyped option is an
error naming it before any model is built, not a failure deep inside the constructor
(or, for a truthy string given for a bool, no error at all)."""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any

from wsgraph.layers import DWSEditNet, DWSNet, FlatMLP, NeuralGraphGNN, WeightSpaceGNN
from wsgraph.training.config import MOST_CHANNELS, OWNED_MODEL_ARGUMENTS, render_model_options

# The plain types a KEY=VALUE text parses to (besides None and tuples of these).
_PLAIN = (bool, int, float, str)
_ITEM_NOUNS = {bool: "true/false", int: "integers", float: "numbers", str: "text"}

# Arguments with a default that the training data decides all the same: the channels of the graphs'
# features and a CNN's kernels. Another value would only fail at the first batch. None: of every class.
_FROM_THE_DATA: dict[str, tuple[type, ...] | None] = {
    "in_channels": None,
    "edge_channels": (NeuralGraphGNN,),
    "kernel_sizes": (FlatMLP,),
}


# Arguments the --model name decides, per class: DWSNet's backend is dwsnet (scatter) or dwsnet-dense.
_FROM_THE_MODEL_NAME: dict[str, tuple[tuple[type, ...], str]] = {
    "backend": ((DWSNet, DWSEditNet), "--model dwsnet (scatter) or dwsnet-dense (dense)"),
    "conv": ((WeightSpaceGNN,), "--model gine, pna, gatv2 or transformer"),
}


def _from_the_data(name: str, classes: tuple[type, ...]) -> bool:
    if name not in _FROM_THE_DATA:
        return False
    owners = _FROM_THE_DATA[name]
    return owners is None or any(issubclass(cls, owners) for cls in classes)


def check_options(classes: tuple[type, ...], options: tuple[tuple[str, Any], ...]) -> None:
    """Raise a ``ValueError`` naming the first of ``options`` that ``classes[0]`` cannot take.

    ``classes[1:]`` are classes that ``classes[0]`` hands its ``**kwargs`` to (their
    arguments count as its own, after its own).
    """
    owner = classes[0].__name__
    arguments = _arguments(classes)
    for key, value in options:
        text = render_model_options(((key, value),))
        if key not in arguments:
            settable = [
                name
                for name, (default, hint) in arguments.items()
                # Those a flag sets are refused as options, with the flag named.
                if _settable(default, hint) and name not in OWNED_MODEL_ARGUMENTS and not _from_the_data(name, classes)
            ]
            raise ValueError(
                f"--model-options {key}: not an argument of {owner} (it takes {', '.join(settable) or 'none'})"
            )
        owners, chosen_by = _FROM_THE_MODEL_NAME.get(key, ((), ""))
        if any(issubclass(cls, owners) for cls in classes):
            raise ValueError(f"--model-options {key}: {owner} takes it from {chosen_by}")
        default, hint = arguments[key]
        if not _settable(default, hint) or _from_the_data(key, classes):
            raise ValueError(f"--model-options {key}: {owner} takes it from the data")
        if hint is not None and not _admits(hint, value):
            raise ValueError(f"--model-options {text}: {owner} takes {_describe(hint, value)}, got {value!r}")
        # Every integer argument of a model is a size or a count: past these, building the model fills the
        # memory (head_hidden=10000000) or fails in the allocator, naming no option.
        items = value if isinstance(value, tuple) else (value,)
        if _takes_integers(hint) and any(type(item) is int and not 0 <= item <= MOST_CHANNELS for item in items):
            raise ValueError(f"--model-options {text}: sizes and counts must be in 0..{MOST_CHANNELS:,}")


def _arguments(classes: tuple[type, ...]) -> dict[str, tuple[Any, Any]]:
    """``{name: (default, annotation)}`` of the keyword arguments (``inspect.Parameter.empty``
    for no default, ``None`` for no usable annotation)."""
    arguments: dict[str, tuple[Any, Any]] = {}
    for cls in classes:
        try:
            hints = typing.get_type_hints(cls.__init__)
        except (NameError, TypeError):  # an annotation that does not resolve: leave the values to the class
            hints = {}
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            arguments.setdefault(name, (parameter.default, hints.get(name)))
    return arguments


def _settable(default: Any, hint: Any) -> bool:
    """Whether a command-line value can set the argument: it has a default (the others come
    from the data) and admits a plain value other than None (not a tensor, say)."""
    if default is inspect.Parameter.empty:
        return False
    return hint is None or any(arm is not type(None) and _plain_hint(arm) for arm in _arms(hint))


def _plain_hint(hint: Any) -> bool:
    if hint in _PLAIN or hint is Any or typing.get_origin(hint) is typing.Literal:
        return True
    if typing.get_origin(hint) in (collections.abc.Sequence, tuple, list):
        return all(item is Ellipsis or _plain_hint(item) for item in typing.get_args(hint))
    return False


def _takes_integers(hint: Any) -> bool:
    """Whether ``hint`` is ``int`` (perhaps optional) or a sequence of them: a size or a count."""
    for arm in _arms(hint):
        if arm is int:
            return True
        if typing.get_origin(arm) in (collections.abc.Sequence, tuple, list) and int in typing.get_args(arm):
            return True
    return False


def _arms(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _admits(hint: Any, value: Any) -> bool:
    if hint is Any:
        return True
    if len(_arms(hint)) > 1:
        return any(_admits(arm, value) for arm in _arms(hint))
    if hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return any(type(value) is type(choice) and value == choice for choice in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # Python takes an int where a float is asked for
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (collections.abc.Sequence, list) or (origin is tuple and args[-1:] == (Ellipsis,)):
        return isinstance(value, tuple) and all(_admits(args[0] if args else Any, item) for item in value)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(map(_admits, args, value))
    return False  # a tensor or another object, which no command-line text gives


def _describe(hint: Any, value: Any) -> str:
    """What ``hint`` admits, in the words of the option's syntax."""
    arms = _arms(hint)
    if len(arms) > 1:
        return " or ".join(dict.fromkeys(_describe(arm, value) for arm in arms))
    if hint is type(None):
        return "none"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(render_model_options((("", choice),))[1:] for choice in args)
    if origin in (collections.abc.Sequence, tuple, list):
        item = args[0] if args else None
        noun = _ITEM_NOUNS.get(item)
        example = value if isinstance(value, str) and value else "x"
        return f"a tuple{f' of {noun}' if noun else ''}, items joined by + ({example}+ for one)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(
        hint, f"a {getattr(hint, '__name__', hint)}"
    )
