"""The EDF sweeps of a results folder for the commands that read one (`stability power`,
`stability transfer`), with the user's mistakes refused before anything is computed."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from stability.errors import UserError


def edf_sweeps(results: str, named=()) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The folder's trials and EDF sweeps; a missing folder, or a ``named`` sweep it does not
    hold, is one user error."""
    from analysis import experiments, load_trials

    if not Path(results).is_dir():
        raise UserError(f"no results folder {results!r}; run `stability sweep` first or pass --results")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable files: `stability status` names them
        trials = load_trials(results)
    sets = experiments.edf_sets(trials) if not trials.empty else {}
    missing = [n for n in named if n not in sets]
    if missing:
        held = ", ".join(sorted(sets)) or "none"
        raise UserError(f"no EDF sweep {missing[0]!r} in {results!r}; it holds {held}")
    return trials, sets
