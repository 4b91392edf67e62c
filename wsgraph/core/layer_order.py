"""The execution order of a state_dict's layers, from their names, the key order and their shapes.

A state_dict says nothing about which layer runs first. Three things hint at it:

- numbers in the names: two names that first differ in a number (``net.2`` and
  ``net.10``, ``net.0.linear`` and ``net.4``, ``fc1`` and ``fc2``) run in the order of
  those numbers, compared as numbers, not text; names that first differ in a word
  (``fc3`` and ``out``) are not ordered by their names;
- the order of the keys: ``torch.save`` keeps a module's registration order, but a
  ``.safetensors`` file stores keys sorted by name (:class:`NameSortedStateDict`), so there
  it means nothing;
- the shapes: each layer must read what the previous one gives.

Square layers chain in any order, so shapes alone cannot always decide: where neither
the key order nor the names' numbers settle it, an order is taken only if it is the one
order that the shapes and the numbers allow; otherwise the reader refuses rather than guess.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Hashable, Sequence

# Enough to find two chaining orders among dozens of layers; a search that needs more is
# among many interchangeable layers, so the order is ambiguous anyway.
_SEARCH_BUDGET = 20_000


class NameSortedStateDict(dict):
    """A state_dict whose key order carries no information (a ``.safetensors`` file sorts its keys by name)."""


class AmbiguousLayerOrder(ValueError):
    """The layers chain in more than one order and nothing else tells which one runs."""


def natural_key(text: str) -> list:
    """Sort key that compares the digit runs of ``text`` as numbers (``net.2`` before ``net.10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def numbers_give_order(prefixes: Sequence[str]) -> bool:
    """Whether every two names first differ in a number, so that the numbers alone order them."""
    keys = sorted(natural_key(p) for p in prefixes)
    return all(_numbered_difference(before, after) is not None for before, after in itertools.pairwise(keys))


def _numbered_difference(first: list, second: list) -> tuple[int, int] | None:
    """The numbers at which two natural keys first differ, or ``None`` if they first differ in a word (or not at all)."""
    difference = next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), None)
    if difference is None or not (isinstance(first[difference], int) and isinstance(second[difference], int)):
        return None
    return first[difference], second[difference]


def layer_order(
    prefixes: Sequence[Hashable],
    chains: Callable[[list], bool],
    follows: Callable[[Hashable, Hashable], bool],
    keys_in_order: bool,
    describe: Callable[[Hashable], str],
) -> list:
    """The order in which the layers named ``prefixes`` (in key order) run.

    Args:
        chains: whether a complete order is a valid network.
        follows: whether the second layer can read the first one's output (a necessary
            condition of ``chains``, used to prune the search).
        keys_in_order: whether the key order is the module's (``torch.save``) or meaningless
            (``.safetensors``).
        describe: a layer's name in messages.

    Returns an order that chains if there is one by the rules above; otherwise the most
    plausible order, for the caller to report where it breaks.

    Raises:
        AmbiguousLayerOrder: the key order means nothing, and the shapes and the names' numbers allow
            several orders (or too many to search).
    """
    prefixes = list(prefixes)
    natural = sorted(prefixes, key=lambda p: natural_key(str(p)))
    if keys_in_order:
        # Keys sorted as text are a sorted dict, not a registration order: there the numbers decide.
        text_sorted = [str(p) for p in prefixes] == sorted(str(p) for p in prefixes)
        numbered = numbers_give_order([str(p) for p in prefixes])
        candidates = [natural, prefixes] if numbered and text_sorted else [prefixes, natural]
        return next((order for order in candidates if chains(order)), candidates[0])
    found, searched_all = _chaining_orders(prefixes, chains, follows)
    if len(found) == 1 and searched_all:
        return found[0]
    if found or not searched_all:
        names = ", ".join(describe(p) for p in natural)
        if len(found) > 1:
            problem = f"the layers {names} chain in more than one order"
        else:
            problem = f"the order of the layers {names} could not be worked out from their shapes (too many candidates)"
        raise AmbiguousLayerOrder(
            f"{problem}, and the file does not say which runs first (a .safetensors file stores keys sorted by name, "
            "and the names' numbers leave it open); name the layers with numbers in the order they run "
            "(e.g. 'layers.0', 'layers.1') or save the state_dict with torch.save"
        )
    return natural


def _chaining_orders(prefixes: list, chains: Callable[[list], bool], follows: Callable) -> tuple[list[list], bool]:
    """Up to two orders of ``prefixes`` that chain and keep the names' numbers in order, by depth-first
    search, and whether the search was complete (it stops at the second order found, or when its budget
    runs out)."""
    keys = [natural_key(str(p)) for p in prefixes]
    # must_precede[b]: the layers whose names' numbers put them before layer b.
    must_precede = [
        {a for a in range(len(prefixes)) if (pair := _numbered_difference(keys[a], keys[b])) and pair[0] < pair[1]}
        for b in range(len(prefixes))
    ]
    found: list[list] = []
    visits = 0
    path: list = []
    remaining = set(range(len(prefixes)))

    def extend() -> bool:  # False: stop searching
        nonlocal visits
        visits += 1
        if visits > _SEARCH_BUDGET:
            return False
        if not remaining:
            order = [prefixes[i] for i in path]
            if chains(order):
                found.append(order)
            return len(found) < 2
        for index in sorted(remaining):
            if must_precede[index] & remaining:
                continue
            if path and not follows(prefixes[path[-1]], prefixes[index]):
                continue
            path.append(index)
            remaining.discard(index)
            keep_going = extend()
            remaining.add(index)
            path.pop()
            if not keep_going:
                return False
        return True

    searched_all = extend() or len(found) == 2
    return found, searched_all
