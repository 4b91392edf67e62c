"""The execution order of a state_dict's layers, from their names, the key order and their shapes.

A state_dict says nothing about which layer runs first. Three things hint at it:

- numbers in the names: when any two names first differ in a number (``net.2`` and
  ``net.10``, ``net.0.linear`` and ``net.4``), the numbers give the order, compared as
  numbers, not text;
- the order of the keys: ``torch.save`` keeps a module's registration order, but a
  ``.safetensors`` file stores keys sorted by name (:class:`NameSortedStateDict`), so there
  it means nothing;
- the shapes: each layer must read what the previous one gives.

Square layers chain in any order, so shapes alone cannot always decide: where the names
carry no numbers and the keys no order, an order is taken only if it is the one order in
which the shapes chain; otherwise the reader refuses rather than guess.
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
    for before, after in itertools.pairwise(keys):
        difference = next((i for i, (a, b) in enumerate(zip(before, after)) if a != b), None)
        if difference is None or not (isinstance(before[difference], int) and isinstance(after[difference], int)):
            return False
    return True


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
        AmbiguousLayerOrder: nothing but the shapes could decide, and they chain in several orders.
    """
    prefixes = list(prefixes)
    natural = sorted(prefixes, key=lambda p: natural_key(str(p)))
    if numbers_give_order([str(p) for p in prefixes]):
        candidates = [natural, prefixes] if keys_in_order else [natural]
    elif keys_in_order:
        candidates = [prefixes, natural]
    else:
        found, searched_all = _chaining_orders(prefixes, chains, follows)
        if len(found) == 1 and searched_all:
            return found[0]
        if found or not searched_all:
            names = ", ".join(describe(p) for p in natural)
            how = "chain in more than one order" if len(found) > 1 else "chain in too many orders to search"
            raise AmbiguousLayerOrder(
                f"the layers {names} {how}, and neither their names (no numbers to order them by) nor the file "
                "(a .safetensors file stores keys sorted by name) says which runs first; number the layers' names "
                "(e.g. 'layers.0', 'layers.1') or save the state_dict with torch.save"
            )
        candidates = [natural]
    return next((order for order in candidates if chains(order)), candidates[0])


def _chaining_orders(prefixes: list, chains: Callable[[list], bool], follows: Callable) -> tuple[list[list], bool]:
    """Up to two orders of ``prefixes`` that chain, by depth-first search, and whether the search was complete
    (it stops at the second order found, or when its budget runs out)."""
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
