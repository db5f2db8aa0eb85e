"""One driver per sweep: the lock's refusals, take-overs, tombstones and lost leases, without Ray."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import stat
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from stability.errors import UserError
from sweeps import lock
from tests.conftest import wait_for


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


def marked(path: Path) -> bool:
    """A tombstone: its taker cleared its write bits."""
    return not path.stat().st_mode & 0o222


def lagging_view(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """This process's view of the folder lags as an NFS client's can: its listing and its cached
    lookups still miss the named lock files (made a moment ago on another machine)."""
    read_entry, listdir = lock.read_entry, os.listdir
    monkeypatch.setattr(lock, "read_entry", lambda path: None if path.name in names else read_entry(path))
    monkeypatch.setattr(os, "listdir", lambda path=".": [n for n in listdir(path) if n not in names])


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
    before = (folder / lock.LOCK).read_bytes()
    with lock.hold([folder]) as lease:
        assert lock_files(folder) == [lock.LOCK, f"{lock.LOCK}.1"]  # the next generation over a tombstone
        assert (folder / lock.LOCK).read_bytes() == before and marked(folder / lock.LOCK)
        assert not marked(lease.paths[folder])
        held = held_record(lease, folder)
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        assert held["token"] == lease.token and lease.lost() is None
        assert held["over"] == (["theirs"] if stale.get("token", "theirs") and stale else [])
        lease.check()
    assert lock_files(folder) == []  # released: the tombstone too, and no temporary files


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
        wait_for(lambda: time.time() - path.stat().st_mtime < 5, 5, "a heartbeat")
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
        a_bytes = a_path.read_bytes()
        with lock.hold([folder]) as b:
            b_since = held_record(b, folder)["since"]
            assert a_path.read_bytes() == a_bytes and marked(a_path)  # B kept A's file, as a tombstone
            a._stop.clear()  # A wakes
            a.start()
            wait_for(lambda: a.lost() is not None, 5, "the lease to be lost")
            why = a.lost()
            assert why is not None and "\n" not in why
            assert why.startswith("sweep 's' was taken over by another driver") and why.endswith("this driver stops")
            assert f"pid {os.getpid()}, since {b_since}" in why
            with pytest.raises(lock.LockLost, match="taken over"):
                a.check()
            a._beating.join(timeout=5)  # A's heartbeat stops on its own: nothing of A writes after this
            assert not a._beating.is_alive()
            assert lock_files(folder) == [lock.LOCK, f"{lock.LOCK}.1"] and a_path.read_bytes() == a_bytes
            b.check()
            assert b.lost() is None
        assert lock_files(folder) == []  # B's release cleared its history, A's tombstone with it
        with pytest.raises(lock.LockLost, match="taken over"):
            a.check()  # a lock is never won back
    assert lock_files(folder) == []  # A's exit recreated nothing


def test_a_paused_holder_whose_file_is_not_yet_marked_stops_and_keeps_its_tombstone(tmp_path):
    """B has linked its generation (naming A's token) but not yet marked A's file: A sees the
    take-over in B's file, its heartbeat leaves its own stale mtime alone, and on exit it removes
    nothing: its file is what B's generation stands on."""
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
    assert lock_files(folder) == [lock.LOCK, f"{lock.LOCK}.1"]  # A removed nothing, not even its own file


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
        assert lock.release(folder, path, taker["token"], lock.walk(folder, 0, 1))
    assert lock_files(folder) == []


def test_of_two_drivers_taking_over_one_stale_lock_exactly_one_wins(tmp_path):
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    stale = (folder / lock.LOCK).read_bytes()
    drivers = [lock.holder() for _ in range(4)]
    seen = {d["token"]: lock.walk(folder) for d in drivers}  # all read the lock as stale ...
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
    assert lock_files(folder) == [lock.LOCK, f"{lock.LOCK}.1"]  # no taker deleted anything
    assert (folder / lock.LOCK).read_bytes() == stale
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
    seen = lock.walk(folder)
    with lock.hold([folder]) as q:
        q_bytes = q.paths[folder].read_bytes()
        assert lock.take(folder, t, seen) is None
        assert lock_files(folder) == [lock.LOCK, q.paths[folder].name]
        assert q.paths[folder].read_bytes() == q_bytes and not marked(q.paths[folder])
        with pytest.raises(UserError, match=re.escape(q.me["since"])):
            lock.acquire(folder, t)
        q.check()


def test_a_paused_taker_whose_history_was_released_meanwhile_withdraws(tmp_path):
    """T reads the stale lock of a dead driver, then pauses; Q takes it over, runs and releases; R
    starts on the emptied folder (generation 0 again); only then does T link generation 1, a free
    name. T finds generation 0 is no longer the file it judged stale (it read an old history),
    withdraws its own, marks nothing, and R keeps its sweep."""
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    t = lock.holder()
    seen = lock.walk(folder)  # T: stale
    with lock.hold([folder]):  # Q
        pass
    with lock.hold([folder]) as r:
        r_path = r.paths[folder]
        assert r_path.name == lock.LOCK
        assert lock.take(folder, t, seen) is None  # T withdraws
        assert lock_files(folder) == [lock.LOCK] and json.loads(r_path.read_text())["token"] == r.token
        assert not marked(r_path)
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
        wait_for(lambda: lease.lost() is not None, 5, "the lease to be lost")
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


def test_a_taker_never_deletes_and_no_generation_is_reused_until_release(tmp_path, monkeypatch):
    """Three take-overs in a row: each links the next number over the files before it, which stay
    byte for byte (tombstones, marked); the holder's release clears the whole history."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600.0)  # the tests age the files; no beat refreshes them
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    made = {lock.LOCK: (folder / lock.LOCK).read_bytes()}
    with contextlib.ExitStack() as stack:
        leases = []
        for n in (1, 2, 3):
            lease = stack.enter_context(lock.hold([folder]))
            path = lease.paths[folder]
            assert path.name == f"{lock.LOCK}.{n}" and path.name not in made  # a new number, never one before
            assert [lock.read_entry(folder / name).identity for name in made] == [
                json.loads(b).get("token") for b in made.values()
            ]
            assert all((folder / name).read_bytes() == data and marked(folder / name) for name, data in made.items())
            assert lock_files(folder) == sorted([*made, path.name])
            made[path.name] = path.read_bytes()
            leases.append(lease)
            age_file(path, 2 * lock.STALE_S)  # the holder pauses: the next one takes over
        first, second, last = leases
        for lost in (first, second):  # every superseded holder is told, naming the newest holder
            with pytest.raises(lock.LockLost, match=re.escape(last.me["since"])):
                lost.check()
        assert held_record(last, folder)["over"] == sorted(["theirs", first.token, second.token])
        os.utime(last.paths[folder])  # the last holder goes on
        last.check()
    assert lock_files(folder) == []


@pytest.mark.parametrize("lagging", ["all", "newest"])
def test_a_driver_whose_view_of_the_folder_lags_cannot_win(tmp_path, monkeypatch, lagging):
    """The race a lagging NFS listing allowed when a taker deleted what it took over: T takes over a
    dead driver's lock; R's client still shows the folder empty (or only the dead lock) and R
    tries to make the name it believes free. The tombstone holds that name, so R's link fails on
    the server, and R is refused without touching T's lock or the tombstone."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600.0)  # T's own beats would read through R's lagging view
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    with lock.hold([folder]) as t:
        t_path = t.paths[folder]
        before = {name: ((folder / name).read_bytes(), (folder / name).stat().st_mode) for name in lock_files(folder)}
        hidden = [lock.LOCK, t_path.name] if lagging == "all" else [t_path.name]
        with monkeypatch.context() as view:
            lagging_view(view, *hidden)
            shown = [e.path.name for e in lock.scan(folder)]  # what the lagging listing shows
            assert shown == ([] if lagging == "all" else [lock.LOCK])
            with pytest.raises(UserError, match="could not take the lock"):
                lock.acquire(folder, lock.holder())
        after = {name: ((folder / name).read_bytes(), (folder / name).stat().st_mode) for name in lock_files(folder)}
        assert after == before and not marked(t_path)
        t.check()
    assert lock_files(folder) == []


def test_a_holder_sees_the_mark_while_the_new_generation_is_hidden_from_it(tmp_path, monkeypatch):
    """A's client still caches the new generation's name as absent; A opens its own file, whose
    attributes close-to-open revalidates, and finds the taker's mark."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600.0)
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        age_file(a.paths[folder], 2 * lock.STALE_S)
        taker = lock.holder()
        path = lock.acquire(folder, taker)
        with monkeypatch.context() as view:
            lagging_view(view, path.name)
            with pytest.raises(lock.LockLost, match=rf"taken over by another driver \(it marked .*{lock.LOCK}\)"):
                a.check()
        assert lock.release(folder, path, taker["token"], lock.walk(folder, 0, 1))
    assert lock_files(folder) == []


def test_a_holder_paused_past_a_release_finds_its_file_gone_and_recreates_nothing(tmp_path, monkeypatch):
    """A pauses; B takes over, finishes and releases (the folder empties); A wakes: its file is
    gone, so it has lost, and nothing it does puts a file back. A fresh driver then starts the
    sweep at generation 0, and A's exit leaves that driver's lock alone."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        a._stop.set()  # paused
        a._beating.join()
        age_file(a.paths[folder], 2 * lock.STALE_S)
        with lock.hold([folder]) as b:
            assert b.paths[folder].name == f"{lock.LOCK}.1"
        assert lock_files(folder) == []
        a._stop.clear()  # A wakes
        a.start()
        wait_for(lambda: a.lost() is not None, 5, "the lease to be lost")
        assert a.lost() == f"sweep 's': this driver's lock {a.paths[folder]} was removed; this driver stops"
        a._beating.join(timeout=5)  # stopped on its own: nothing of A writes after this
        assert not a._beating.is_alive() and lock_files(folder) == []
        with lock.hold([folder]) as c:
            assert c.paths[folder] == a.paths[folder]  # generation 0 again: a new history
            c_bytes = c.paths[folder].read_bytes()
            a.close()  # A's exit, while C holds the name A held
            assert c.paths[folder].read_bytes() == c_bytes
            c.check()
    assert lock_files(folder) == []


def test_a_holder_paused_past_a_release_and_a_new_start_names_the_new_driver(tmp_path, monkeypatch):
    """As above, but a fresh driver C already holds the name A held: A's file is another's now."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600.0)
    folder = tmp_path / "s"
    with lock.hold([folder]) as a:
        age_file(a.paths[folder], 2 * lock.STALE_S)
        with lock.hold([folder]):
            pass
        with lock.hold([folder]) as c:
            assert c.paths[folder] == a.paths[folder]
            with pytest.raises(
                lock.LockLost,
                match=re.escape(
                    f"taken over by another driver (host {c.me['host']}, pid {os.getpid()}, since {c.me['since']})"
                ),
            ):
                a.check()
    assert lock_files(folder) == []


def test_a_holder_whose_history_was_removed_under_it_stops(tmp_path, monkeypatch):
    """Generation 0 removed under a holder of generation 1 frees that name for a fresh driver, so
    two could run: the holder stops instead."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 3600.0)
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=2 * lock.STALE_S)
    with lock.hold([folder]) as a:
        a.check()
        (folder / lock.LOCK).unlink()
        with pytest.raises(
            lock.LockLost, match=re.escape(f"lock files under this driver's {lock.LOCK}.1 were removed")
        ):
            a.check()
    assert lock_files(folder) == []  # not taken over: its own file is still removed at exit


def test_lock_files_are_readable_by_all_whatever_the_umask(tmp_path):
    """A lock that another user's driver cannot read would count as stale there."""
    old = os.umask(0o077)
    try:
        with lock.hold([tmp_path / "s"]) as lease:
            assert stat.S_IMODE(lease.paths[tmp_path / "s"].stat().st_mode) == lock.MODE
    finally:
        os.umask(old)


# --- why not flufl.lock: the two guarantees a sweep needs that it lacks (docs/design.md, "The lock") ---


def flufl_lock(path: Path):
    return pytest.importorskip("flufl.lock").Lock(str(path), lifetime=60)


def test_flufl_lock_lets_a_late_breaker_remove_the_lock_a_take_over_just_made(tmp_path, monkeypatch):
    """Two drivers judge one expired lock; the first breaks it and holds the sweep; the second,
    acting on its older judgement, breaks the first's new lock (``_break`` removes whatever the
    name holds) and holds it too. Ours refuses the second (next test)."""
    old = flufl_lock(tmp_path / "s.lock")
    old.lock()
    age_file(tmp_path / "s.lock", 3600)  # its holder died an hour ago
    a, b = flufl_lock(tmp_path / "s.lock"), flufl_lock(tmp_path / "s.lock")
    both_judged, a_holds, original = threading.Barrier(2), threading.Event(), type(a)._break

    def judged_then_break(self) -> None:
        both_judged.wait()  # both read the lock as expired ...
        if self is b:
            a_holds.wait()  # ... and b acts only once a holds the sweep
        original(self)

    monkeypatch.setattr(type(a), "_break", judged_then_break)
    takers = [
        threading.Thread(target=a.lock, kwargs={"timeout": 30}),
        threading.Thread(target=b.lock, kwargs={"timeout": 30}),
    ]
    takers[0].start()
    takers[1].start()
    takers[0].join()
    a_holds.set()
    takers[1].join()
    assert b.is_locked and not a.is_locked  # both lock() calls returned: a trains on until it checks


def test_our_lock_refuses_a_take_over_judged_before_another_took_over(tmp_path):
    folder = tmp_path / "s"
    write_lock(folder, host="node-b", pid=1, age=3600)
    a, b = lock.holder(), lock.holder()
    seen_by_b = lock.walk(folder)  # b judged the lock stale ...
    assert lock.acquire(folder, a) == folder / f"{lock.LOCK}.1"  # ... a took it over meanwhile
    assert lock.take(folder, b, seen_by_b) is None
    with pytest.raises(UserError, match="being run by another driver"):
        lock.acquire(folder, b)
    assert (
        lock.verdict(folder, folder / f"{lock.LOCK}.1", a["token"], lock.read_entry(folder / f"{lock.LOCK}.1")) is None
    )


def test_flufl_lock_breaks_a_live_lock_from_a_machine_whose_clock_runs_ahead(tmp_path):
    """flufl.lock compares a lock's expiry (its mtime, set by the holder's clock) with the
    breaker's clock: a node an hour fast takes a sweep from a live driver."""
    holder, fast = flufl_lock(tmp_path / "s.lock"), flufl_lock(tmp_path / "s.lock")
    holder.lock()
    fast._now = lambda: datetime.now() + timedelta(hours=1)
    fast.lock(timeout=30)
    assert fast.is_locked and not holder.is_locked


def test_our_lock_is_not_taken_by_a_machine_whose_clock_runs_ahead(tmp_path, monkeypatch):
    """Staleness is judged by the folder's own clock (file mtimes), never the taker's."""
    folder = tmp_path / "s"
    lock.acquire(folder, {**lock.holder(), "host": "node-a"})  # live, on another machine
    now = time.time
    monkeypatch.setattr(time, "time", lambda: now() + 3600)
    with pytest.raises(UserError, match="being run by another driver"):
        lock.acquire(folder, lock.holder())
