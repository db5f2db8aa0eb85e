"""The parquet results store (DESIGN section 6): every path, write and read of its files.

    <root>/<sweep>/manifest.parquet          one row per planned trial, written before any trial
    <root>/<sweep>/trials/<trial_id>.parquet one row per finished trial
    <root>/<sweep>/curves/<trial_id>.parquet one row per epoch
    <root>/<sweep>/checkpoints/<trial_id>/   the last epoch checkpoint of an unfinished trial
    <root>/<sweep>/quarantine/               unreadable result files, set aside (never deleted)

Every file is written under a temporary name in its folder and renamed into place, so a
reader sees either no file or a whole one. A trial's curve is written before its trial row:
the trial row is the commit marker that says the trial is done.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd

from stability.errors import UserError
from store.schema import CURVE, NULLABLE


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
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


def trial_frame(row: dict) -> pd.DataFrame:
    frame = pd.DataFrame([row])
    for col, dtype in NULLABLE.items():
        if col in frame:
            frame[col] = frame[col].astype(dtype)
    return frame


class Store:
    """One results root; every path and write of the store goes through here."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def sweep_dir(self, sweep: str) -> Path:
        return self.root / sweep

    def manifest_path(self, sweep: str) -> Path:
        return self.root / sweep / "manifest.parquet"

    def trial_path(self, sweep: str, trial_id: str) -> Path:
        return self.root / sweep / "trials" / f"{trial_id}.parquet"

    def curve_path(self, sweep: str, trial_id: str) -> Path:
        return self.root / sweep / "curves" / f"{trial_id}.parquet"

    def checkpoint_dir(self, sweep: str, trial_id: str) -> Path:
        return self.root / sweep / "checkpoints" / trial_id

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
        write_parquet_atomic(manifest, self.manifest_path(sweep))

    def write_trial(self, sweep: str, row: dict, curve: list[dict]) -> None:
        trial_id = row["trial_id"]
        points = pd.DataFrame(curve, columns=CURVE)
        points.insert(0, "trial_id", trial_id)
        points.insert(0, "sweep", sweep)
        write_parquet_atomic(points, self.curve_path(sweep, trial_id))
        write_parquet_atomic(trial_frame(row), self.trial_path(sweep, trial_id))
        shutil.rmtree(self.checkpoint_dir(sweep, trial_id), ignore_errors=True)

    def read_trial(self, sweep: str, trial_id: str) -> dict:
        return pd.read_parquet(self.trial_path(sweep, trial_id)).iloc[0].to_dict()

    def read_trials(self, sweep: str) -> tuple[pd.DataFrame, list[Path]]:
        """The sweep's readable trial rows as one table, and the unreadable result files."""
        return read_trial_files(sorted((self.root / sweep / "trials").glob("*.parquet")))

    def finished(self, sweep: str) -> tuple[set[str], list[Path]]:
        """Trial ids with a readable result, and the unreadable result files."""
        trials, bad = self.read_trials(sweep)
        return set(trials["trial_id"]), bad

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable file aside so that its trial runs again; the bytes are kept."""
        dest = path.parents[1] / "quarantine" / f"{path.parent.name}-{path.name}.{int(time.time())}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest
