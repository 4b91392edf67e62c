"""A second holder of a write lock, in a thread of the test's process."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsgraph.locks import write_lock


class HeldLock:
    """The other holder's side: ``events`` gets "released" when it lets go, which it does
    ``release_soon()``'s seconds after the test asks, never by itself before: a test that
    first needs a refusal gets one however slowly the machine runs."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.may_release = threading.Event()

    def release_soon(self, seconds: float = 0.2) -> None:
        threading.Timer(seconds, self.may_release.set).start()


@contextmanager
def lock_held_by_another(target: Path, holder: str) -> Iterator[HeldLock]:
    """Hold ``target``'s lock as ``holder`` from before the block until the block asks for
    its release (or ends).

    ``flock`` locks belong to open files, so a thread's lock excludes the test's own
    later attempts as another process's would.
    """
    held = HeldLock()
    holding = threading.Event()

    def hold():
        with write_lock(target, holder):
            holding.set()
            held.may_release.wait(timeout=60)
            held.events.append("released")

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        yield held
    finally:
        held.may_release.set()
        thread.join(timeout=60)
