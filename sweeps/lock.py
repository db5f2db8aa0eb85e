"""One driver per sweep: a history of lock files, each created whole by ``link`` and never rewritten.

Two drivers on one sweep would both train every pending trial and remove each other's
checkpoint folders. So a sweep's folder holds the lock of the one driver that runs it:
``.driver.lock`` (generation 0), or ``.driver.lock.N`` after N take-overs. Each file names its
holder (host, pid, since, a random token) and the tokens of the locks it took over (``over``).

Why this shape (docs/sweeps.md, "One driver per sweep", says it at length):

- Every conflict is decided by ``os.link`` of a fully written temporary file onto one name: the
  NFS server makes a name exclusively and atomically, so of two drivers making the same
  generation exactly one succeeds, and nobody ever reads half a lock.
- Generation g is made only by a driver that has read generations 0 .. g-1 by ``open`` (which
  NFS close-to-open consistency revalidates) and judged every one stale. Directory listings and
  cached lookups may lag by a minute on NFS; no decision rests on them.
- A taker never deletes: superseded files stay as tombstones, so a generation number is never
  reused while anyone may still act on that history, and a driver with a stale view of the folder
  only ever tries to link a name that exists (and fails). The taker then clears the write bits of
  the files it took over: the old holder sees that mark on its own file, which ``open``
  revalidates, even while its client still hides the new generation's name.
- Only the holder clears the history, at release: the generations it read when it took the lock
  (lowest first), then its own. A driver that has lost removes nothing.
- A lock's heartbeat is its mtime, refreshed with ``os.utime`` on a descriptor just checked;
  ``utime`` never recreates a file, so a driver that wakes from a pause cannot put a lock back.
- A driver has lost its sweep when its file is gone or another's, is marked, is listed in a later
  generation's ``over``, or when the generations under it are gone (its history was cleared under
  it). ``Lease.check`` reads that from the files; a heartbeat that finds it, or fails, marks the
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
import stat
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
MODE = 0o644  # every lock is made readable by all: a lock another user cannot read counts as stale


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
    mode: int = MODE  # permission bits: a taker clears the write bits of what it took over

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

    @property
    def marked(self) -> bool:
        """Taken over: the taker cleared the write bits. Read from the file itself, whose attributes
        ``open`` revalidates, so the old holder sees it even while the new generation's name is
        still hidden from its client by a cached lookup."""
        return not self.mode & stat.S_IWUSR

    def describe(self) -> str:
        return f"host {self.record.get('host')}, pid {self.record.get('pid')}, since {self.record.get('since')}"


def entry_of(path: Path, generation: int, fd: int) -> Entry:
    """Read through an open descriptor: on NFS, open() revalidates the attributes (close-to-open),
    so the mtime and mode are the server's, not ones cached for up to a minute."""
    st = os.fstat(fd)
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
    return Entry(path, generation, record, st.st_mtime, identity, stat.S_IMODE(st.st_mode))


def read_entry(path: Path) -> Entry | None:
    """The lock file at ``path``, opened by name, or None when there is none."""
    generation = generation_of(path.name)
    assert generation is not None, path
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:  # unreadable: stale, told apart by its inode
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        identity = f"stat:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        return Entry(path, generation, {}, st.st_mtime, identity, stat.S_IMODE(st.st_mode))
    try:
        return entry_of(path, generation, fd)
    finally:
        os.close(fd)


def revalidate(folder: Path) -> None:
    """Open the folder itself. A Linux NFS client revalidates a directory's attributes when it is
    opened (close-to-open), and a changed directory makes it look up again the names it had cached
    as absent, so the opens by name that follow see files other machines made. The protocol is
    safe without this (``link`` decides); it makes a take-over seen sooner."""
    with contextlib.suppress(OSError):
        os.close(os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)))


def walk(folder: Path, start: int = 0, stop: int | None = None) -> list[Entry]:
    """Generations ``start``, ``start + 1``, ... (before ``stop``), each opened by name, up to the
    first that is absent: the history as this driver can read it, without trusting a listing."""
    revalidate(folder)
    entries: list[Entry] = []
    generation = start
    while stop is None or generation < stop:
        entry = read_entry(lock_path(folder, generation))
        if entry is None:
            break
        entries.append(entry)
        generation += 1
    return entries


def scan(folder: Path) -> list[Entry]:
    """Every lock file the folder's listing shows, lowest generation first: for diagnostics and
    tests only, since a listing on NFS may lag; every decision reads by ``walk`` and ``link``."""
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
    """A lock whose holder may still be running: readable, not taken over (listed or marked),
    refreshed within the stale age, and not a dead pid on this host."""
    if not entry.valid or entry.marked or (entry.token is not None and entry.token in superseded(entries)):
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
    """Make ``path`` hold ``record``, whole, unless it exists: True when this call made it.
    The server decides between drivers that link the same name at once."""
    tmp = path.with_name(f"{LOCK}-{record['token']}.tmp")
    try:
        tmp.write_text(json.dumps(record))
        os.chmod(tmp, MODE)  # whatever the umask: writable by its holder (not marked), readable by all
        try:
            os.link(tmp, path)
        except FileExistsError:
            # On NFS a link whose reply was lost is retried and answered "exists" although it
            # succeeded: the temporary file's link count tells (open(2), O_EXCL).
            return os.stat(tmp).st_nlink == 2
        return True
    finally:
        tmp.unlink(missing_ok=True)


def unchanged(entry: Entry) -> bool:
    """The file at ``entry.path`` is still the one read as ``entry``."""
    now = read_entry(entry.path)
    return now is not None and now.identity == entry.identity


def taken_from(folder: Path, entry: Entry, token: str) -> bool:
    """Whether a driver took ``entry`` (this token's file) over: it marked it, or a later
    generation lists the token in ``over``."""
    return entry.marked or any(token in e.over for e in walk(folder, entry.generation + 1))


def mark(entry: Entry) -> None:
    """Clear the write bits of a file just taken over. Best effort: only its owner may chmod it;
    without the mark, its holder still finds its token in the new generation's ``over``."""
    if not entry.marked:
        with contextlib.suppress(OSError):
            os.chmod(entry.path, entry.mode & ~0o222)


def remove_own(path: Path, token: str) -> bool:
    """Remove ``path`` only while it is this token's and nobody took it over: a superseded file is
    what the generations above it stand on, and removing it would free its name for reuse."""
    entry = read_entry(path)
    if entry is None or entry.token != token or taken_from(path.parent, entry, token):
        return False
    path.unlink(missing_ok=True)
    return True


def remove_seen(entry: Entry) -> bool:
    """Remove a tombstone only if it is still the very file read as ``entry``: True when it is
    gone now, False when another file holds its name (then the caller stops clearing)."""
    now = read_entry(entry.path)
    if now is None:
        return True
    if now.identity != entry.identity:
        return False
    entry.path.unlink(missing_ok=True)
    return True


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
    """Create the generation after ``seen`` (``walk``'s history, all judged stale by the caller).

    Nothing is deleted: the files seen stay as tombstones, so the name linked here can only be
    free if nobody made it yet. None when another driver linked it first (a driver whose view of
    the folder lags lands here too), or when a file seen is no longer the one read (the history
    was released and begun again since: this driver's read is out of date), then its own new
    file is withdrawn. Else the files seen are marked taken over."""
    generation = seen[-1].generation + 1 if seen else 0
    path = lock_path(folder, generation)
    record = {**me, "over": sorted({e.token for e in seen if e.token is not None})}
    if not create(path, record):
        return None
    if not all(unchanged(e) for e in seen):
        remove_own(path, me["token"])
        return None
    for entry in seen:
        mark(entry)
    remove_leftovers(folder)
    return path


def claim(folder: Path, me: dict) -> tuple[Path, list[Entry]]:
    """Take the sweep's lock, or raise a UserError naming the driver that holds it. Returns the
    lock file now held and the generations under it, which this driver clears at release."""
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(TRIES):
        now = folder_clock(folder, me["token"])
        seen = walk(folder)
        live = [e for e in seen if is_live(e, seen, now)]
        if live:
            raise refusal(folder, live[-1])
        path = take(folder, me, seen)
        if path is not None:
            return path, seen
        time.sleep(random.uniform(0.01, 0.1) * (attempt + 1))  # another driver moved first: look again
    raise UserError(f"could not take the lock of sweep {folder.name!r}; other drivers keep taking it")


def acquire(folder: Path, me: dict) -> Path:
    """Take the sweep's lock (as ``claim``); returns the lock file now held."""
    return claim(folder, me)[0]


def taken_over(folder: Path, taker: Entry) -> str:
    return f"sweep {folder.name!r} was taken over by another driver ({taker.describe()}); this driver stops"


def verdict(folder: Path, path: Path, token: str, mine: Entry | None) -> str | None:
    """None while ``path`` (read as ``mine``) is this token's, nobody took it over, and the
    generations under it are all there; else the one line saying why this driver stops."""
    generation = generation_of(path.name)
    assert generation is not None, path
    if mine is None or mine.token != token:
        others = [e for e in walk(folder) if e.valid and e.token != token]
        if others:
            return taken_over(folder, others[-1])
        return f"sweep {folder.name!r}: this driver's lock {path} was removed; this driver stops"
    takers = [e for e in walk(folder, generation + 1) if token in e.over]
    if takers:
        return taken_over(folder, takers[-1])
    if mine.marked:
        return (
            f"sweep {folder.name!r} was taken over by another driver (it marked this driver's lock {path.name}); "
            "this driver stops"
        )
    if len(walk(folder, 0, generation)) < generation:
        # Whoever removed them freed generation 0 for a fresh driver: two could then run.
        return (
            f"sweep {folder.name!r}: the lock files under this driver's {path.name} were removed, "
            "so another driver may start the sweep; this driver stops"
        )
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


def release(folder: Path, path: Path, token: str, below: list[Entry]) -> bool:
    """Clear the sweep's history, if this driver still holds it: the generations under its own
    that it read when it took the lock, lowest first, then its own file. Lowest first, so that any
    tombstone still there has its successor above it, which tells a paused old holder it lost.
    A driver that was taken over removes nothing; one that finds a name under it now held by
    another file stops clearing and keeps its own file (a later driver takes it over as stale).
    True when everything was removed."""
    mine = read_entry(path)
    if mine is None or mine.token != token or taken_from(folder, mine, token):
        return False
    if not all(remove_seen(entry) for entry in below):  # all() stops at the first it must keep
        return False
    return remove_own(path, token)


class Lease:
    """The locks of one command's sweeps, held together; what the engine asks before it writes."""

    def __init__(self, folders: list[Path], me: dict) -> None:
        self.folders = list(folders)
        self.me = me
        self.token: str = me["token"]
        self.paths: dict[Path, Path] = {}  # folder -> the lock file this lease holds there
        self.below: dict[Path, list[Entry]] = {}  # folder -> the tombstones under it, cleared at release
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
        """Stop the heartbeat (a beat still running finishes first), then release each sweep this
        lease still holds; the files of a sweep it lost are left as they are."""
        self._stop.set()
        if self._beating is not None:
            self._beating.join()
        with self._guard:
            for folder, path in self.paths.items():
                release(folder, path, self.token, self.below.get(folder, []))


@contextlib.contextmanager
def hold(folders: list[Path]) -> Iterator[Lease]:
    """Lock every sweep folder of a command (all or none), keeping the locks alive until done."""
    lease = Lease(folders, holder())
    try:
        for folder in lease.folders:
            lease.paths[folder], lease.below[folder] = claim(folder, lease.me)
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
