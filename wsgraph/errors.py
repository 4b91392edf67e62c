"""How failures read: every error a user sees is one line."""

from __future__ import annotations


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its class name when the message is empty.

    Args:
        error: any exception.
    """
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
