"""A second holder of a write lock, in a thread of the test's process."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsgraph.locks import write_lock


@contextmanager
def lock_held_by_another(target: Path, holder: str, release_after: float) -> Iterator[list[str]]:
    """Hold ``target``'s lock as ``holder`` from before the block until ``release_after``
    seconds into it; yields a list of events, to which the holder appends "released".

    ``flock`` locks belong to open files, so a thread's lock excludes the test's own
    later attempts as another process's would.
    """
    events: list[str] = []
    holding, may_release = threading.Event(), threading.Event()

    def hold():
        with write_lock(target, holder):
            holding.set()
            may_release.wait(timeout=30)
            events.append("released")

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        threading.Timer(release_after, may_release.set).start()
        yield events
    finally:
        may_release.set()
        thread.join(timeout=30)
