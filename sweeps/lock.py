"""One driver per sweep: generations of lock files that are created whole, never rewritten.

Two drivers on one sweep would both train every pending trial and remove each other's
checkpoint folders. So a sweep's folder holds the lock of the one driver that runs it:
``.driver.lock`` (generation 0), or ``.driver.lock.N`` after N take-overs. Each file names its
holder (host, pid, since, a random token) and the tokens of the locks it took over (``over``).

Why this shape (docs/sweeps.md, "One driver per sweep", says it at length):

- A file is created only by ``os.link`` of a fully written temporary file: the link fails if the
  name exists, also on NFS, so of two drivers making the same generation exactly one succeeds,
  and nobody ever reads half a lock.
- A lock is never rewritten: its heartbeat is its mtime, refreshed with ``os.utime`` on an open
  descriptor after checking that the file is still this driver's and that nobody took it over.
  ``utime`` never recreates a file, so a driver that wakes from a pause cannot put its lock back.
- A take-over never renames or deletes what it has not judged stale: it creates the next
  generation, listing the stale tokens in ``over``, checks that no lock it did not see appeared
  meanwhile (else it withdraws its own), and only then removes the stale files it saw.
- A driver has lost its sweep when its file is gone or another file lists its token in ``over``.
  ``Lease.check`` reads that from the files; a heartbeat that finds it, or fails, marks the
  lease lost and stops touching anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from stability.errors import UserError

LOCK = ".driver.lock"
HEARTBEAT_S = 10.0
STALE_S = 60.0
STALE_ENV = "STABILITY_LOCK_STALE_S"
HEARTBEAT_ENV = "STABILITY_LOCK_HEARTBEAT_S"
TRIES = 5


class LockLost(Exception):
    """This driver no longer holds its sweep's lock: it must stop before writing anything more.

    Not a UserError: nothing the user typed was wrong, and the command exits 1."""


def _seconds(env: str, default: float) -> float:
    raw = os.environ.get(env)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{env} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise UserError(f"{env} must be above 0, got {raw!r}")
    return value


def stale_s() -> float:
    """The age after which a silent lock is taken over; read at call time so that tests and
    subprocess drivers can shorten it (the module constant is read at call time too)."""
    return _seconds(STALE_ENV, STALE_S)


def heartbeat_s() -> float:
    """How often a held lock is checked and its mtime refreshed (read at call time, as stale_s)."""
    return _seconds(HEARTBEAT_ENV, HEARTBEAT_S)


def holder() -> dict:
    """Who this driver is: what a refusal or a take-over message names, and the token that
    tells this lease's files from any other's, even one with the same host, pid and name."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(),
        "token": secrets.token_hex(16),
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (OverflowError, ValueError):
        return False
    return True


def lock_path(folder: Path, generation: int) -> Path:
    """Generation 0 keeps the name older versions used, so their lock is seen and respected."""
    return folder / (LOCK if generation == 0 else f"{LOCK}.{generation}")


def generation_of(name: str) -> int | None:
    if name == LOCK:
        return 0
    suffix = name.removeprefix(f"{LOCK}.")
    return int(suffix) if suffix != name and suffix.isdigit() else None


@dataclass(frozen=True)
class Entry:
    """One lock file as read now. ``record`` is {} when unreadable or not a lock (stale)."""

    path: Path
    generation: int
    record: dict
    mtime: float
    identity: str  # the token, or the file's bytes for a token-less file: tells a new file from the one seen

    @property
    def token(self) -> str | None:
        token = self.record.get("token")
        return token if isinstance(token, str) else None

    @property
    def over(self) -> tuple[str, ...]:
        over = self.record.get("over")
        return tuple(t for t in over if isinstance(t, str)) if isinstance(over, list) else ()

    @property
    def valid(self) -> bool:
        return "host" in self.record and "pid" in self.record

    def describe(self) -> str:
        return f"host {self.record.get('host')}, pid {self.record.get('pid')}, since {self.record.get('since')}"


def entry_of(path: Path, generation: int, fd: int) -> Entry:
    """Read through an open descriptor: on NFS, open() revalidates the attributes (close-to-open),
    so the mtime is the server's, not one cached for up to a minute."""
    mtime = os.fstat(fd).st_mtime
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    data = b"".join(chunks)
    try:
        record = json.loads(data)
    except ValueError:
        record = {}
    record = record if isinstance(record, dict) else {}
    token = record.get("token")
    identity = token if isinstance(token, str) else "bytes:" + hashlib.sha256(data).hexdigest()
    return Entry(path, generation, record, mtime, identity)


def read_entry(path: Path) -> Entry | None:
    """The lock file at ``path``, or None when there is none."""
    generation = generation_of(path.name)
    assert generation is not None, path
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:  # unreadable: stale, told apart by its inode and mtime
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        return Entry(path, generation, {}, st.st_mtime, f"stat:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}")
    try:
        return entry_of(path, generation, fd)
    finally:
        os.close(fd)


def scan(folder: Path) -> list[Entry]:
    """Every lock file of the folder, lowest generation first (temporary files are not locks)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = [(g, name) for name in names if (g := generation_of(name)) is not None]
    entries = (read_entry(folder / name) for _, name in sorted(found))
    return [e for e in entries if e is not None]


def superseded(entries: list[Entry]) -> set[str]:
    """Tokens some lock lists as taken over: their holders have lost, whatever their mtime says."""
    return {token for e in entries for token in e.over}


def is_live(entry: Entry, entries: list[Entry], now: float) -> bool:
    """A lock whose holder may still be running: readable, not taken over, refreshed within the
    stale age, and not a dead pid on this host."""
    if not entry.valid or (entry.token is not None and entry.token in superseded(entries)):
        return False
    if now - entry.mtime > stale_s():
        return False
    if entry.record.get("host") != socket.gethostname():
        return True
    try:
        return pid_alive(int(entry.record["pid"]))
    except (TypeError, ValueError):
        return False


def folder_clock(folder: Path, token: str) -> float:
    """Now, as the lock folder's filesystem stamps it: staleness compares mtimes with mtimes, so
    drivers on machines whose clocks differ from an NFS server's still agree on it."""
    probe = folder / f"{LOCK}-{token}.now.tmp"
    try:
        probe.write_bytes(b"")
        return probe.stat().st_mtime
    finally:
        probe.unlink(missing_ok=True)


def create(path: Path, record: dict) -> bool:
    """Make ``path`` hold ``record``, whole, unless it exists: True when this call made it."""
    tmp = path.with_name(f"{LOCK}-{record['token']}.tmp")
    try:
        tmp.write_text(json.dumps(record))
        try:
            os.link(tmp, path)
        except FileExistsError:
            # On NFS a link whose reply was lost is retried and answered "exists" although it
            # succeeded: the temporary file's link count tells (open(2), O_EXCL).
            return os.stat(tmp).st_nlink == 2
        return True
    finally:
        tmp.unlink(missing_ok=True)


def remove_own(path: Path, token: str) -> None:
    """Remove ``path`` only while it is this token's: never another driver's lock."""
    entry = read_entry(path)
    if entry is not None and entry.token == token:
        path.unlink(missing_ok=True)


def remove_seen(entry: Entry) -> None:
    """Remove a stale lock only if it is still the very file judged stale."""
    now = read_entry(entry.path)
    if now is not None and now.identity == entry.identity:
        entry.path.unlink(missing_ok=True)


def remove_leftovers(folder: Path) -> None:
    """Temporary files of drivers killed between writing and linking them (long dead by now)."""
    cutoff = time.time() - 2 * stale_s()
    for tmp in folder.glob(f"{LOCK}-*.tmp"):
        with contextlib.suppress(OSError):
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()


def refusal(folder: Path, entry: Entry) -> UserError:
    return UserError(
        f"sweep {folder.name!r} is being run by another driver ({entry.describe()}); wait for it or stop it, then rerun"
    )


def take(folder: Path, me: dict, seen: list[Entry]) -> Path | None:
    """Create the next generation over the locks ``seen`` (all judged stale by the caller).

    None when another driver made that generation first, or a lock not in ``seen`` appeared
    meanwhile (a fresh one, made after the folder emptied): then this driver's file is withdrawn
    and nothing else is touched."""
    generation = max((e.generation for e in seen), default=-1) + 1
    path = lock_path(folder, generation)
    record = {**me, "over": sorted({e.token for e in seen if e.token is not None})}
    if not create(path, record):
        return None
    known = {e.identity for e in seen}
    if any(e.path != path and e.identity not in known for e in scan(folder)):
        remove_own(path, me["token"])
        return None
    for entry in seen:
        remove_seen(entry)
    remove_leftovers(folder)
    return path


def acquire(folder: Path, me: dict) -> Path:
    """Take the sweep's lock, or raise a UserError naming the driver that holds it.
    Returns the lock file now held."""
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(TRIES):
        now = folder_clock(folder, me["token"])
        seen = scan(folder)
        live = [e for e in seen if is_live(e, seen, now)]
        if live:
            raise refusal(folder, live[-1])
        path = take(folder, me, seen)
        if path is not None:
            return path
        time.sleep(random.uniform(0.01, 0.1) * (attempt + 1))  # another driver moved first: look again
    raise UserError(f"could not take the lock of sweep {folder.name!r}; other drivers keep taking it")


def verdict(folder: Path, path: Path, token: str, mine: Entry | None) -> str | None:
    """None while ``path`` (read as ``mine``) is this token's and no lock lists it as taken over;
    else the one line saying who took the sweep."""
    entries = scan(folder)
    takers = [e for e in entries if token in e.over]
    gone = mine is None or mine.token != token
    others = [e for e in entries if e.valid and e.token != token] if gone else []
    if takers or others:
        taker = (takers or others)[-1]
        return f"sweep {folder.name!r} was taken over by another driver ({taker.describe()}); this driver stops"
    if gone:
        return f"sweep {folder.name!r}: this driver's lock {path} was removed; this driver stops"
    return None


def refresh(folder: Path, path: Path, token: str) -> str | None:
    """One heartbeat: check the lock is still this driver's, then refresh its mtime through the
    descriptor just checked (never by name: the name may by now be another file, or none)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return verdict(folder, path, token, None)
    try:
        why = verdict(folder, path, token, entry_of(path, generation_of(path.name) or 0, fd))
        if why is None:
            os.utime(fd if os.utime in os.supports_fd else path)
        return why
    finally:
        os.close(fd)


class Lease:
    """The locks of one command's sweeps, held together; what the engine asks before it writes."""

    def __init__(self, folders: list[Path], me: dict) -> None:
        self.folders = list(folders)
        self.me = me
        self.token: str = me["token"]
        self.paths: dict[Path, Path] = {}  # folder -> the lock file this lease holds there
        self._lost: str | None = None
        self._guard = threading.Lock()  # one beat or check at a time: none touches a lost lock
        self._stop = threading.Event()
        self._beating: threading.Thread | None = None

    def lost(self) -> str | None:
        """None while every lock is held; else one line saying who took which sweep."""
        return self._lost

    def check(self) -> None:
        """Read the lock files now; raise LockLost if any sweep was taken over (or the lease was
        already found lost: a lock is never won back)."""
        with self._guard:
            for folder, path in self.paths.items():
                if self._lost is None:
                    self._mark(verdict(folder, path, self.token, read_entry(path)))
        if self._lost is not None:
            raise LockLost(self._lost)

    def _mark(self, why: str | None) -> None:
        if why is not None and self._lost is None:
            self._lost = " ".join(why.split())  # one line, whatever an exception's text holds
            self._stop.set()

    def _beat(self) -> None:
        with self._guard:
            for folder, path in self.paths.items():
                if self._lost is not None:
                    return
                try:
                    self._mark(refresh(folder, path, self.token))
                except Exception as error:  # a dead heartbeat would let the lock go stale under us
                    self._mark(
                        f"sweep {folder.name!r}: the lock's heartbeat failed ({type(error).__name__}: {error}); "
                        "this driver stops"
                    )

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            self._beat()

    def start(self) -> None:
        period = heartbeat_s()
        self._beating = threading.Thread(target=self._run, args=(period,), name="sweep-lock-heartbeat", daemon=True)
        self._beating.start()

    def close(self) -> None:
        """Stop the heartbeat (a beat still running finishes first), then remove this lease's own
        files; a file another driver now holds is left alone."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        for path in self.paths.values():
            remove_own(path, self.token)


@contextlib.contextmanager
def hold(folders: list[Path]) -> Iterator[Lease]:
    """Lock every sweep folder of a command (all or none), keeping the locks alive until done."""
    lease = Lease(folders, holder())
    try:
        for folder in lease.folders:
            lease.paths[folder] = acquire(folder, lease.me)
        lease.start()
        yield lease
    finally:
        lease.close()


def held(folder: Path, path: Path, token: str) -> str | None:
    """For a trial process, which has no Lease: None while the driver's lock at ``path`` is still
    its own, else the line saying who took the sweep. A trial checks it every epoch and before
    it writes its result, so the trials of a paused driver whose sweep was taken over stop
    instead of racing the new driver's trials."""
    return verdict(folder, path, token, read_entry(path))
