"""A store's sweeps as Optuna studies of the same names (``stability export --optuna``)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from external.optuna_storage import open_storage
from external.source import CONSTANTS, missing, one_line, scaled
from store import Store
from store.errors import UserError
from store.schema import Metric, metric_of_frame, plain
from store.space import Dimension, quiet_optuna, stored_space


@dataclass
class Study:
    """One sweep as the Optuna study it is exported as, built (and so checked) before any write."""

    name: str
    direction: str
    attrs: dict
    trials: list = field(default_factory=list)
    not_run: int = 0
    unreadable: int = 0

    def states(self) -> Counter:
        return Counter(t.state.name for t in self.trials)


def study_of(store: Store, sweep: str) -> Study:
    """A sweep's study: its rows in index order as frozen Optuna trials."""
    rows, bad = store.read_trials(sweep)
    manifest = store.read_manifest(sweep)
    every = rows if len(rows) else manifest
    try:
        metric = metric_of_frame(every)
    except ValueError as e:
        raise UserError(f"sweep {sweep!r}: {e}") from None
    space = stored_space(every)
    attrs = {"sweep": sweep, **metric.columns()}
    for k in CONSTANTS:
        values = every[k].dropna().unique() if k in every and k not in space else []
        if len(values) == 1:
            attrs[k] = plain(values[0])
    if len(rows):
        rows = rows.sort_values("index", kind="stable")
    study = Study(sweep, metric.direction, attrs, not_run=len(manifest) - len(rows), unreadable=len(bad))
    distributions = {name: dim.distribution() for name, dim in space.items()}
    for row in rows.to_dict("records"):
        study.trials.append(frozen_trial(store, sweep, row, space, distributions, metric))
    return study


def frozen_trial(store: Store, sweep: str, row: dict, space: dict[str, Dimension], distributions: dict,
                 metric: Metric):  # fmt: skip
    """One trial row as an Optuna trial: ok -> COMPLETE with its value, diverged and failed ->
    FAIL marked with its status; the curve's metric values as intermediate values."""
    from optuna.trial import TrialState, create_trial

    params = {n: scaled(row.get(n), dim) for n, dim in space.items() if n in row and not missing(row.get(n))}
    value = plain(row.get(metric.name))
    status = row.get("status")
    if status == "ok" and (missing(value) or not math.isfinite(float(value))):
        status = "diverged"
    attrs = {"trial_id": row["trial_id"], "index": int(row["index"])}
    if status != "ok":
        attrs["stability_status"] = "diverged" if status == "diverged" else "failed"
    if status not in ("ok", "diverged"):
        attrs["error"] = row.get("error") if not missing(row.get("error")) else f"status {status}"
    # what an Optuna trial has no field for (or would replace by the time of export), kept as is
    attrs["wall_s"] = None if missing(row.get("wall_s")) else float(row["wall_s"])
    attrs["completed_epochs"] = None if missing(row.get("completed_epochs")) else int(row["completed_epochs"])
    for k in ("started_at", "finished_at"):
        attrs[k] = row[k] if isinstance(row.get(k), str) else None
    try:
        trial = create_trial(
            params=params,
            distributions={n: distributions[n] for n in params},
            value=float(value) if status == "ok" else None,
            state=TrialState.COMPLETE if status == "ok" else TrialState.FAIL,
            user_attrs=attrs,
            intermediate_values=intermediate_values(store, sweep, row["trial_id"], metric),
        )
    except ValueError as e:  # a value outside its stored dimension
        raise UserError(f"sweep {sweep!r} trial {row['trial_id']}: {one_line(e)}") from None
    for name, stamp in (("datetime_start", row.get("started_at")), ("datetime_complete", row.get("finished_at"))):
        moment = parse_time(stamp)
        if moment is not None:
            setattr(trial, name, moment)
    return trial


def intermediate_values(store: Store, sweep: str, trial_id: str, metric: Metric) -> dict[int, float]:
    path = store.curve_path(sweep, trial_id)
    if not path.exists():
        return {}
    try:
        curve = pd.read_parquet(path)
    except Exception:  # an unreadable curve: the trial is exported without one
        return {}
    if metric.name not in curve or "epoch" not in curve:
        return {}
    points = curve[["epoch", metric.name]].dropna(subset=["epoch"])
    return {int(e): float(v) for e, v in zip(points["epoch"], points[metric.name], strict=True)}


def parse_time(text) -> datetime | None:
    """A stored ISO time as Optuna keeps times (naive, local)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment


def plan_export(store: Store, sweeps: list[str] | None = None) -> list[Study]:
    """Every named sweep (default: every sweep of the store) as a study, checked."""
    held = store.sweeps()
    names = list(dict.fromkeys(sweeps or held))
    if not names:
        raise UserError(f"no sweeps in {store.root}")
    absent = [n for n in names if n not in held]
    if absent:
        raise UserError(f"no sweep {absent[0]!r} in {store.root} (sweeps: {', '.join(held) or 'none'})")
    return [study_of(store, n) for n in names]


def write_export(studies: list[Study], url: str) -> None:
    """Create the studies in the storage; a study that exists already is an error before any is
    created."""
    import optuna

    storage = open_storage(url, create=True)
    with quiet_optuna():
        taken = set(optuna.get_all_study_names(storage)) & {s.name for s in studies}
        if taken:
            raise UserError(f"study {sorted(taken)[0]!r} already exists in {url}; nothing was exported")
        for s in studies:
            study = optuna.create_study(storage=storage, study_name=s.name, direction=s.direction)
            study.set_user_attr("stability", json.loads(json.dumps(s.attrs, default=str)))
            study.add_trials(s.trials)
