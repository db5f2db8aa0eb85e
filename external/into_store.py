"""A read source as the store's rows: an EDF sweep with sampler ``imported``, checked whole before
anything is written."""

from __future__ import annotations

import io
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from external.source import Source, Trial, absent, one_line
from store import Store, check_name
from store.errors import UserError
from store.files import curve_columns, typed_frame
from store.schema import PLAN, SWEEPABLE, Metric, reserved_columns
from store.space import space_to_json

SAMPLER = "imported"


# Columns of a trial row that a hyperparameter may not be named after (the sweepable ones may:
# their values fill the column, as a sweep of this engine samples them).
RESERVED = reserved_columns(free=SWEEPABLE)


# Outcome columns a metric may be named after: the built-in trainer's measures.
METRIC_NAMES_OK = {"top1_err", "top1_err_raw", "train_loss"}


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
    manifest = typed_frame(manifest_rows)
    imported = Imported(sweep, manifest, rows, curves, source)
    check_parquet(imported)
    return imported


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


def check_parquet(imported: Imported) -> None:
    """Every file the import writes, serialized in memory first: a column parquet cannot type
    (values of mixed kinds) is an error before anything is written."""
    frames = [("the manifest", imported.manifest)]
    for row, curve in zip(imported.rows, imported.curves, strict=True):
        frames.append((row["trial_id"], typed_frame([row])))
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
