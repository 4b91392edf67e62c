"""Argument types shared by the commands."""

from __future__ import annotations

import argparse

from wsgraph.runtime import MAX_SEED


def seed(text: str) -> int:
    """A ``--seed``: an integer in ``0..MAX_SEED`` (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer in 0..{MAX_SEED}, got {text}")
    return value


def int_at_least(minimum: int, kind: str):
    """An argparse ``type`` for integers of at least ``minimum`` (``kind`` names them in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}")
        return value

    return parse
