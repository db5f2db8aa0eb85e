"""One driver per sweep: a lock file in the sweep's folder, with a heartbeat.

Two drivers on one sweep would both train every pending trial and remove each other's
checkpoint folders. The lock names its holder (host, pid, since when) and is refreshed every
``HEARTBEAT_S``; a lock whose holder is gone is taken over: on the same host when its pid is
not alive, anywhere when its heartbeat is older than ``STALE_S`` (a driver on another host,
or a reused pid). Created with ``os.link``, which fails if the name exists, also on NFS.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from stability.errors import UserError

LOCK = ".driver.lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0


def holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": datetime.now(UTC).isoformat()}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_stale(lock: dict, now: float) -> bool:
    if now - lock.get("heartbeat", 0.0) > STALE_S:
        return True
    return lock.get("host") == socket.gethostname() and not pid_alive(int(lock.get("pid", -1)))


def write_atomic(path: Path, content: dict) -> Path:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(content))
    return tmp


def read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: its heartbeat reads as 0, so it is stale


def acquire(folder: Path, me: dict) -> None:
    """Take the sweep's lock or raise a UserError naming the driver that holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    for _ in range(3):
        tmp = write_atomic(path, {**me, "heartbeat": time.time()})
        try:
            os.link(tmp, path)
            return
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        current = read_lock(path)
        if current is None:
            continue  # released meanwhile
        if not is_stale(current, time.time()):
            raise UserError(
                f"sweep {folder.name!r} is being run by another driver (host {current.get('host')}, pid "
                f"{current.get('pid')}, since {current.get('since')}); wait for it or stop it, then rerun"
            )
        # Move the stale lock aside: of two drivers taking it over, exactly one rename succeeds.
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, path.with_name(f"{LOCK}.stale.{os.getpid()}"))
            path.with_name(f"{LOCK}.stale.{os.getpid()}").unlink()
    raise UserError(f"could not take the lock {path}; another driver keeps taking it")


def release(folder: Path, me: dict) -> None:
    path = folder / LOCK
    current = read_lock(path)
    if current and all(current.get(k) == me[k] for k in ("host", "pid", "since")):
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def hold(folders: list[Path]) -> Iterator[None]:
    """Lock every sweep folder of a command (all or none), refreshing the heartbeats until done."""
    me, taken = holder(), []
    stop = threading.Event()
    beating: threading.Thread | None = None
    try:
        for folder in folders:
            acquire(folder, me)
            taken.append(folder)

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                for folder in taken:
                    path = folder / LOCK
                    tmp = write_atomic(path, {**me, "heartbeat": time.time()})
                    os.replace(tmp, path)

        beating = threading.Thread(target=beat, name="sweep-lock-heartbeat", daemon=True)
        beating.start()
        yield
    finally:
        stop.set()
        if beating is not None:
            beating.join()  # a beat still writing would put the lock back after its release
        for folder in taken:
            release(folder, me)
