"""One driver per sweep: the lock's refusals, take-overs and lost leases, without Ray."""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from stability.errors import UserError
from sweeps import lock


def write_lock(folder: Path, age: float = 0.0, name: str = lock.LOCK, **fields) -> Path:
    """A lock file as another driver left it, its heartbeat (mtime) ``age`` seconds old."""
    folder.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "pid": os.getpid(), "since": "earlier", "token": "theirs"}
    path = folder / name
    path.write_text(json.dumps({**base, **fields}))
    age_file(path, age)
    return path


def age_file(path: Path, age: float) -> None:
    """Make a lock look silent for ``age`` seconds: what a paused or dead driver's looks like."""
    then = time.time() - age
    os.utime(path, (then, then))


def lock_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def held_record(lease: lock.Lease, folder: Path) -> dict:
    return json.loads(lease.paths[folder].read_text())


def test_a_live_driver_on_this_host_is_refused(tmp_path):
    write_lock(tmp_path / "s")  # this very process: alive, fresh
    with pytest.raises(UserError, match=rf"host {socket.gethostname()}, pid {os.getpid()}, since earlier"):
        lock.acquire(tmp_path / "s", lock.holder())
    assert lock_files(tmp_path / "s") == [lock.LOCK]  # nothing else written


def test_a_driver_elsewhere_is_refused_while_its_heartbeat_is_fresh(tmp_path):
    write_lock(tmp_path / "s", age=lock.STALE_S / 2, host="node-b", pid=1)
    with pytest.raises(UserError, match="host node-b, pid 1"):
        lock.acquire(tmp_path / "s", lock.holder())


def test_an_older_versions_lock_without_token_is_respected(tmp_path):
    write_lock(tmp_path / "s", host="node-b", pid=1, token=None)
    with pytest.raises(UserError, match="host node-b, pid 1"):
        lock.acquire(tmp_path / "s", lock.holder())


@pytest.mark.parametrize(
    "stale",
    [
        {"host": "node-b", "pid": 1, "age": 2 * lock.STALE_S},  # elsewhere, silent
        {"pid": 2**22 + 17},  # this host, no such process
        {"token": None, "pid": 2**22 + 17},  # an older version's lock, its driver dead
        {},  # unreadable below
    ],
)
def test_a_stale_lock_is_taken_over_and_released(tmp_path, stale):
    folder = tmp_path / "s"
    write_lock(folder, **stale)
    if not stale:
        (folder / lock.LOCK).write_text("{half a lock")
    with lock.hold([folder]) as lease:
        assert lock_files(folder) == [f"{lock.LOCK}.1"]  # the next generation; the stale one removed
        held = held_record(lease, folder)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert held["token"] == lease.token and lease.lost() is None
        assert held["over"] == (["theirs"] if stale.get("token", "theirs") and stale else [])
        lease.check()
    assert lock_files(folder) == []  # no temporary or stale files left


def test_a_free_sweep_gets_generation_0_under_the_old_name(tmp_path):
    with lock.hold([tmp_path / "s"]) as lease:
        assert lease.paths[tmp_path / "s"] == tmp_path / "s" / lock.LOCK
        assert lease.folders == [tmp_path / "s"]
    assert lock_files(tmp_path / "s") == []


def test_locks_are_all_or_none(tmp_path):
    write_lock(tmp_path / "b", host="node-b")
    with pytest.raises(UserError), lock.hold([tmp_path / "a", tmp_path / "b"]):
        pass
    assert not (tmp_path / "a" / lock.LOCK).exists()  # the first one was given back


def test_the_heartbeat_refreshes_the_lock_without_rewriting_it(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with lock.hold([tmp_path / "s"]) as lease:
        path = lease.paths[tmp_path / "s"]
        content, inode = path.read_bytes(), path.stat().st_ino
        age_file(path, 30)
        time.sleep(0.4)
        assert time.time() - path.stat().st_mtime < 5
        assert path.read_bytes() == content and path.stat().st_ino == inode
        assert lease.lost() is None


def test_the_timings_come_from_the_environment_when_set(monkeypatch):
    monkeypatch.setenv(lock.STALE_ENV, "4")
    monkeypatch.setenv(lock.HEARTBEAT_ENV, "0.5")
    assert (lock.stale_s(), lock.heartbeat_s()) == (4.0, 0.5)
    monkeypatch.delenv(lock.STALE_ENV)
    monkeypatch.setattr(lock, "STALE_S", 7.0)
    assert lock.stale_s() == 7.0
    monkeypatch.setenv(lock.HEARTBEAT_ENV, "soon")
    with pytest.raises(UserError, match=lock.HEARTBEAT_ENV):
        lock.heartbeat_s()


def test_a_paused_holder_learns_it_was_taken_over_and_never_writes_its_lock_back(tmp_path, monkeypatch):
    """Driver A pauses past the stale age (a suspended laptop, SIGSTOP); B takes over; A wakes."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        a._stop.set()  # paused: no heartbeat ...
        a._beating.join()
        a_path = a.paths[folder]
        age_file(a_path, 2 * lock.STALE_S)  # ... for longer than the stale age
        with lock.hold([folder]) as b:
            b_since = held_record(b, folder)["since"]
            assert not a_path.exists()  # B removed the stale generation
            a._stop.clear()  # A wakes
            a.start()
            deadline = time.monotonic() + 5
            while a.lost() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            why = a.lost()
            assert why is not None and "\n" not in why
            assert why.startswith("sweep 's' was taken over by another driver") and why.endswith("this driver stops")
            assert f"pid {os.getpid()}, since {b_since}" in why
            with pytest.raises(lock.LockLost, match="taken over"):
                a.check()
            time.sleep(0.3)
            assert not a_path.exists()  # never recreated
            assert lock_files(folder) == [b.paths[folder].name]
            b.check()
            assert b.lost() is None
        assert lock_files(folder) == []
    assert lock_files(folder) == []  # A's exit removed nothing of anyone's


def test_a_paused_holder_whose_file_was_not_yet_removed_stops_touching_it(tmp_path):
    """B has linked its generation (naming A's token) but not yet removed A's file: A sees the
    take-over in B's file, and its heartbeat leaves its own stale mtime alone."""
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        a_path = a.paths[folder]
        age_file(a_path, 2 * lock.STALE_S)
        b = {**lock.holder(), "pid": 4242, "since": "just now"}
        assert lock.create(lock.lock_path(folder, 1), {**b, "over": [a.token]})
        before = a_path.stat().st_mtime
        a._beat()
        assert a_path.stat().st_mtime == before
        assert "host" in a.lost() and "pid 4242, since just now" in a.lost()
        with pytest.raises(lock.LockLost, match="pid 4242"):
            a.check()
    assert lock_files(folder) == [f"{lock.LOCK}.1"]  # A removed only its own file


def test_check_reads_the_files_not_only_the_heartbeats_verdict(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600.0)  # no beat during the test
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        a.check()
        age_file(a.paths[folder], 2 * lock.STALE_S)
        taker = lock.holder()
        path = lock.acquire(folder, taker)
        assert a.lost() is None  # the heartbeat has not looked yet ...
        with pytest.raises(lock.LockLost, match=re.escape(taker["since"])):
            a.check()  # ... check() has
        assert a.lost() is not None
        lock.remove_own(path, taker["token"])


def test_of_two_drivers_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    drivers = [lock.holder() for _ in range(4)]
    seen = {d["token"]: lock.scan(folder) for d in drivers}  # all read the lock as stale ...
    start, won = threading.Barrier(len(drivers)), {}

    def take_over(me: dict) -> None:
        start.wait()  # ... then all take it over at once
        won[me["token"]] = lock.take(folder, me, seen[me["token"]])

    threads = [threading.Thread(target=take_over, args=(d,)) for d in drivers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [token for token, path in won.items() if path is not None]
    assert len(winners) == 1
    assert lock_files(folder) == [f"{lock.LOCK}.1"]
    assert json.loads((folder / f"{lock.LOCK}.1").read_text())["token"] == winners[0]


def test_of_two_drivers_acquiring_at_once_one_runs_the_other_is_refused(tmp_path):
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    start, outcomes = threading.Barrier(2), []

    def acquire() -> None:
        start.wait()
        try:
            outcomes.append(lock.acquire(folder, lock.holder()))
        except UserError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=acquire) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(o).__name__ for o in outcomes) == ["PosixPath", "UserError"]
    assert "being run by another driver" in str(next(o for o in outcomes if isinstance(o, UserError)))


def test_a_takeover_whose_generation_is_taken_meanwhile_removes_nothing(tmp_path):
    """T reads the stale lock; Q takes it over first; T's take-over fails and Q's lock stays."""
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    t = lock.holder()
    seen = lock.scan(folder)
    with lock.hold([folder]) as q:
        assert lock.take(folder, t, seen) is None
        assert lock_files(folder) == [q.paths[folder].name]
        with pytest.raises(UserError, match=re.escape(q.me["since"])):
            lock.acquire(folder, t)
        q.check()


def test_a_fresh_lock_made_between_a_takers_read_and_its_takeover_is_never_removed(tmp_path):
    """T reads the stale lock of a dead driver; Q takes it over, runs and releases; R starts on the
    emptied folder (generation 0 again); only then does T link generation 1. T sees R's lock,
    which it never judged stale, withdraws its own, and R keeps its sweep."""
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    t = lock.holder()
    seen = lock.scan(folder)  # T: stale
    with lock.hold([folder]):  # Q
        pass
    with lock.hold([folder]) as r:
        r_path = r.paths[folder]
        assert r_path.name == lock.LOCK
        assert lock.take(folder, t, seen) is None  # T withdraws
        assert lock_files(folder) == [lock.LOCK] and json.loads(r_path.read_text())["token"] == r.token
        r.check()
        assert r.lost() is None
        with pytest.raises(UserError, match=re.escape(r.me["since"])):
            lock.acquire(folder, t)  # T, looking again, is refused
    assert lock_files(folder) == []


def test_a_heartbeat_that_raises_marks_the_lease_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)

    def broken(*args, **kwargs):
        raise OSError(5, "Input/output error")

    with lock.hold([tmp_path / "s"]) as lease:
        monkeypatch.setattr(os, "utime", broken)
        deadline = time.monotonic() + 5
        while lease.lost() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "heartbeat failed" in lease.lost() and "Input/output error" in lease.lost()
        with pytest.raises(lock.LockLost, match="Input/output error"):
            lease.check()
        assert not lease._beating.is_alive()  # stopped, and says so
        monkeypatch.undo()
    assert lock_files(tmp_path / "s") == []  # still this lease's own file: removed on exit


def test_release_never_removes_another_drivers_lock(tmp_path):
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        path = a.paths[folder]
        path.unlink()  # A's lock removed (by hand) and the name reused by another driver
        write_lock(folder, host="node-b", pid=1)
        with pytest.raises(lock.LockLost, match="host node-b, pid 1"):
            a.check()
    assert lock_files(folder) == [lock.LOCK]
