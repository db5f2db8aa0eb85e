"""Read a results root (any number of sweeps) as DataFrames; unreadable files are reported.

Trial rows go through the store's one reader (``store.read_trial_files``), so analysis sees
exactly the rows the sweep engine counts as finished.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from store import read_trial_files


class UnreadableResultWarning(UserWarning):
    """A result file in the store could not be read; it is skipped and named."""


def _warn(paths: list[Path]) -> None:
    for path in paths:
        warnings.warn(f"unreadable result file {path}", UnreadableResultWarning, stacklevel=3)


def _read_all(paths: list[Path]) -> pd.DataFrame:
    frames, bad = [], []
    for path in paths:
        try:
            frames.append(pd.read_parquet(path))
        except Exception:
            bad.append(path)
    _warn(bad)
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_trials(results_root: str | os.PathLike, *, first: int | None = None) -> pd.DataFrame:
    """One row per finished trial of every sweep under the root. ``first``: only each EDF sweep's
    first K draws (index below K), to see what a smaller budget would have said (the draws are a
    sweep's prefix, whatever its final length); grid points and noise runs are kept whole."""
    trials, bad = read_trial_files(sorted(Path(results_root).glob("*/trials/*.parquet")))
    _warn(bad)
    if first is not None and len(trials):
        from analysis.experiments import EDF_SAMPLERS

        grid_or_noise = (
            ~trials["sampler"].isin(EDF_SAMPLERS) | trials.get("noise_of", pd.Series(index=trials.index)).notna()
        )
        trials = trials[grid_or_noise | (trials["index"] < first)].reset_index(drop=True)
    return trials if len(trials) else pd.DataFrame()


def load_curves(results_root: str | os.PathLike) -> pd.DataFrame:
    """One row per epoch of every finished trial under the root."""
    return _read_all(sorted(Path(results_root).glob("*/curves/*.parquet")))
