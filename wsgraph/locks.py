"""One writer at a time: an exclusive lock on writing a file or folder.

A command that builds ``OUT`` elsewhere and renames it into place holds
:func:`write_lock` on ``OUT`` from its check that ``OUT`` may be written to the rename,
so that a second run of it (or of another command) with the same ``OUT`` refuses in one
line instead of replacing the first one's result.

The lock is ``fcntl.flock`` on a hidden file next to the target, ``.<name>.lock``, which
holds the holder's process id and command. The kernel releases it when the holder
exits, even when killed, so a crash leaves no stale lock; the file itself is removed
when the lock is released. Where ``fcntl`` does not exist (Windows), the lock is the
file's exclusive creation, and a holder killed before it could remove the file leaves
it behind: the refusal then names the file to delete.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsgraph.errors import shown_path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

# Filesystems where flock is not available (some network mounts) answer with one of these.
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_WAIT_POLL_SECONDS = 1.0
# The longest file name most filesystems take.
_MAX_NAME_BYTES = 255


class LockedError(BlockingIOError):
    """Another process holds the lock on the target."""


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in the same folder.

    The target is resolved first, so that every spelling of one folder (``.``, a relative or
    absolute path, a symlink) shares one lock. A name too long to take the suffix is cut and
    followed by a digest of the whole name.
    """
    target = Path(target).resolve()
    name = f".{target.name}.lock"
    if len(os.fsencode(name)) > _MAX_NAME_BYTES:
        digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:16]
        name = f".{os.fsdecode(os.fsencode(target.name)[:200])}-{digest}.lock"
    return target.parent / name


@contextmanager
def write_lock(target: str | os.PathLike, holder: str, wait: bool = False) -> Iterator[Path]:
    """Hold the lock on writing ``target`` while the ``with`` block runs.

    Args:
        target: the file or folder to be written; its parent folder is created if needed.
        holder: what holds the lock, as a refusal names it (e.g. ``"wsgraph convert"``).
        wait: when another process holds the lock, wait until it releases it instead of
            refusing (a chain of commands that shares an output with another chain).

    Raises:
        LockedError: another process holds the lock (and ``wait`` is false); the message
            names ``target``, that process and its command, in one line.

    Yields:
        The lock file's path.
    """
    target = Path(target)
    path = lock_path(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = _create_exclusively(path, target, wait) if fcntl is None else _lock(path, target, wait)
    except LockedError:
        raise
    except OSError as error:
        # The lock file is an implementation detail: name what the user asked to write.
        raise OSError(f"{shown_path(target)}: cannot write there ({error.strerror or error})") from None
    if handle is not None:
        try:
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()} {holder}\n".encode())
        except OSError as error:
            path.unlink(missing_ok=True)
            os.close(handle)
            raise OSError(f"{shown_path(target)}: cannot write there ({error.strerror or error})") from None
    try:
        yield path
    finally:
        if handle is not None:
            # Removed while still locked: a process that opened the file in the meantime
            # then sees that its file is no longer the lock file, and starts over.
            path.unlink(missing_ok=True)
            os.close(handle)


def _lock(path: Path, target: Path, wait: bool) -> int | None:
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = _read(handle)
            os.close(handle)
            raise LockedError(_refusal(target, text)) from None
        except OSError as error:
            os.close(handle)
            if error.errno in _NO_LOCKING:
                # No lock to be had here; the caller's own checks before it writes still apply.
                path.unlink(missing_ok=True)
                return None
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(handle), current):
            return handle
        # The previous holder removed the file between this open and this flock.
        os.close(handle)


def _create_exclusively(path: Path, target: Path, wait: bool) -> int:
    while True:
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not wait:
                break
            # Without flock nothing wakes a waiter: look again now and then.
            time.sleep(_WAIT_POLL_SECONDS)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""
    message = _refusal(target, text)
    raise LockedError(f"{message} (if it no longer runs, delete {path})") from None


def _read(handle: int) -> str:
    try:
        return os.pread(handle, 512, 0).decode(errors="replace")
    except OSError:
        return ""


def _refusal(target: Path, text: str) -> str:
    lines = text.strip().splitlines()
    pid, _, command = (lines[0] if lines else "").partition(" ")
    who = f"{shown_path(command) or 'another command'} (process {pid})" if pid.isdigit() else "another process"
    return f"{target}: {who} is writing it; wait for it to end or choose another output folder"
