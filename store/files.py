"""The parquet results store (docs/design.md, "The store"): every path, write and read of its files.

    <root>/<sweep>/manifest.parquet          one row per planned trial, written before any trial
    <root>/<sweep>/trials/<trial_id>.parquet one row per finished trial
    <root>/<sweep>/curves/<trial_id>.parquet one row per epoch
    <root>/<sweep>/checkpoints/<trial_id>/   the last epoch checkpoint of an unfinished or failed trial
    <root>/<sweep>/quarantine/               unreadable result and checkpoint files, set aside (never deleted)
    <root>/<sweep>/command.txt               the command line that last ran the sweep (what retries it)

Every file is written under a temporary name in its folder and renamed into place, so a
reader sees either no file or a whole one. A trial's curve is written before its trial row:
the trial row is the commit marker that says the trial is done. A ``failed`` row is a
record, not an outcome: its checkpoint is kept and the next run of the sweep retries it.

A new name (a sweep, a study, a trial id) is one path component of safe characters
(``check_name``, applied where names are made); every name that becomes a path is one path
component, and every path is checked to lie under the root, so no name a user gives can write
outside the results folder they named.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from store.errors import UserError
from store.schema import CURVE, NULLABLE, TOP1_ERR, metric_of

NAME_RULE = "one path component of letters, digits, '.', '_' and '-' (not '.' or '..')"
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")


def check_name(name: str, what: str = "name") -> str:
    """``name`` if it is one safe path component, else a UserError naming the rule."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        raise UserError(f"{what} {name!r} is not allowed: a {what} is {NAME_RULE}")
    return name


def component(name: str, what: str) -> str:
    """``name`` if it is one path component (no separator, not '.' or '..'). Folders already in a
    store may hold names from before ``check_name`` (a space, '+', '='): they stay readable."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\0" in name:
        raise UserError(f"{what} {name!r} is not allowed: a {what} is {NAME_RULE}")
    return name


def inside(root: Path, path: Path) -> Path:
    """``path`` if it lies under ``root``, else a UserError: nothing is written elsewhere. Judged on
    the absolute paths as written (not resolved), so a sweep folder that is a symlink to scratch
    space stays usable."""
    absolute = Path(os.path.normpath(os.path.abspath(path)))
    if not absolute.is_relative_to(os.path.normpath(os.path.abspath(root))):
        raise UserError(f"{path} lies outside {root}; nothing is written there")
    return path


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary name beside ``path``, fsynced, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_trial_files(paths: list[Path]) -> tuple[pd.DataFrame, list[Path]]:
    """The one reader of trial rows: a readable file holds one row for the trial it is named
    after. Returns the rows as one table and the files that are not readable."""
    frames: list[pd.DataFrame] = []
    bad: list[Path] = []
    for path in paths:
        try:
            frame = pd.read_parquet(path)
            if len(frame) != 1 or frame["trial_id"].iloc[0] != path.stem:
                raise ValueError("not one row for this trial")
            frames.append(frame)
        except Exception:
            bad.append(path)
    empty = pd.DataFrame(columns=["trial_id", "status", "top1_err"])
    return (pd.concat(frames, ignore_index=True) if frames else empty), bad


def curve_columns(row: dict, curve: list[dict]) -> list[str]:
    """The built-in trainer's curve columns (``schema.CURVE``); for any other metric, the epoch
    and whatever the trial reported, in the order first reported."""
    if metric_of(row) == TOP1_ERR:
        return CURVE
    return ["epoch", *(k for k in dict.fromkeys(k for point in curve for k in point) if k != "epoch")]


def typed_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows as a table in the schema's nullable dtypes (``NULLABLE``), so every file has one schema."""
    frame = pd.DataFrame(rows)
    for col, dtype in NULLABLE.items():
        if col in frame:
            frame[col] = frame[col].astype(dtype)
    return frame


class Store:
    """One results root; every path and write of the store goes through here."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def sweep_dir(self, sweep: str) -> Path:
        return inside(self.root, self.root / component(sweep, "sweep name"))

    def _trial_file(self, sweep: str, kind: str, trial_id: str, suffix: str = "") -> Path:
        return inside(self.root, self.sweep_dir(sweep) / kind / f"{component(trial_id, 'trial id')}{suffix}")

    def manifest_path(self, sweep: str) -> Path:
        return self.sweep_dir(sweep) / "manifest.parquet"

    def command_path(self, sweep: str) -> Path:
        return self.sweep_dir(sweep) / "command.txt"

    def trial_path(self, sweep: str, trial_id: str) -> Path:
        return self._trial_file(sweep, "trials", trial_id, ".parquet")

    def curve_path(self, sweep: str, trial_id: str) -> Path:
        return self._trial_file(sweep, "curves", trial_id, ".parquet")

    def checkpoint_dir(self, sweep: str, trial_id: str) -> Path:
        return self._trial_file(sweep, "checkpoints", trial_id)

    def quarantine_dir(self, sweep: str) -> Path:
        return self.sweep_dir(sweep) / "quarantine"

    def check_writable(self) -> None:
        """Fail early, before anything is written, if the root cannot hold results."""
        probe = self.root
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
            raise UserError(f"results folder {self.root} is not writable")

    def sweeps(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob("*/manifest.parquet"))

    def read_manifest(self, sweep: str) -> pd.DataFrame | None:
        path = self.manifest_path(sweep)
        return pd.read_parquet(path) if path.exists() else None

    def write_manifest(self, sweep: str, manifest: pd.DataFrame) -> None:
        write_atomic(self.manifest_path(sweep), lambda tmp: manifest.to_parquet(tmp, index=False))

    def write_trial(self, sweep: str, row: dict, curve: list[dict]) -> None:
        trial_id = row["trial_id"]
        points = pd.DataFrame(curve, columns=curve_columns(row, curve))
        points.insert(0, "trial_id", trial_id)
        points.insert(0, "sweep", sweep)
        write_atomic(self.curve_path(sweep, trial_id), lambda tmp: points.to_parquet(tmp, index=False))
        write_atomic(self.trial_path(sweep, trial_id), lambda tmp: typed_frame([row]).to_parquet(tmp, index=False))
        if row.get("status") != "failed":  # a failed trial is retried from it by the next run
            shutil.rmtree(self.checkpoint_dir(sweep, trial_id), ignore_errors=True)

    def write_command(self, sweep: str, command: str) -> None:
        """Remember the command line that ran the sweep, so that ``status`` can name what retries it."""
        write_atomic(self.command_path(sweep), lambda tmp: tmp.write_text(command + "\n"))

    def read_command(self, sweep: str) -> str | None:
        path = self.command_path(sweep)
        return path.read_text().strip() if path.exists() else None

    def read_trial(self, sweep: str, trial_id: str) -> dict:
        return pd.read_parquet(self.trial_path(sweep, trial_id)).iloc[0].to_dict()

    def read_trials(self, sweep: str) -> tuple[pd.DataFrame, list[Path]]:
        """The sweep's readable trial rows as one table, and the unreadable result files."""
        return read_trial_files(sorted((self.root / sweep / "trials").glob("*.parquet")))

    def has_outcome(self, sweep: str, trial_id: str) -> bool:
        """Whether the trial has a readable result that is an outcome (not a ``failed`` record)."""
        path = self.trial_path(sweep, trial_id)
        if not path.exists():
            return False
        rows, _ = read_trial_files([path])
        return len(rows) == 1 and rows["status"].iloc[0] != "failed"

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable result file aside so that its trial runs again; the bytes are kept."""
        return set_aside(path, self.quarantine_dir(path.parents[1].name))


def set_aside(path: Path, folder: Path) -> Path:
    """Move an unreadable file (a result, a checkpoint) into a quarantine folder, named after
    the folder it came from and the time; its bytes are kept for a post-mortem, never deleted."""
    dest = folder / f"{path.parent.name}-{path.name}.{int(time.time())}"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):  # another process (a data-parallel rank) set it aside first
        os.replace(path, dest)
    return dest
