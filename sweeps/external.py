"""Sweeps run elsewhere, into the store and out of it: ``stability import`` and ``stability export``.

Import reads a source through its library's own reader (``optuna.load_study``, Ray Tune's
``ExperimentAnalysis``, ``pandas.read_csv``) into one ``Source``: each trial's hyperparameters,
outcome and curve, the metric and the search space. ``plan_import`` turns it into the store's
rows, an EDF sweep with sampler ``imported``, checked whole (names, columns, parquet types);
``write_import`` writes them. Nothing is written before every row is read and checked, so bad
input is one ``UserError`` and leaves the store as it was.

Outcomes: a trial that finished with a finite value is ``ok``, with a NaN or infinite one
``diverged`` (it counts as the metric's diverged value). Every other trial (Optuna's FAIL,
PRUNED, RUNNING and WAITING states, a Tune trial that raised or reported no value, a CSV row
with an empty metric cell) is imported as ``failed``, its ``error`` saying why: a pruned trial
stopped early, so its last value is no result and never enters an EDF.

Export writes each sweep as an Optuna study of the same name: the stored space as its
distributions, ``ok`` trials COMPLETE with their value, ``diverged`` and ``failed`` ones FAIL
(user attribute ``stability_status`` says which). The study's user attribute ``stability``
holds the sweep's metric and constant planned columns, so that importing the study gives the
same sweep back.

Optuna storages are named by a URL Optuna opens (``sqlite:///x.db``, ``postgresql://...``)
or by a journal file: ``journal:///abs/path.log``, or a plain path without ``://`` (a file
that is an SQLite database is opened as ``sqlite:///`` instead). Import never creates one:
a URL naming a missing file is an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from store import Store, check_name
from store.errors import UserError
from store.files import curve_columns, trial_frame
from store.schema import (
    DERIVED,
    METRIC_COLUMNS,
    NULLABLE,
    OUTCOME,
    PLAN,
    SWEEPABLE,
    Metric,
    metric_of_frame,
    plain,
    present,
    worst,
)
from store.space import Dimension, quiet_optuna, space_to_json, stored_space

SAMPLER = "imported"
SCALES = ("log", "linear", "int", "choice")
# Planned columns that are constant over a sweep and travel in an exported study's "stability"
# attribute, so that importing it restores them.
CONSTANTS = ["model", "optimizer", "family", "epochs", "dataset", "image_size", "patch_size", "batch_size", "seed",
             "preset", "trainer", "source", "sampler"]  # fmt: skip
# Columns of a trial row that a hyperparameter may not be named after (the sweepable ones may:
# their values fill the column, as a sweep of this engine samples them).
RESERVED = (set(PLAN) | set(OUTCOME) | set(METRIC_COLUMNS) | set(DERIVED) | {"status", "error", "epoch"}) - set(
    SWEEPABLE
)
# Outcome columns a metric may be named after: the built-in trainer's measures.
METRIC_NAMES_OK = {"top1_err", "top1_err_raw", "train_loss"}
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class Trial:
    """One trial of a source, in the store's terms (status ok / diverged / failed)."""

    params: dict[str, Any]
    status: str
    value: float = math.nan
    error: str | None = None
    wall_s: float = math.nan
    started_at: str | None = None
    finished_at: str | None = None
    completed_epochs: int | None = None
    curve: list[dict] = field(default_factory=list)


@dataclass
class Source:
    """What a source holds: its trials in order, the metric, the space, and where it came from."""

    name: str
    source: str
    metric: Metric
    space: dict[str, Dimension]
    trials: list[Trial]
    planned: dict[str, Any] = field(default_factory=dict)  # constant columns restored from an export


@dataclass
class Imported:
    """A source as the rows of one sweep of a store, checked and ready to write."""

    sweep: str
    manifest: pd.DataFrame
    rows: list[dict]
    curves: list[list[dict]]
    source: Source

    def counts(self) -> Counter:
        return Counter(r["status"] for r in self.rows)

    def failures(self) -> Counter:
        """Why trials were imported as failed: each reason and how many."""
        return Counter(r["error"] for r in self.rows if r["status"] == "failed")


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def outcome(value, metric: Metric) -> tuple[str, float]:
    """(status, stored value) of a finished trial's value: a NaN or infinite value diverged."""
    if value is None or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return "diverged", metric.diverged
    return "ok", float(value)


def failed(error: str) -> Trial:
    return Trial(params={}, status="failed", error=error)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def missing(value) -> bool:
    return not present(value)


# ---------------------------------------------------------------------------------------------
# Optuna storages


def journal_path(url: str) -> Path | None:
    """The journal file a storage URL names, or None for a database URL (see the module's doc)."""
    if url.startswith("journal://"):
        return Path(url[len("journal://") :])
    if "://" in url:
        return None
    path = Path(url)
    with contextlib.suppress(OSError), path.open("rb") as f:
        if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
            return None
    return path


def storage_url(url: str) -> str:
    """The URL Optuna opens: a plain path to an SQLite file as ``sqlite:///``."""
    return url if "://" in url or journal_path(url) is not None else f"sqlite:///{Path(url).resolve()}"


def open_storage(url: str, *, create: bool):
    """An Optuna storage for ``url``; without ``create`` a file it names must exist (import never
    creates a database or a journal)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = journal_path(url)
    if path is None:
        url = storage_url(url)
        sqlite = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        if not create and sqlite not in (None, "", ":memory:") and not Path(sqlite).is_file():
            raise UserError(f"no Optuna database {sqlite} (from {url!r})")
    elif not create and not path.is_file():
        raise UserError(f"no Optuna journal file {path}")
    try:
        with quiet_optuna():
            if path is not None:
                return JournalStorage(JournalFileBackend(str(path)))
            return optuna.storages.RDBStorage(url, skip_table_creation=not create)  # import writes nothing
    except Exception as e:  # a bad URL, a missing driver, an unreadable file: all the user's to fix
        raise UserError(f"cannot open Optuna storage {url!r}: {one_line(e)}") from None


def dimension_of(distribution) -> Dimension:
    """The stored dimension of an Optuna distribution (a float's step and an int's log are not
    kept: the store's space has no place for them)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return Dimension("choice", choices=tuple(distribution.choices))
    if isinstance(distribution, IntDistribution):
        return Dimension("int", float(distribution.low), float(distribution.high))
    if isinstance(distribution, FloatDistribution):
        return Dimension("log" if distribution.log else "uniform", float(distribution.low), float(distribution.high))
    raise UserError(f"unknown Optuna distribution {distribution!r}")


def merge(name: str, a: Dimension | None, b: Dimension) -> Dimension:
    """One dimension over two trials' distributions of a parameter (a study may move its ranges)."""
    if a is None or a == b:
        return b
    if a.kind != b.kind:
        raise UserError(f"parameter {name!r} is drawn from distributions of two kinds ({a.kind}, {b.kind})")
    if a.kind == "choice":
        return Dimension("choice", choices=tuple(dict.fromkeys([*a.choices, *b.choices])))
    return Dimension(a.kind, min(a.low, b.low), max(a.high, b.high))


# ---------------------------------------------------------------------------------------------
# Readers


def read_optuna(url: str, study: str | None = None, *, metric: str | None = None,
                diverged: float | None = None) -> Source:  # fmt: skip
    """An Optuna study: its distributions as the space, each trial's params, value, intermediate
    values (the curve) and times. ``study`` may be left out where the storage holds one study."""
    import optuna

    storage = open_storage(url, create=False)
    with quiet_optuna():
        try:
            names = optuna.get_all_study_names(storage)
        except Exception as e:  # a database that is not Optuna's, or of a version it cannot read
            raise UserError(f"cannot read Optuna studies from {url!r}: {one_line(e)}") from None
        if study is None and len(names) != 1:
            raise UserError(f"{url} holds {len(names)} studies; name one with --study ({', '.join(names) or 'none'})")
        study = study if study is not None else names[0]
        if study not in names:
            raise UserError(f"no study {study!r} in {url} (studies: {', '.join(names) or 'none'})")
        loaded = optuna.load_study(study_name=study, storage=storage)
    if len(loaded.directions) > 1:
        raise UserError(
            f"study {study!r} is multi-objective ({len(loaded.directions)} objectives); one metric is needed"
        )
    attrs = loaded.user_attrs.get("stability")
    attrs = attrs if isinstance(attrs, dict) else {}
    direction = "maximize" if loaded.direction == optuna.study.StudyDirection.MAXIMIZE else "minimize"
    name = metric or attrs.get("metric") or "value"
    kept = attrs.get("metric_diverged") if name == attrs.get("metric") else None
    chosen = Metric(
        name, direction, diverged if diverged is not None else kept if kept is not None else worst(direction)
    )
    trials = loaded.get_trials(deepcopy=False)
    space: dict[str, Dimension] = {}
    for t in trials:
        for param, distribution in t.distributions.items():
            space[param] = merge(param, space.get(param), dimension_of(distribution))
    planned = {k: attrs[k] for k in CONSTANTS if k in attrs and k not in ("source", "sampler")}
    return Source(
        study, f"optuna:{url}#{study}", chosen, space, [optuna_trial(t, chosen, bool(attrs)) for t in trials], planned
    )


def optuna_trial(t, metric: Metric, exported: bool = False) -> Trial:
    """One Optuna trial in the store's terms. A trial that ``write_export`` wrote (``exported``: its
    study says so) keeps from its user attributes what Optuna has no field for: diverged or failed,
    the error, the wall time, the stored times and epochs."""
    state, attrs = t.state.name, (t.user_attrs if exported else {})
    if state == "COMPLETE":
        status, value = outcome(t.value, metric)
        error = None
    elif state == "FAIL" and attrs.get("stability_status") == "diverged":
        status, value, error = "diverged", metric.diverged, None
    else:
        status, value = "failed", math.nan
        error = attrs.get("error") if attrs.get("stability_status") == "failed" else None
        error = error or f"imported: Optuna trial state {state}"
    wall = attrs.get("wall_s")
    if "wall_s" not in attrs and t.datetime_start and t.datetime_complete:
        wall = (t.datetime_complete - t.datetime_start).total_seconds()
    steps = sorted(t.intermediate_values.items())
    completed = attrs["completed_epochs"] if "completed_epochs" in attrs else len(steps) or None
    return Trial(
        params=dict(t.params),
        status=status,
        value=value,
        error=error,
        wall_s=float(wall) if wall is not None else math.nan,
        started_at=attrs["started_at"] if "started_at" in attrs else iso(t.datetime_start),
        finished_at=attrs["finished_at"] if "finished_at" in attrs else iso(t.datetime_complete),
        completed_epochs=int(completed) if completed is not None else None,
        curve=[{"epoch": int(step), metric.name: float(v)} for step, v in steps],
    )


def parse_params(flags: list[str]) -> dict[str, str | None]:
    """``NAME[:log|linear|int|choice]`` flags as {name: scale or None (not given)}."""
    out: dict[str, str | None] = {}
    for text in flags:
        name, sep, scale = text.rpartition(":")
        if not sep or scale not in SCALES:
            name, scale = text, None
        if not name:
            raise UserError(f"--param {text!r}: expected NAME or NAME:{'|'.join(SCALES)}")
        if name in out:
            raise UserError(f"--param {name!r} is given twice")
        out[name] = scale
    return out


def observed_space(values: dict[str, list], scales: dict[str, str | None]) -> dict[str, Dimension]:
    """Each hyperparameter's dimension from the values the trials took: between the observed
    min and max, on the scale the user named (linear by default), or a choice of the values seen
    where the user says so or they are not numbers."""
    space = {}
    for name, seen in values.items():
        present = [v for v in seen if not missing(v)]
        scale = scales.get(name)
        if not present:
            raise UserError(f"hyperparameter {name!r} has no value in any trial")
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present)
        if scale == "choice" or (scale is None and not numeric):
            space[name] = Dimension("choice", choices=tuple(dict.fromkeys(present)))
            continue
        if not numeric:
            raise UserError(f"hyperparameter {name!r} holds values that are not numbers; use {name}:choice")
        low, high = float(min(present)), float(max(present))
        if scale == "log" and low <= 0:
            raise UserError(f"{name}:log needs positive values; the smallest is {low:g}")
        if scale == "int" and not all(float(v).is_integer() for v in present):
            raise UserError(f"{name}:int needs whole numbers")
        space[name] = Dimension({"log": "log", "int": "int"}.get(scale or "", "uniform"), low, high)
    return space


def scaled(value, dim: Dimension):
    """A value as its dimension takes it (an int dimension's values as ints)."""
    if missing(value):
        return None
    return int(value) if dim.kind == "int" else plain(value)


def read_tune(path: str, *, metric: str, mode: str, params: dict[str, str | None] | None = None,
              diverged: float | None = None) -> Source:  # fmt: skip
    """A Ray Tune experiment folder through ``ExperimentAnalysis``: trials by trial id, their
    config (flattened with '/') as hyperparameters (``params``: only these, with their scales;
    default every config key on a linear scale), the metric's last reported value, and each
    reported iteration as a curve point (epoch = training_iteration)."""
    folder = Path(path).resolve()
    if not folder.is_dir():
        raise UserError(f"no Ray Tune experiment folder {folder}")
    from ray.tune import ExperimentAnalysis
    from ray.tune.utils import flatten_dict

    try:
        analysis = ExperimentAnalysis(str(folder))
    except Exception as e:  # not an experiment folder, or one Ray cannot read
        raise UserError(f"{folder} is not a Ray Tune experiment folder Ray can read: {one_line(e)}") from None
    tune_trials = sorted(analysis.trials, key=lambda t: t.trial_id)
    if not tune_trials:
        raise UserError(f"{folder} holds no Ray Tune trials")
    frames = analysis.trial_dataframes
    reported = {k for t in tune_trials for k in (t.last_result or {})} | {c for f in frames.values() for c in f}
    if metric not in reported:
        shown = sorted(k for k in reported if not k.startswith("config/"))
        raise UserError(f"metric {metric!r} is not in the trials' results (reported: {', '.join(shown) or 'nothing'})")
    configs = [{k: config_value(v) for k, v in flatten_dict(dict(t.config or {})).items()} for t in tune_trials]
    names = list(params) if params else list(dict.fromkeys(k for c in configs for k in c))
    unknown = [n for n in names if all(n not in c for c in configs)]
    if unknown:
        raise UserError(f"--param {unknown[0]!r} is not in the trials' config (keys: {', '.join(sorted(configs[0]))})")
    direction = {"min": "minimize", "max": "maximize"}[mode]
    chosen = Metric(metric, direction, diverged if diverged is not None else worst(direction))
    space = observed_space({n: [c.get(n) for c in configs] for n in names}, params or {})
    trials = []
    for t, config in zip(tune_trials, configs, strict=True):
        trial = tune_trial(t, frames.get(t.trial_id), chosen)
        trial.params = {n: scaled(config.get(n), space[n]) for n in names}
        trials.append(trial)
    return Source(folder.name, f"tune:{folder}", chosen, space, trials)


# Tune's own bookkeeping in a result; what is left is what the trainable reported.
TUNE_KEYS = {"done", "trial_id", "experiment_tag", "episodes_this_iter", "timesteps_this_iter", "should_checkpoint",
             "sweep", "epoch"}  # fmt: skip


def tune_trial(t, frame: pd.DataFrame | None, metric: Metric) -> Trial:
    """One Tune trial in the store's terms: TERMINATED with the metric is an outcome; an error,
    an unfinished trial or a missing metric is failed."""
    from ray.tune.result import AUTO_RESULT_KEYS

    last = t.last_result or {}
    if t.status == "TERMINATED" and metric.name in last:
        status, value = outcome(last[metric.name], metric)
        error = None
    else:
        status, value = "failed", math.nan
        why = tune_error(t) if t.status == "ERROR" else None
        if t.status == "TERMINATED":
            error = f"imported: Ray Tune trial reported no {metric.name}"
        else:
            error = f"imported: Ray Tune trial status {t.status}" + (f": {why}" if why else "")
    curve = []
    if frame is not None and len(frame) and "training_iteration" in frame:
        skip = set(AUTO_RESULT_KEYS) | TUNE_KEYS
        keys = [c for c in frame if c not in skip and not c.startswith("config/") and numeric_column(frame[c])]
        for point in frame.to_dict("records"):
            curve.append({"epoch": int(point["training_iteration"]), **{k: float(point[k]) for k in keys}})
    stamp, wall = last.get("timestamp"), last.get("time_total_s")
    return Trial(
        params={},
        status=status,
        value=value,
        error=error,
        wall_s=float(wall) if isinstance(wall, numbers.Real) else math.nan,
        finished_at=datetime.fromtimestamp(stamp, UTC).isoformat() if stamp is not None else None,
        completed_epochs=int(last["training_iteration"]) if "training_iteration" in last else None,
        curve=curve,
    )


def config_value(value):
    """A config value as a column holds it: numbers, text, booleans as they are, anything else
    (a list, an object) as its JSON or text."""
    value = plain(value)
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, default=str)


def numeric_column(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def tune_error(t) -> str | None:
    """The last line of the error a Tune trial recorded (its exception), read through the trial's
    own storage; None where there is none to read."""
    name = getattr(t.run_metadata, "error_filename", None)
    if not name:
        return None
    try:
        with t.storage.storage_filesystem.open_input_stream(str(Path(t.storage.trial_fs_path, name))) as f:
            lines = [line for line in f.readall().decode("utf-8", "replace").splitlines() if line.strip()]
    except Exception:  # the error file is gone: the status says enough
        return None
    return lines[-1].strip()[:500] if lines else None


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
        return failed("imported: empty metric cell")
    if isinstance(value, str):
        raise UserError(f"{file}:{line}: metric column {metric.name!r} holds {cell.strip()!r}, not a number")
    status, stored = outcome(value, metric)
    return Trial(params={}, status=status, value=stored)


# ---------------------------------------------------------------------------------------------
# Rows of the store


def check_columns(source: Source) -> None:
    """Hyperparameters and the metric become columns: none may take a column of the schema."""
    metric = source.metric.name
    if metric in (RESERVED | set(SWEEPABLE)) - METRIC_NAMES_OK or metric in ("sweep", "trial_id"):
        raise UserError(f"the metric {metric!r} would overwrite the store's column of that name")
    for name in source.space:
        if name in RESERVED:
            raise UserError(f"hyperparameter {name!r} would overwrite the store's column of that name")
        if name == metric:
            raise UserError(f"hyperparameter {name!r} has the metric's name")


def plan_import(source: Source, store: Store, *, name: str | None = None, model: str | None = None,
                optimizer: str | None = None) -> Imported:  # fmt: skip
    """The store's rows of a source, checked whole: the name is free, every column is allowed,
    every file would be written (parquet can type each column)."""
    sweep = check_name(name or source.name, "sweep name")
    if store.sweep_dir(sweep).exists():
        raise UserError(f"sweep {sweep!r} already exists in {store.root}; import under another --name")
    check_columns(source)
    base = {
        "sweep": sweep,
        "model": sweep,
        "family": SAMPLER,
        "optimizer": "unknown",
        "lr": math.nan,
        "wd": math.nan,
        "epochs": math.nan,
        **dict.fromkeys(["dataset", "image_size", "patch_size", "batch_size", "seed", "preset"]),
        **source.planned,
        "sampler": SAMPLER,
        "space": space_to_json(source.space),
        "source": source.source,
        **source.metric.columns(),
    }
    base.update({k: v for k, v in (("model", model), ("optimizer", optimizer)) if v is not None})
    if not source.trials:
        raise UserError(f"{source.source} holds no trials")
    manifest_rows, rows, curves = [], [], []
    for index, trial in enumerate(source.trials):
        trial_id = check_name(f"{sweep}-{index:04d}", "trial id")
        params = {n: absent(trial.params.get(n), dim) for n, dim in source.space.items()}
        planned = {**base, "index": index, "trial_id": trial_id, **params}
        planned = {k: planned[k] for k in [*PLAN, *source.space] if k in planned}
        manifest_rows.append(planned)
        rows.append({**planned, **trial_outcome(trial, source.metric)})
        curves.append(trial.curve)
    manifest = typed(pd.DataFrame(manifest_rows))
    imported = Imported(sweep, manifest, rows, curves, source)
    check_parquet(imported)
    return imported


def absent(value, dim: Dimension):
    """A hyperparameter's value, a number's missing one as NaN (so that its column stays numeric)."""
    return (None if dim.kind == "choice" else math.nan) if value is None else value


def trial_outcome(trial: Trial, metric: Metric) -> dict:
    return {
        "status": trial.status,
        metric.name: trial.value,
        "wall_s": trial.wall_s,
        "started_at": trial.started_at,
        "finished_at": trial.finished_at,
        "completed_epochs": trial.completed_epochs,
        "error": trial.error,
    }


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The schema's nullable dtypes (as ``store.files.trial_frame`` gives a trial row)."""
    for col, dtype in NULLABLE.items():
        if col in frame:
            frame[col] = frame[col].astype(dtype)
    return frame


def check_parquet(imported: Imported) -> None:
    """Every file the import writes, serialized in memory first: a column parquet cannot type
    (values of mixed kinds) is an error before anything is written."""
    frames = [("the manifest", imported.manifest)]
    for row, curve in zip(imported.rows, imported.curves, strict=True):
        frames.append((row["trial_id"], trial_frame(row)))
        frames.append((row["trial_id"], pd.DataFrame(curve, columns=curve_columns(row, curve))))
    for what, frame in frames:
        try:
            frame.to_parquet(io.BytesIO(), index=False)
        except Exception as e:  # pyarrow's errors for mixed or unknown types
            raise UserError(f"cannot store {what} of sweep {imported.sweep!r}: {one_line(e)}") from None


def write_import(store: Store, imported: Imported) -> Path:
    """Write a planned import: the manifest, then each trial's curve and row."""
    folder = store.sweep_dir(imported.sweep)
    if folder.exists():
        raise UserError(f"sweep {imported.sweep!r} already exists in {store.root}; import under another --name")
    store.check_writable()
    store.write_manifest(imported.sweep, imported.manifest)
    for row, curve in zip(imported.rows, imported.curves, strict=True):
        store.write_trial(imported.sweep, row, curve)
    return folder


# ---------------------------------------------------------------------------------------------
# Export


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
