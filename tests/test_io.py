import errno
import os
import shutil
import stat

import pytest
from matplotlib.figure import Figure

from wsgraph.io import (
    atomic_write,
    check_writable_folder,
    followed_link,
    make_staging_folder,
    missing_folders,
    put_back_replaced_folders,
    refuse_unreplaceable_folder,
    remove_empty_folders,
    remove_folder,
    remove_stale_staging,
    rename_failure,
    replace_folder,
    save_figure,
    unwritable_reason,
    write_json,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_replaces_the_file_and_creates_folders(tmp_path):
    path = tmp_path / "nested" / "data.bin"
    assert atomic_write(path, lambda handle: handle.write(b"old")) == path
    atomic_write(path, lambda handle: handle.write(b"new"))
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["data.bin"]


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")

    def fail(handle):
        handle.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, where no file can be created")
def test_atomic_write_names_the_target_not_its_temporary_file():
    target = "/proc/wsgraph-atomic-write-test.json"
    with pytest.raises(OSError) as error:
        atomic_write(target, lambda handle: handle.write(b"x"))
    assert error.value.filename == target
    assert str(error.value).endswith(f": '{target}'") and ".tmp" not in str(error.value)


def test_atomic_write_names_the_target_when_writing_fails(tmp_path):
    def full(handle):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as error:
        atomic_write(tmp_path / "data.bin", full)
    assert str(error.value) == f"[Errno 28] No space left on device: '{tmp_path / 'data.bin'}'"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_write_gives_the_permissions_of_a_plain_open(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "atomic", lambda handle: handle.write(b"x"))
        (tmp_path / "plain").write_bytes(b"x")
        assert os.umask(umask) == umask  # reading the mask did not leave it changed
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "atomic") == _mode(tmp_path / "plain") == 0o666 & ~umask


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_a_staging_folder_gets_the_permissions_of_a_plain_mkdir(tmp_path, umask):
    previous = os.umask(umask)
    try:
        staging = make_staging_folder(tmp_path / "out", ".building")
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(previous)
    assert staging.parent == tmp_path and staging.name.startswith(".out.") and staging.name.endswith(".building")
    assert _mode(staging) == _mode(tmp_path / "plain") == 0o777 & ~umask


def test_remove_stale_staging_removes_only_that_outs_staging_folders(tmp_path):
    stale = make_staging_folder(tmp_path / "out", ".building")
    (stale / "half.pt").write_bytes(b"x")
    others = [
        make_staging_folder(tmp_path / "other", ".building"),
        make_staging_folder(tmp_path / "out", ".replaced"),
        tmp_path / ".out.notrandom.building",
    ]
    others[-1].mkdir()
    remove_stale_staging(tmp_path / "out", ".building")
    assert not stale.exists() and all(folder.is_dir() for folder in others)


def _built(tmp_path, content: str):
    built = make_staging_folder(tmp_path / "out", ".building")
    (built / "new.txt").write_text(content)
    return built


def _as_for_another_user(monkeypatch):
    """Renames as the kernel does them for a process that permissions stop (not root): a folder
    moved to another parent must be writable by its owner, since its ``..`` entry changes."""
    rename = os.replace

    def checked(source, target):
        source, target = os.fspath(source), os.fspath(target)
        moves = os.path.dirname(os.path.abspath(source)) != os.path.dirname(os.path.abspath(target))
        if moves and os.path.isdir(source) and not os.stat(source).st_mode & stat.S_IWUSR:
            raise PermissionError(13, "Permission denied", source)
        rename(source, target)

    monkeypatch.setattr(os, "replace", checked)


@pytest.mark.parametrize("mode", [0o750, 0o555])
@pytest.mark.parametrize("earlier", ["missing", "empty", "full"])
def test_replace_folder_puts_the_built_folder_in_place_with_the_replaced_ones_permissions(
    tmp_path, monkeypatch, earlier, mode
):
    _as_for_another_user(monkeypatch)
    out = tmp_path / "out"
    if earlier != "missing":
        out.mkdir()
    if earlier == "full":
        (out / "old").mkdir()
        (out / "old" / "old.txt").write_text("old")
        os.chmod(out / "old", 0o555)
    if earlier != "missing":
        os.chmod(out, mode)
    # As convert builds a single dataset: inside its staging folder, so the rename moves it to another parent.
    staging = _built(tmp_path, "unused")
    built = staging / "dataset"
    built.mkdir()
    (built / "new.txt").write_text("new")
    plain = _mode(built)
    replace_folder(built, out, ".replaced")
    shutil.rmtree(staging)
    assert os.listdir(out) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["out"]
    assert _mode(out) == (plain if earlier == "missing" else mode)
    os.chmod(out, 0o755)


def _another_group() -> int | None:
    """A group other than this process's that it may give its files: any, as root."""
    if os.geteuid() == 0:
        return os.getegid() + 54321
    return next((group for group in os.getgroups() if group != os.getegid()), None)


def _shared_folder(out, mode: int, full: bool) -> int:
    """Make ``out`` with ``mode`` and another group (returned); skip where this user has no other."""
    group = _another_group()
    if group is None:
        pytest.skip("this user belongs to one group only")
    out.mkdir()
    if full:
        (out / "old.txt").write_text("old")
    os.chown(out, -1, group)
    os.chmod(out, mode)
    return group


@pytest.mark.skipif(os.name == "nt", reason="no set-group-ID folders")
@pytest.mark.parametrize("earlier", ["empty", "full"])
def test_replace_folder_gives_a_set_group_id_folders_group_to_what_it_writes(tmp_path, earlier):
    out = tmp_path / "out"
    group = _shared_folder(out, 0o2775, earlier == "full")
    built = _built(tmp_path, "new")
    (built / "shards").mkdir()
    (built / "shards" / "shard-00000.pt").write_text("new")
    os.symlink("new.txt", built / "link")
    replace_folder(built, out, ".replaced")
    for path in (out, out / "new.txt", out / "shards", out / "shards" / "shard-00000.pt"):
        assert os.stat(path).st_gid == group, path
    assert _mode(out) == 0o2775 and _mode(out / "shards") & stat.S_ISGID and not _mode(out / "new.txt") & stat.S_ISGID
    assert os.lstat(out / "link").st_gid == os.getegid()  # a link is left as it is


@pytest.mark.skipif(os.name == "nt", reason="no set-group-ID folders")
def test_a_colleagues_set_group_id_folder_keeps_its_group_though_not_its_owner(tmp_path, monkeypatch):
    # A writer may not give a folder away, but may give it a group it belongs to.
    out = tmp_path / "out"
    group = _shared_folder(out, 0o2777, True)
    chown = os.chown

    def only_the_group(path, uid, gid, *args, **kwargs):
        if uid != -1:
            raise PermissionError(1, "Operation not permitted", str(path))
        chown(path, uid, gid, *args, **kwargs)

    monkeypatch.setattr(os, "chown", only_the_group)
    built = _built(tmp_path, "new")
    replace_folder(built, out, ".replaced")
    assert os.stat(out).st_gid == group and os.stat(out / "new.txt").st_gid == group
    assert _mode(out) == 0o2777


def test_replace_folder_leaves_the_group_alone_without_the_set_group_id_bit(tmp_path):
    out = tmp_path / "out"
    group = _shared_folder(out, 0o775, False)
    built = _built(tmp_path, "new")
    (built / "shards").mkdir()
    replace_folder(built, out, ".replaced")
    assert os.stat(out).st_gid == group and os.stat(out / "shards").st_gid == os.getegid()
    assert not _mode(out / "shards") & stat.S_ISGID


def test_replace_folder_puts_the_earlier_folder_back_if_the_new_one_cannot_take_its_place(tmp_path, monkeypatch):
    out = tmp_path / "out"
    built = _built(tmp_path, "new")
    rename = os.replace

    def refuse_the_built_folder(source, target):
        if os.fspath(source) == os.fspath(built):
            raise OSError(5, "Input/output error")
        rename(source, target)

    monkeypatch.setattr(os, "replace", refuse_the_built_folder)
    for earlier in ("full", "empty"):
        out.mkdir()
        os.chmod(out, 0o750)
        if earlier == "full":
            (out / "old.txt").write_text("old")
        with pytest.raises(OSError, match="Input/output error"):
            replace_folder(built, out, ".replaced")
        assert os.listdir(out) == (["old.txt"] if earlier == "full" else []) and _mode(out) == 0o750
        assert sorted(os.listdir(tmp_path)) == sorted(["out", built.name])
        shutil.rmtree(out)


def test_a_folder_moved_aside_by_a_killed_replacement_is_put_back_where_out_is_missing_or_empty(tmp_path):
    out = tmp_path / "out"
    other = make_staging_folder(out, ".building")
    for out_before in ("missing", "empty"):
        if out_before == "empty":
            out.mkdir()
        aside = make_staging_folder(out, ".replaced")
        (aside / "old.txt").write_text("old")
        put_back_replaced_folders(out, ".replaced")
        assert os.listdir(out) == ["old.txt"] and sorted(os.listdir(tmp_path)) == sorted(["out", other.name])
        shutil.rmtree(out)
    # Killed while deleting the replaced folder, after the new one took its place: deleted, not put back.
    out.mkdir()
    (out / "new.txt").write_text("new")
    discarded = make_staging_folder(out, ".discarded")
    os.chmod(discarded, 0o555)
    put_back_replaced_folders(out, ".replaced")
    assert os.listdir(out) == ["new.txt"] and not discarded.exists()


def test_a_folder_moved_aside_beside_an_out_with_files_is_left_and_named(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "theirs.txt").write_text("theirs")
    aside = make_staging_folder(out, ".replaced")
    (aside / "old.txt").write_text("old")
    with pytest.raises(FileExistsError) as error:
        put_back_replaced_folders(out, ".replaced")
    assert str(error.value) == (
        f"{out}: the folder it held before a replacement that was killed waits in {aside}; move it back or delete it"
    )
    assert os.listdir(out) == ["theirs.txt"] and os.listdir(aside) == ["old.txt"]


def test_remove_folder_deletes_folders_their_owner_cannot_write(tmp_path):
    folder = tmp_path / "tree"
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "f.txt").write_text("x")
    (tmp_path / "kept.txt").write_text("kept")
    (folder / "a" / "link").symlink_to(tmp_path / "kept.txt")
    for path in (folder / "a" / "b", folder / "a", folder):
        os.chmod(path, 0o555)
    remove_folder(folder)
    assert os.listdir(tmp_path) == ["kept.txt"] and _mode(tmp_path / "kept.txt") & 0o200


def test_folders_that_cannot_be_replaced_by_renaming_are_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^--out /: the current folder or one that holds it"):
        refuse_unreplaceable_folder("/", "--out /")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^--out \.: the current folder or one that holds it"):
        refuse_unreplaceable_folder(".", "--out .")
    with pytest.raises(ValueError, match=r"^--out /dev: a mount point, which cannot be replaced by renaming"):
        if not os.path.ismount("/dev"):
            pytest.skip("/dev is not a mount point here")
        refuse_unreplaceable_folder("/dev", "--out /dev")
    refuse_unreplaceable_folder(tmp_path / "out", "--out out")


def test_a_busy_folder_is_explained_as_a_mount_point():
    assert rename_failure(OSError(errno.EBUSY, "Device or resource busy")) == (
        "Device or resource busy: a mount point? give a folder inside it"
    )
    assert rename_failure(OSError(errno.EACCES, "Permission denied")) == "Permission denied"


def test_a_symlink_loop_is_refused_by_name(tmp_path):
    (tmp_path / "one").symlink_to(tmp_path / "two")
    (tmp_path / "two").symlink_to(tmp_path / "one")
    with pytest.raises(ValueError, match=r"^--out one: cannot follow its path"):
        followed_link(tmp_path / "one", "--out one")
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert followed_link(tmp_path / "link", "x") == tmp_path / "real"


def test_write_json_format(tmp_path):
    path = tmp_path / "doc.json"
    write_json(path, {"b": [1, 2], "a": "é"})
    assert path.read_bytes() == b'{\n  "b": [\n    1,\n    2\n  ],\n  "a": "\\u00e9"\n}\n'
    write_json(path, {"b": 1, "a": {"d": 2, "c": 3}}, sort_keys=True)
    assert path.read_text() == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'


def test_write_json_refuses_what_json_cannot_hold_and_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json(tmp_path / "doc.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "magic"), [("plot.png", b"\x89PNG"), ("plot.PDF", b"%PDF"), ("plot", b"\x89PNG")])
def test_save_figure_takes_the_format_from_the_suffix(tmp_path, name, magic):
    figure = Figure(figsize=(1, 1))
    figure.subplots().plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / name, dpi=20)
    assert path.read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_save_figure_names_an_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="xyz"):
        save_figure(Figure(), tmp_path / "plot.xyz")
    assert list(tmp_path.iterdir()) == []


def test_missing_folders_lists_what_creating_a_folder_would_make_innermost_first(tmp_path):
    (tmp_path / "a").mkdir()
    assert missing_folders(tmp_path / "a" / "b" / "c") == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b"]
    assert missing_folders(tmp_path / "a") == []


def test_remove_empty_folders_stops_at_one_that_holds_files_and_skips_ones_gone(tmp_path):
    made = missing_folders(tmp_path / "a" / "b" / "c")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "someone-elses.txt").write_text("keep")
    remove_empty_folders(made)
    assert not (tmp_path / "a" / "b" / "c").exists()
    assert (tmp_path / "a" / "b" / "someone-elses.txt").read_text() == "keep"

    made = missing_folders(tmp_path / "x" / "never-made")
    (tmp_path / "x").mkdir()
    remove_empty_folders(made)
    assert not (tmp_path / "x").exists()


def test_unwritable_reason_keeps_the_folder_it_made_and_names_a_file_in_the_way(tmp_path):
    assert unwritable_reason(tmp_path / "new" / "run") is None
    assert (tmp_path / "new" / "run").is_dir() and not any((tmp_path / "new" / "run").iterdir())
    (tmp_path / "file").write_text("keep")
    assert unwritable_reason(tmp_path / "file") == f"{tmp_path / 'file'} exists and is not a folder"
    assert unwritable_reason(tmp_path / "file" / "run").startswith("cannot write there (")
    assert (tmp_path / "file").read_text() == "keep"


def test_check_writable_folder_removes_what_it_made_and_names_the_argument(tmp_path):
    check_writable_folder(tmp_path / "new" / "run", "--out new/run")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("keep")
    with pytest.raises(OSError, match=r"^--out x: cannot write there \("):
        check_writable_folder(tmp_path / "file" / "run", "--out x")
    assert (tmp_path / "file").read_text() == "keep"
