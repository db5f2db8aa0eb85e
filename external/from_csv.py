"""A CSV file (a tracker's export), one trial per row, read through ``pandas.read_csv``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from external.source import Source, Trial, observed_space, one_line, outcome, scaled
from store.errors import UserError
from store.schema import Metric, worst


def read_csv(path: str, *, metric: str, direction: str, params: dict[str, str | None],
             diverged: float | None = None) -> Source:  # fmt: skip
    """A CSV file (a tracker's export): one trial per row, in order; ``metric`` names the value's
    column (an empty cell: the trial failed; NaN or inf: it diverged), ``params`` the
    hyperparameters' columns and scales."""
    file = Path(path).resolve()
    if not file.is_file():
        raise UserError(f"no CSV file {file}")
    if not params:
        raise UserError("a CSV import needs at least one --param COLUMN[:log|linear|int|choice]")
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {file} as CSV: {one_line(e)}") from None
    absent = [c for c in [metric, *params] if c not in frame]
    if absent:
        raise UserError(f"no column {absent[0]!r} in {file} (columns: {', '.join(map(str, frame.columns))})")
    if metric in params:
        raise UserError(f"column {metric!r} is the metric; it cannot be a hyperparameter too")
    chosen = Metric(metric, direction, diverged if diverged is not None else worst(direction))
    values = {name: [cell_value(c) for c in frame[name]] for name in params}
    space = observed_space(values, params)
    trials = []
    for i, cell in enumerate(frame[metric]):
        trial = csv_trial(cell, chosen, i + 2, file)
        trial.params = {n: scaled(values[n][i], space[n]) for n in params}
        trials.append(trial)
    if not trials:
        raise UserError(f"{file} has no rows")
    return Source(file.stem, f"csv:{file}", chosen, space, trials)


def cell_value(text: str):
    """A CSV cell: empty is missing, a number is a float, anything else stays text."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def csv_trial(cell: str, metric: Metric, line: int, file: Path) -> Trial:
    value = cell_value(cell)
    if value is None:
        return Trial(params={}, status="failed", error="imported: empty metric cell")
    if isinstance(value, str):
        raise UserError(f"{file}:{line}: metric column {metric.name!r} holds {cell.strip()!r}, not a number")
    status, stored = outcome(value, metric)
    return Trial(params={}, status=status, value=stored)
