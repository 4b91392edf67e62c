"""How failures read: every error a user sees is one line."""

from __future__ import annotations

import re

# How torch.load(weights_only=True) begins every refusal, before paragraphs of advice.
SAFE_LOAD_PREAMBLE = "Weights only load failed"


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its class name when the message is empty.

    Args:
        error: any exception.
    """
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` as error messages quote a value read from a file: cut to ``limit``
    characters, since a damaged or crafted file's strings and lists can be of any length.

    Args:
        value: any object.
        limit: the most characters returned.
    """
    return shortened(repr(value), limit)


def shortened(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, ending in ``...`` where it was cut."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shown_path(path: object) -> str:
    """``path`` as error messages print it: as is, or quoted like a Python string literal
    when it holds a character that does not print (a newline in a file name would cut a
    one-line message in two, an escape sequence could rewrite the terminal).

    Args:
        path: a path or any object with a ``str``.
    """
    text = str(path)
    return text if text.isprintable() else repr(text)


def load_error_reason(error: BaseException) -> str:
    """What a failed :func:`torch.load` (or another file reader) objected to, in one printable line.

    torch wraps the safe unpickler's complaint in paragraphs of advice; this keeps the
    first sentence of the complaint (the line after ``WeightsUnpickler error:``), or of
    the whole message when there is no such line. Characters that do not print are
    escaped, since the message may quote names read from the file.

    Args:
        error: the exception the reader raised.
    """
    text = str(error).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text[text.index(marker) + len(marker) :].splitlines() if line.strip()]
        text = lines[0] if lines else ""
    elif text.startswith(SAFE_LOAD_PREAMBLE):
        # A global from a module torch blocks outright: the complaint is the paragraph
        # between torch's advice and its pointer to the documentation.
        paragraphs = [part.strip() for part in re.split(r"\n\s*\n", text)[1:] if part.strip()]
        complaints = [part for part in paragraphs if not part.startswith("Check the documentation")]
        text = complaints[0].rstrip(".") if complaints else text
    # The first sentence says what failed; torch's next ones give advice.
    text = text.splitlines()[0].split(". ")[0] if text else ""
    if not text:
        return type(error).__name__
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
