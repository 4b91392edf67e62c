"""Argument types shared by the commands."""

from __future__ import annotations

import argparse

from wsgraph.core.activations import canonical_activation
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


def path_argument(text: str) -> str:
    """A file or folder argument: any text but the empty string, which the OS functions would take
    for the current folder (``--out ''`` wrote into it)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def activation_name(text: str) -> str:
    """An ``--activation``: a name a graph records (``relu``, ``sine(30.0)``, ...), in its recorded
    form; argparse names the flag in the error."""
    try:
        return canonical_activation(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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


def add_trained_model_arguments(
    parser: argparse.ArgumentParser, *, model_help: str, verb: str, activation_note: str, trust_pickles_help: str
) -> None:
    """The arguments of a command that applies a trained model to networks (predict, edit): the
    model, the inputs, and how the inputs are read and batched.

    Args:
        parser: the command's parser.
        model_help: what MODEL is.
        verb: what the command does to a network, for --skip-bad's help ("predict for").
        activation_note: appended to --activation's help.
        trust_pickles_help: --trust-pickles's help.
    """
    parser.add_argument("model", metavar="MODEL", type=path_argument, help=model_help)
    parser.add_argument(
        "inputs", metavar="INPUT", nargs="+", type=path_argument, help="checkpoint files, folders of them, or datasets"
    )
    parser.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="which split of a dataset (default: test)"
    )
    parser.add_argument(
        "--activation",
        metavar="NAME",
        type=activation_name,
        help="the hidden activation of networks whose files do not record it (state_dicts), e.g. 'sine(30.0)'"
        + activation_note,
    )
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1, "positive"),
        metavar="N",
        help="networks per forward pass (default: the run's batch size, which reproduces its evaluation)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument(
        "--skip-bad", action="store_true", help=f"{verb} the files that can be read and list the others"
    )
    parser.add_argument("--trust-pickles", action="store_true", help=trust_pickles_help)
