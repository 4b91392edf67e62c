"""Writing files so that a reader never sees half of one.

Every writer in wsgraph goes through :func:`atomic_write`: the content goes to a
temporary file in the target's folder, is flushed to disk, and is then renamed over
the target, so an interrupted writer leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from wsgraph.errors import shown_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def atomic_write(path: str | os.PathLike, write_fn: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write_fn(binary_handle)`` on a temporary file next to ``path``, then rename it into place.

    The parent folder is created if needed. The file gets the permissions a plain
    ``open(path, "wb")`` would give it (``0o666`` less the umask), not the private
    ``0o600`` of a temporary file. If ``write_fn`` raises, the temporary file is removed
    and ``path`` is left as it was.

    Args:
        path: the file to write.
        write_fn: writes the whole content to the binary handle it is given.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}."
    try:
        handle, temporary = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _naming(error, path, prefix) from error
    try:
        with os.fdopen(handle, "wb") as stream:
            write_fn(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise _naming(error, path, prefix) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _naming(error: OSError, path: Path, prefix: str) -> OSError:
    """``error`` about the file the caller asked for, where it names the hidden temporary
    file instead (or nothing): that name means nothing to whoever reads the message."""
    named = error.filename
    if error.errno is None or (named is not None and not Path(os.fsdecode(named)).name.startswith(prefix)):
        return error
    return type(error)(error.errno, error.strerror or os.strerror(error.errno), str(path))


def read_json_file(
    path: str | os.PathLike, kind: str = "readable JSON file", object_pairs_hook: Callable | None = None
) -> Any:
    """The JSON document in ``path``; a ``ValueError`` that names the file and says it is not a ``kind``
    where it cannot be read, is not UTF-8 or JSON, or is nested too deeply for Python to read.
    ``object_pairs_hook`` is :func:`json.loads`'s (a ``ValueError`` it raises is reported the same way)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=object_pairs_hook)
    except (OSError, ValueError) as error:  # unreadable, not UTF-8, not JSON, or refused by the hook
        raise ValueError(f"{path}: not a {kind} ({error})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a {kind} (JSON nested too deeply to read)") from None


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> Path:
    """Write ``obj`` as JSON (indent 2, a trailing newline) to ``path`` atomically.

    Args:
        path: the file to write.
        obj: anything :func:`json.dumps` accepts.
        sort_keys: write the keys of every mapping in sorted order.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    text = json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n"
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def refuse_existing_results(out: str | os.PathLike, names: tuple[str, ...]) -> None:
    """Stop before a run replaces the results an earlier run left in ``out``.

    Raises:
        FileExistsError: naming the files of ``names`` that ``out`` already holds.
    """
    held = [name for name in names if (Path(out) / name).exists()]
    if held:
        raise FileExistsError(
            f"--out {out} already holds results ({', '.join(held)}); choose another --out or delete them"
        )


def missing_folders(folder: str | os.PathLike) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first: what
    creating ``folder`` would make, and so what to remove if the work that needed it fails."""
    missing = []
    for candidate in (Path(folder), *Path(folder).parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first, as :func:`missing_folders` lists them) while
    they are empty. One that cannot be removed for another reason (already gone, never
    made, a name too long to make) is skipped; the first that holds files (someone
    else's now) stops it, since its parents hold it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder``, or ``None`` if they can. ``folder``
    (and its missing parents) is created to find out, and kept: the caller decides,
    with :func:`missing_folders` and :func:`remove_empty_folders`, whether it stays."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{shown_path(folder)} exists and is not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".wsgraph-write-test-"):
            pass
    except OSError as error:
        return f"cannot write there ({error.strerror or type(error).__name__})"
    return None


def check_writable_folder(folder: str | os.PathLike, named: str) -> None:
    """Raise an ``OSError`` naming ``named`` unless files can be written into ``folder``;
    the folders made to find out are removed again. For a command that writes ``folder``
    only after long work, to refuse at once.

    Args:
        folder: where files will be written.
        named: how the error names it, e.g. ``"--out runs/x"``.
    """
    made = missing_folders(folder)
    try:
        reason = unwritable_reason(folder)
    finally:
        remove_empty_folders(made)
    if reason is not None:
        raise OSError(f"{named}: {reason}")


def refuse_output_inside(out: str | os.PathLike, source: str | os.PathLike, named: str, source_named: str) -> None:
    """Raise a ``ValueError`` if ``out`` is ``source`` or lies inside it (compared as resolved
    paths, so through symlinks too): what a command writes must not land among what it reads,
    where a later read takes it for input or a rewrite of the input deletes it.

    Args:
        out: where the command writes.
        source: a folder it reads (a dataset root, a zoo).
        named: how the error names ``out``, e.g. ``"--out runs/x"``.
        source_named: how it names ``source``, e.g. ``"--data data/inrs"``.
    """
    source_path = Path(source)
    if not source_path.is_dir():
        return
    if Path(out).resolve().is_relative_to(source_path.resolve()):
        raise ValueError(f"{named}: inside {source_named}; write it outside the folder the command reads")


def make_staging_folder(out: str | os.PathLike, suffix: str) -> Path:
    """A new hidden folder beside ``out`` (``.NAME.XXXXXXXX<suffix>``) in which to build what
    will be renamed to ``out``; with the permissions a plain ``mkdir`` would give it (``0o777``
    less the umask), not a temporary folder's private ``0o700``, which ``out`` would keep."""
    out = Path(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent))
    os.chmod(staging, 0o777 & ~_current_umask())
    return staging


def stale_staging_folders(out: str | os.PathLike, suffix: str) -> list[Path]:
    """The folders :func:`make_staging_folder` made for ``out`` with ``suffix`` that are still there."""
    out = Path(out)
    prefix = f".{out.name}."
    # tempfile.mkdtemp's names: the prefix, 8 random characters, the suffix.
    length = len(prefix) + 8 + len(suffix)
    return sorted(
        entry
        for entry in out.parent.iterdir()
        if len(entry.name) == length
        and entry.name.startswith(prefix)
        and entry.name.endswith(suffix)
        and entry.is_dir()
        and not entry.is_symlink()  # made by mkdtemp, never a link: one is someone else's
    )


def remove_stale_staging(out: str | os.PathLike, suffix: str) -> None:
    """Delete the staging folders (:func:`make_staging_folder`) of writers of ``out`` that were
    killed before they could clean up. Only for a caller that holds ``out``'s write lock
    (:func:`wsgraph.locks.write_lock`), so that no running writer owns one."""
    for folder in stale_staging_folders(out, suffix):
        remove_folder(folder)


def followed_link(out: str | os.PathLike, named: str) -> Path:
    """``out``, or the folder it names if it is a symlink: a folder that a writer replaces by
    renaming must be the folder itself, or the rename would replace the link and leave the
    folder it points to as it was.

    Raises:
        ValueError: naming ``named``, for a link that cannot be followed (a loop).
    """
    out = Path(out)
    if not out.is_symlink():
        return out
    try:
        target = out.resolve(strict=False)
    except (OSError, RuntimeError) as error:
        raise ValueError(f"{named}: cannot follow its path ({error})") from None
    # Python 3.13 and later resolve a loop without raising and return a link.
    if target.is_symlink():
        raise ValueError(f"{named}: cannot follow its path (a loop of symlinks)")
    return target


def refuse_unreplaceable_folder(out: str | os.PathLike, named: str) -> None:
    """Raise a ``ValueError`` naming ``named`` for a folder that a finished output built beside it
    cannot be renamed onto, so that a writer refuses it before any work rather than after: the
    current folder or one that holds it, and a mount point (one that :func:`os.path.ismount`
    sees; a bind mount on the same filesystem is found only by the rename, see
    :func:`rename_failure`)."""
    target, here = Path(out).resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise ValueError(f"{named}: the current folder or one that holds it; give a folder to create or replace")
    if os.path.ismount(target):
        raise ValueError(f"{named}: a mount point, which cannot be replaced by renaming; give a folder inside it")


def rename_failure(error: OSError) -> str:
    """Why :func:`replace_folder` failed, for a one-line error: the system's reason, and for a
    busy folder (a mount point) what to do instead."""
    reason = error.strerror or str(error)
    if error.errno in (errno.EBUSY, errno.EXDEV):
        return f"{reason}: a mount point? give a folder inside it"
    return reason


# What a finished replacement renames the folder it replaced to, before deleting it.
_DISCARDED_SUFFIX = ".discarded"


def put_back_replaced_folders(out: str | os.PathLike, aside_suffix: str) -> None:
    """Undo what a :func:`replace_folder` killed part way left beside ``out``: the folder it had
    moved aside goes back to ``out`` if the kill came before the new one took its place (an empty
    ``out`` is removed for it), and a replaced folder whose deletion was cut short is deleted.
    Only for a caller that holds ``out``'s write lock.

    Raises:
        FileExistsError: a folder moved aside waits beside an ``out`` that holds files; neither is
            touched, and the message names both.
    """
    out = Path(out)
    for discarded in stale_staging_folders(out, _DISCARDED_SUFFIX):
        remove_folder(discarded)
    for aside in stale_staging_folders(out, aside_suffix):
        if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
            out.rmdir()
        if out.exists() or out.is_symlink():
            raise FileExistsError(
                f"{out}: the folder it held before a replacement that was killed waits in {aside}; "
                f"move it back or delete it"
            )
        os.replace(aside, out)


def replace_folder(built: str | os.PathLike, out: str | os.PathLike, aside_suffix: str) -> None:
    """Rename the finished folder ``built`` (made by :func:`make_staging_folder`) to ``out``.

    An empty ``out`` is removed first. A folder with files is renamed aside to a hidden name
    beside it (``.NAME.XXXXXXXX<aside_suffix>``) and deleted only once ``built`` has taken its
    place; should that rename fail it is put back, and should the process be killed in between,
    :func:`put_back_replaced_folders` puts it back. The new ``out`` then takes the replaced one's
    permission bits and, where the process may give files away, its owner and group, as if it
    had been written in place (set last, so that a read-only folder can still be replaced).

    Raises:
        OSError: from the renames (:func:`rename_failure` says why in words); with
            ``errno.ENOTEMPTY`` or ``errno.EEXIST`` when files came into an empty ``out`` after
            it was looked at. ``out`` is as it was.
    """
    built, out = Path(built), Path(out)
    earlier = out.stat() if out.is_dir() else None
    if earlier is None or not any(out.iterdir()):
        if earlier is not None:
            out.rmdir()
        try:
            os.replace(built, out)
        except BaseException:
            if earlier is not None and not out.exists():
                with contextlib.suppress(OSError):
                    out.mkdir()
                    os.chmod(out, stat.S_IMODE(earlier.st_mode))
            raise
    else:
        aside = make_staging_folder(out, aside_suffix)
        try:
            # Within one folder, so that a folder its owner cannot write can still be moved.
            if os.name == "nt":
                aside.rmdir()  # Windows renames no folder onto another
            os.replace(out, aside)
        except BaseException:
            with contextlib.suppress(OSError):
                aside.rmdir()
            raise
        try:
            os.replace(built, out)
        except BaseException:
            os.replace(aside, out)
            raise
        # Renamed before it is deleted: a kill during the deletion must not leave it to be put back.
        discarded = aside.with_name(aside.name[: -len(aside_suffix)] + _DISCARDED_SUFFIX)
        os.replace(aside, discarded)
        remove_folder(discarded)
    if earlier is not None:
        _take_attributes(out, earlier)


def remove_folder(folder: str | os.PathLike) -> None:
    """Delete ``folder`` and what it holds, folders without write permission for their owner
    included; what cannot be deleted all the same is left. A symlink is left as it is."""
    folder = Path(folder)
    if folder.is_symlink():
        return
    owner_all = stat.S_IRWXU
    with contextlib.suppress(OSError):
        if stat.S_IMODE(folder.stat().st_mode) & owner_all != owner_all:
            os.chmod(folder, stat.S_IMODE(folder.stat().st_mode) | owner_all)
    for parent, folders, _ in os.walk(folder):
        for name in folders:
            with contextlib.suppress(OSError):
                path = os.path.join(parent, name)
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                if mode & owner_all != owner_all and not os.path.islink(path):
                    os.chmod(path, mode | owner_all)
    shutil.rmtree(folder, ignore_errors=True)


def _take_attributes(folder: Path, earlier: os.stat_result) -> None:
    """Give ``folder`` the permission bits, and where allowed the owner and group, of the folder it replaced.

    Under a set-group-ID folder what is written in place takes the folder's group, and the
    folders made in it the bit itself (a shared project folder): the files and folders built
    elsewhere are given both, where the process may.
    """
    if earlier.st_mode & stat.S_ISGID and hasattr(os, "chown"):
        _take_group(folder, earlier.st_gid)
    own = folder.stat()
    if hasattr(os, "chown") and (earlier.st_uid, earlier.st_gid) != (own.st_uid, own.st_gid):
        # Only a privileged process may give a folder away; the permission bits carry over all the same,
        # and the group where the process belongs to it (a colleague's shared project folder).
        try:
            os.chown(folder, earlier.st_uid, earlier.st_gid)
        except OSError:
            with contextlib.suppress(OSError):
                os.chown(folder, -1, earlier.st_gid)
    # After chown, which may clear the set-group-ID bit.
    os.chmod(folder, stat.S_IMODE(earlier.st_mode))


def _take_group(folder: Path, group: int) -> None:
    """Give what ``folder`` holds the group ``group``, and its folders the set-group-ID bit."""
    for parent, folders, files in os.walk(folder):
        for name in folders + files:
            path = os.path.join(parent, name)
            with contextlib.suppress(OSError):
                now = os.lstat(path)
                if stat.S_ISLNK(now.st_mode):
                    continue
                if now.st_gid != group:
                    os.chown(path, -1, group)
                if stat.S_ISDIR(now.st_mode):
                    # After chown, which may clear the bit.
                    os.chmod(path, stat.S_IMODE(now.st_mode) | stat.S_ISGID)


def save_figure(figure: Figure, path: str | os.PathLike, *, dpi: float | None = None) -> Path:
    """Save a matplotlib ``figure`` to ``path`` atomically.

    The image format comes from ``path``'s extension; without one, matplotlib's default
    (``rcParams["savefig.format"]``, PNG unless configured otherwise).

    Args:
        figure: the figure to save.
        path: the image file to write.
        dpi: resolution; matplotlib's default (``rcParams["savefig.dpi"]``) if ``None``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib import rcParams

    path = Path(path)
    # Named explicitly: matplotlib cannot see the target's extension through a file handle.
    image_format = path.suffix[1:].lower() or rcParams["savefig.format"]
    return atomic_write(path, lambda handle: figure.savefig(handle, format=image_format, dpi=dpi))


def _current_umask() -> int:
    """The process's file-creation mask, read without changing it where the OS allows."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        return int(line.split()[1], 8)
        except (OSError, ValueError, IndexError):
            pass
    # Elsewhere the only way to read the mask is to set it and put it back; the mask set
    # meanwhile is the strictest usual one, so a file another thread creates in between
    # is private rather than world-writable.
    mask = os.umask(0o077)
    os.umask(mask)
    return mask
