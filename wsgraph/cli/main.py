"""Entry point of the ``wsgraph`` command: ``wsgraph <command> [options]``."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import select
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from wsgraph.errors import one_line

# Each module of wsgraph.cli offers `register(subparsers)`, which adds its parser and sets `func`. They
# are imported when the parser is built, inside main's handling of Ctrl-C: they load torch, which takes
# seconds.
COMMAND_MODULES = (
    "adapt",
    "bench",
    "convert",
    "demo",
    "edit",
    "fit_inrs",
    "fit_sines",
    "info",
    "predict",
    "train",
    "zoo",
    "zoo_stats",
)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line pointing to ``--help`` (argparse prints the
    whole usage first, which for ``wsgraph train`` is sixteen lines above the one that matters)."""

    def error(self, message: str) -> NoReturn:
        # No command at all: the usage line, which lists the commands, helps.
        if self.prog == "wsgraph" and message.endswith("required: COMMAND"):
            self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="wsgraph", description="Learning in deep weight spaces: networks as graphs, equivariant layers."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"wsgraph.cli.{name}").register(subparsers)
    return parser


# A value that begins with a minus sign and a digit, such as "-1,1" (a LOW,HIGH range) or "-0.5": argparse
# takes it for an option unless it is a plain negative number, and says only "expected one argument".
_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def attach_negative_values(argv: Sequence[str], value_flags: frozenset[str]) -> list[str]:
    """``["--lr", "-1,1"]`` -> ``["--lr=-1,1"]`` for the flags in ``value_flags`` (those that take a value),
    so that the flag's own check names what is wrong with the value; after ``--`` nothing is joined."""
    joined: list[str] = []
    for position, token in enumerate(argv):
        if token == "--":
            return joined + list(argv[position:])
        previous = joined[-1] if joined else ""
        if _NEGATIVE_VALUE.match(token) and previous in value_flags:
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def _value_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> frozenset[str]:
    """The long flags of ``argv``'s command that take a value."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    command = next((token for token in argv if not token.startswith("-")), None)
    if command not in commands:
        return frozenset()
    return frozenset(
        flag
        for action in commands[command]._actions
        if action.nargs != 0
        for flag in action.option_strings
        if flag.startswith("--")
    )


def _exit_interrupted_while_loading(signum: int, frame: object) -> None:
    # A KeyboardInterrupt raised inside a library's import can be swallowed by that library's own
    # fallbacks and leave it half-imported (numpy without `subtract`, a C extension loaded twice), so
    # that loading goes on and fails later with a foreign traceback. Nothing has been written yet,
    # so the process can end here at once.
    try:
        os.write(2, b"wsgraph: interrupted\n")
    finally:
        os._exit(130)


def main(argv: Sequence[str] | None = None) -> int:
    # Only as the program itself (no argv given): a Python caller's process is not ours to end.
    handler = signal.getsignal(signal.SIGINT)
    exit_on_interrupt = (
        argv is None and handler is signal.default_int_handler and threading.current_thread() is threading.main_thread()
    )
    if exit_on_interrupt:
        signal.signal(signal.SIGINT, _exit_interrupted_while_loading)
    try:
        parser = build_parser()
        argv = list(sys.argv[1:] if argv is None else argv)
        args = parser.parse_args(attach_negative_values(argv, _value_flags(parser, argv)))
    except KeyboardInterrupt:
        print("wsgraph: interrupted", file=sys.stderr)
        return 130
    finally:
        if exit_on_interrupt:
            signal.signal(signal.SIGINT, handler)
    try:
        from wsgraph.runtime import tune_cpu_allocator

        tune_cpu_allocator()
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("wsgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as error:
        if not _stdout_reader_gone():
            print(f"wsgraph {args.command}: error: {one_line(error)}", file=sys.stderr)
            return 1
        # The reader went away (``wsgraph info ... | head``): nothing to report, and no more to
        # write; stdout goes to /dev/null so that Python's own flush at exit fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (CommandError, ValueError, OSError, RuntimeError, OverflowError) as error:
        print(f"wsgraph {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 1
    except MemoryError as error:
        print(f"wsgraph {args.command}: error: out of memory ({one_line(error) or 'no detail'})", file=sys.stderr)
        return 1


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reader has closed it (not some other broken pipe)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):
        # No file descriptor (a replaced sys.stdout), or no poll (Windows).
        return False
    return any(mask & select.POLLERR for _, mask in events)


def _version() -> str:
    from wsgraph import __version__

    return __version__
