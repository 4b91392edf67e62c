import os

import pytest
from lock_helpers import lock_held_by_another

from wsgraph import locks
from wsgraph.locks import LockedError, lock_path, write_lock


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "exclusive-create"])
def test_one_holder_at_a_time_and_no_file_left(tmp_path, monkeypatch, flock):
    if not flock:
        monkeypatch.setattr(locks, "fcntl", None)
    elif locks.fcntl is None:
        pytest.skip("no fcntl here")
    target = tmp_path / "out"
    with write_lock(target, "wsgraph convert") as path:
        assert path == tmp_path / ".out.lock" and path.read_text() == f"{os.getpid()} wsgraph convert\n"
        with pytest.raises(LockedError) as error, write_lock(target, "wsgraph convert"):
            pass
        message = str(error.value)
        assert message.startswith(f"{target}: wsgraph convert (process {os.getpid()}) is writing it; wait for it")
        assert "\n" not in message and ("delete" in message) == (not flock)
        assert path.exists()
    assert not lock_path(target).exists()
    with write_lock(target, "again"):
        pass


def test_a_lock_file_left_by_a_killed_holder_does_not_lock(tmp_path):
    if locks.fcntl is None:
        pytest.skip("without flock a left lock file is refused, naming it")
    target = tmp_path / "out"
    lock_path(target).write_text("4194999 wsgraph convert\n")
    with write_lock(target, "wsgraph convert") as path:
        assert path.read_text() == f"{os.getpid()} wsgraph convert\n"
    assert not path.exists()


def test_a_lock_file_removed_before_it_was_locked_is_not_taken(tmp_path, monkeypatch):
    if locks.fcntl is None:
        pytest.skip("no fcntl here")
    target = tmp_path / "out"
    flock, calls = locks.fcntl.flock, []

    def holder_releases_first(handle, operation):
        # The first attempt opened the file just before its previous holder removed it.
        if not calls:
            lock_path(target).unlink()
        calls.append(handle)
        return flock(handle, operation)

    monkeypatch.setattr(locks.fcntl, "flock", holder_releases_first)
    with write_lock(target, "wsgraph convert") as path:
        assert len(calls) == 2 and path.exists()
        assert os.path.samestat(os.fstat(calls[1]), os.stat(path))
    assert not path.exists()


@pytest.mark.parametrize("flock", [True, False], ids=["flock", "exclusive-create"])
def test_a_waiter_gets_the_lock_when_its_holder_releases_it(tmp_path, monkeypatch, flock):
    if not flock:
        monkeypatch.setattr(locks, "fcntl", None)
        monkeypatch.setattr(locks, "_WAIT_POLL_SECONDS", 0.01)
    elif locks.fcntl is None:
        pytest.skip("no fcntl here")
    target = tmp_path / "out"
    with lock_held_by_another(target, "wsgraph fit-inrs") as held:
        with pytest.raises(LockedError), write_lock(target, "refused"):
            pass
        held.release_soon()
        with write_lock(target, "waiter", wait=True) as path:
            held.events.append("acquired")
            assert path.read_text() == f"{os.getpid()} waiter\n"
    assert held.events == ["released", "acquired"] and not lock_path(target).exists()


def test_every_spelling_of_a_folder_shares_one_lock(tmp_path, monkeypatch):
    target = tmp_path / "runs" / "run"
    target.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "runs")
    monkeypatch.chdir(target)
    spellings = [target, ".", str(tmp_path / "runs" / "." / "run"), tmp_path / "link" / "run"]
    assert {lock_path(spelling) for spelling in spellings} == {tmp_path / "runs" / ".run.lock"}
    with write_lock(".", "wsgraph train"), pytest.raises(LockedError), write_lock(tmp_path / "link" / "run", "x"):
        pass


def test_a_name_too_long_for_the_suffix_still_gets_a_lock(tmp_path):
    names = ["a" * 250, "a" * 200 + "c" * 50]
    paths = [lock_path(tmp_path / name) for name in names]
    assert all(len(os.fsencode(path.name)) <= 255 for path in paths) and paths[0] != paths[1]
    with write_lock(tmp_path / names[0], "wsgraph train") as path:
        assert path.exists()
