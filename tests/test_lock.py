"""One driver per sweep: the lock's refusals and take-overs, without Ray."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from stability.errors import UserError
from sweeps import lock


def write_lock(folder, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "pid": os.getpid(), "since": "earlier", "heartbeat": time.time()}
    (folder / lock.LOCK).write_text(json.dumps({**base, **fields}))


def test_a_live_driver_on_this_host_is_refused(tmp_path):
    write_lock(tmp_path / "s")  # this very process: alive, fresh
    with pytest.raises(UserError, match=rf"host {socket.gethostname()}, pid {os.getpid()}, since earlier"):
        lock.acquire(tmp_path / "s", lock.holder())


def test_a_driver_elsewhere_is_refused_while_its_heartbeat_is_fresh(tmp_path):
    write_lock(tmp_path / "s", host="node-b", pid=1, heartbeat=time.time() - lock.STALE_S / 2)
    with pytest.raises(UserError, match="host node-b, pid 1"):
        lock.acquire(tmp_path / "s", lock.holder())


@pytest.mark.parametrize(
    "stale",
    [
        {"host": "node-b", "pid": 1, "heartbeat": time.time() - 2 * lock.STALE_S},  # elsewhere, silent
        {"pid": 2**22 + 17},  # this host, no such process
        {},  # unreadable below
    ],
)
def test_a_stale_lock_is_taken_over_and_released(tmp_path, stale):
    folder = tmp_path / "s"
    write_lock(folder, **stale)
    if not stale:
        (folder / lock.LOCK).write_text("{half a lock")
    with lock.hold([folder]):
        held = json.loads((folder / lock.LOCK).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert not (folder / lock.LOCK).exists()
    assert [p.name for p in folder.iterdir()] == []  # no temporary or stale files left


def test_locks_are_all_or_none(tmp_path):
    write_lock(tmp_path / "b", host="node-b")
    with pytest.raises(UserError), lock.hold([tmp_path / "a", tmp_path / "b"]):
        pass
    assert not (tmp_path / "a" / lock.LOCK).exists()  # the first one was given back


def test_the_heartbeat_refreshes_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    with lock.hold([tmp_path / "s"]):
        first = json.loads((tmp_path / "s" / lock.LOCK).read_text())["heartbeat"]
        time.sleep(0.3)
        assert json.loads((tmp_path / "s" / lock.LOCK).read_text())["heartbeat"] > first
