"""The one definition of a trial row (docs/design.md, "The trial row"): its columns, their types, and how a
row maps to the trainer's config and back.

A manifest row is the planned part; a trial row is the planned part plus the outcome. The
sweep planner, the trial process, the driver's failure record and both readers of the store
use these definitions, so a new sampled recipe field is added here (and as a ``TrainConfig``
field) and nowhere else. An optimizer's hyperparameters are columns too, named as its registry
entry names them (``stability.optimizers``); the store does not import that registry, so the
functions that pick sampled columns take the hyperparameter names from their caller.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Metric:
    """What a sweep measures: the trial-row column that holds the outcome, which way is better,
    and the value a diverged trial counts as (the built-in trainer's top-1 error: 100, as the
    paper counts it; a loss: +inf, never within any distance of the best)."""

    name: str = "top1_err"
    direction: str = "minimize"  # or "maximize"
    diverged: float = 100.0

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"a metric's direction is one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if math.isnan(self.diverged) or self.diverged == -self.sign * math.inf:
            raise ValueError(f"{self.name}: a diverged trial cannot count as {self.diverged} (the best there is)")

    @property
    def sign(self) -> float:
        """+1 where lower is better, -1 where higher is."""
        return 1.0 if self.direction == "minimize" else -1.0

    @property
    def label(self) -> str:
        """The metric in an axis label or a caption."""
        return "top-1 error (%)" if self == TOP1_ERR else self.name

    def columns(self) -> dict:
        """The metric as a row's ``METRIC_COLUMNS``."""
        return {"metric": self.name, "metric_direction": self.direction, "metric_diverged": float(self.diverged)}


DIRECTIONS = ("minimize", "maximize")
METRIC_COLUMNS = ["metric", "metric_direction", "metric_diverged"]
TOP1_ERR = Metric()


def worst(direction: str) -> float:
    """A diverged trial's default value: never within any distance of the best."""
    return math.inf if direction == "minimize" else -math.inf


def metric_of(row) -> Metric:
    """The metric of a row (a dict or a Series); a row without one (every store written before
    metrics were named, and the built-in trainer's rows) measures top-1 error."""
    name = row.get("metric") if hasattr(row, "get") else None
    if not isinstance(name, str) or not name:
        return TOP1_ERR
    direction = row.get("metric_direction")
    direction = direction if isinstance(direction, str) else "minimize"
    diverged = row.get("metric_diverged")
    return Metric(name, direction, float(diverged) if present(diverged) else worst(direction))


def metric_of_frame(frame: pd.DataFrame) -> Metric:
    """The one metric of a set of rows (a sweep, a comparison); a ValueError if they measure two."""
    if not len(frame) or "metric" not in frame:
        return TOP1_ERR
    found = {metric_of(r) for r in frame[[c for c in METRIC_COLUMNS if c in frame]].to_dict("records")}
    if len(found) > 1:
        raise ValueError(f"rows measure more than one metric: {', '.join(sorted(m.name for m in found))}")
    return found.pop() if found else TOP1_ERR


def metric_values(frame: pd.DataFrame, metric: Metric | None = None) -> pd.Series:
    """Each row's outcome in the metric's own units: a diverged trial, and one that produced no
    value, counts as the metric's diverged value."""
    metric = metric or metric_of_frame(frame)
    values = (
        pd.to_numeric(frame[metric.name], errors="coerce")
        if metric.name in frame
        else pd.Series(np.nan, index=frame.index)
    )
    diverged = frame["status"].eq("diverged") if "status" in frame else False
    return values.where(~(values.isna() | diverged), metric.diverged).astype(float)


def scores(frame: pd.DataFrame, metric: Metric | None = None) -> pd.Series:
    """Each row's outcome with lower better (the metric's values, negated where higher is
    better): what EDFs, bests and comparisons are computed on, whatever the direction."""
    metric = metric or metric_of_frame(frame)
    return metric.sign * metric_values(frame, metric)


# What defines a trial, in the manifest's column order (compared by ``same_definition``).
IDENTITY = [
    "index",
    "trial_id",
    "model",
    "optimizer",
    "lr",
    "wd",
    "epochs",
    "dataset",
    "image_size",
    "patch_size",
    "batch_size",
    "seed",
]
# The fields in which members of one population may differ: each member holds its own value.
PER_MEMBER = ("lr", "wd")
# Recipe hyperparameters beyond the identity's that a search space may sample. Each is a
# column only where a sweep samples it, so sweeps and checkpoints from before these existed
# keep their identity. Type: how a value is read back from a row. (An optimizer's own
# hyperparameters, momentum and beta2 among them, are columns in the same way.)
RECIPE: dict[str, type] = {
    "warmup_epochs": float,
    "label_smoothing": float,
    "mixup_alpha": float,
    "cutmix_alpha": float,
    "autoaugment": bool,
    "ema": bool,
}
# Every sweepable field, with its type: the identity's numeric ones and the recipe's.
SWEEPABLE: dict[str, type] = {"lr": float, "wd": float, "epochs": int, "batch_size": int, **RECIPE}
# Planned columns every trial row repeats from its manifest row, so that analysis needs only
# trial rows: how it was drawn, at which preset, the sweep's space (JSON), the sweep whose best a
# seed-noise trial re-trains, the user modules (JSON list) imported before the model is built,
# the registered trainable that trains it (missing: the built-in trainer), where an imported
# sweep came from, and the sweep's metric (``Metric``; missing: top-1 error).
CARRIED = ["sampler", "preset", "space", "noise_of", "imports", "trainer", "source", *METRIC_COLUMNS]
PLAN = ["sweep", *IDENTITY[:4], "family", *IDENTITY[4:], *CARRIED]
# The outcome of a trial, written when it ends.
OUTCOME = [
    "stem",
    "status",
    "top1_err",
    "top1_err_raw",
    "train_loss",
    "diverged_epoch",
    "completed_epochs",
    "wall_s",
    "device",
    "simulated_gpu",
    "num_classes",
    "metric_initial",
    "flops",
    "params",
    "acts",
    "complexity_source",
    "started_at",
    "finished_at",
    "version",
    "error",
    "resumed_from_epoch",
    "workers",
    "accumulate",
    "node_id",
    "lr_scaling",
    "param_groups",
]
# Columns whose values may be missing, typed so that every file of a store has one schema.
NULLABLE = {
    "diverged_epoch": "Int64",
    "completed_epochs": "Int64",
    "num_classes": "Int64",
    "metric_initial": "float64",
    "error": "string",
    "patch_size": "Int64",
    "noise_of": "string",
    "imports": "string",
    "lr_scaling": "string",
    "param_groups": "string",
    "trainer": "string",
    "source": "string",
    "metric": "string",
    "metric_direction": "string",
    "metric_diverged": "float64",
}
CURVE = ["epoch", "lr", "train_loss", "top1_err", "top1_err_raw", "wall_s"]
# Columns analysis adds to a table of trial rows (``analysis.experiments``): a hyperparameter or a
# metric may not be named after them, nor after any column above.
DERIVED = ["size", "protocol", "metric_value", "metric_score"]
# Names that differ between a row and the trainer's config.
CONFIG_NAME = {"optimizer": "optim"}


def reserved_columns(free=()) -> set[str]:
    """The names a hyperparameter (or an imported metric) may not take: every column of a trial
    row and of its curve, and the columns analysis derives, but the ``free`` ones (columns whose
    values the sampled hyperparameter of that name fills)."""
    row = set(IDENTITY) | set(RECIPE) | set(PLAN) | set(OUTCOME) | set(CURVE) | set(METRIC_COLUMNS)
    return (row | set(DERIVED) | {"status", "error", "optim_args"}) - set(free)


def sampled_columns(columns, hyperparameters=()) -> list[str]:
    """The sampled recipe columns among ``columns``, in the schema's order, then the optimizer
    hyperparameter columns among them (``hyperparameters``: the names that may be), by name."""
    have = set(columns)
    return [c for c in RECIPE if c in have] + sorted(set(hyperparameters) & have)


def run_identity(columns, hyperparameters=()) -> list[str]:
    """What makes trials trainable together apart from their per-member values: every identity
    field but the per-member ones, and every sampled recipe field and optimizer hyperparameter."""
    fixed = [c for c in IDENTITY if c not in ("index", "trial_id", *PER_MEMBER)]
    return fixed + sampled_columns(columns, hyperparameters)


def present(value) -> bool:
    """Whether a row's value is there: not None, NaN or pandas' NA."""
    if value is None or value is pd.NA:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def config_fields(row: dict, hyperparameters=()) -> dict:
    """The trainer's config fields of a planned row: identity and sampled recipe fields, typed, and
    the optimizer's hyperparameters set in the row (``hyperparameters``: its names) as ``optim_args``."""
    out = {CONFIG_NAME.get(k, k): row[k] for k in ("model", "optimizer", "dataset", "trial_id", "sweep")}
    for k in ("lr", "wd"):
        out[k] = float(row[k])
    for k in ("epochs", "image_size", "patch_size", "batch_size", "seed", "index"):
        out[k] = int(row[k])
    for k, kind in RECIPE.items():
        if k in row and present(row[k]):
            out[k] = kind(row[k])
    out["imports"] = tuple(imports_of(row))
    out["optim_args"] = tuple(sorted((k, plain(row[k])) for k in hyperparameters if k in row and present(row[k])))
    return out


def plain(v):
    """A stored value as plain Python (a parquet column gives numpy scalars)."""
    return v.item() if isinstance(v, np.generic) else v


def plan_of_config(cfg: dict, family: str) -> dict:
    """The planned columns of a trial row, as the trainer knows them from its config (a sweep's
    trial then copies the manifest's carried columns over them: ``carried``)."""
    back = {v: k for k, v in CONFIG_NAME.items()}
    named = {back.get(k, k): v for k, v in cfg.items()}
    row = {k: named.get(k) for k in PLAN if k in named}
    row["family"] = family
    row["imports"] = json.dumps(list(cfg.get("imports") or ())) if cfg.get("imports") else None
    row.update({k: named[k] for k in RECIPE if named.get(k) is not None})
    row.update(dict(cfg.get("optim_args") or ()))
    return row


def carried(row: dict) -> dict:
    """The planned columns a trial row copies from its manifest row beyond the config's."""
    return {k: row[k] for k in CARRIED if k in row}


def failed_row(row: dict, error: str, now: str, hyperparameters=()) -> dict:
    """The record of a trial that raised on every attempt: its plan and a failed outcome."""
    planned = {k: row[k] for k in [*PLAN, *sampled_columns(row, hyperparameters)] if k in row}
    metric = metric_of(row)
    value = {"top1_err": 100.0, "top1_err_raw": 100.0} if metric == TOP1_ERR else {metric.name: math.nan}
    return {
        **planned,
        "status": "failed",
        **value,
        "train_loss": float("nan"),
        "diverged_epoch": None,
        "completed_epochs": None,
        "wall_s": float("nan"),
        "started_at": now,
        "finished_at": now,
        "error": error[-4000:],
    }


def imports_of(row: dict) -> list[str]:
    """The user modules a row's model needs (a JSON list in the ``imports`` column)."""
    text = row.get("imports")
    return json.loads(text) if isinstance(text, str) and text else []


# What makes two runs comparable (docs/design.md, "The protocol"): the data and how it is fed, the preset,
# the seed, every recipe field a run set, and the search space a sweep drew from. Model,
# optimizer, epochs, lr and wd are left out: they are what a curve, a gap or an EDF varies.
PROTOCOL = ["dataset", "image_size", "patch_size", "batch_size", "preset", "seed"]
PROTOCOL_FIELDS = [*PROTOCOL, *RECIPE, "space", *METRIC_COLUMNS]
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def protocol_columns(columns) -> list[str]:
    """The protocol's columns among ``columns``, in the schema's order."""
    have = set(columns)
    return [c for c in PROTOCOL_FIELDS if c in have]


def _canonical(value):
    """A protocol value in one form whatever the column's dtype: missing values (None, NaN, pd.NA)
    as None, so that a store written before a column existed compares equal to one holding NaN;
    numbers to 12 significant digits, as whole numbers where they are (32 and 32.0 are one size)."""
    if value is None or (not isinstance(value, str | bool | list | dict) and pd.isna(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(f"{float(value):.12g}")
        return int(number) if number.is_integer() else number
    return value


def _protocol_fields(row: dict) -> dict:
    """One row's protocol as a dict of its present fields. A field the search space samples
    (batch size, a recipe field) varies within the sweep and is described by the space instead.

    The lr and wd intervals are not part of it, only how they are drawn (log-uniform, ...): they
    are each model's search range, as Table 4 gives one per family (the paper's Figures 4-5
    compare ViTs and RegNetY over their own intervals; the laptop preset centres one on each
    model's optimum). Every other dimension is, whole.

    A sweep's metric is part of it where it is not the built-in top-1 error (so that the keys of
    stores written before metrics were named stay as they were)."""
    space = row.get("space")
    space = json.loads(space) if isinstance(space, str) and space else None
    skip = {"space", *METRIC_COLUMNS, *(space or {})}
    fields = {k: _canonical(row.get(k)) for k in PROTOCOL_FIELDS if k not in skip}
    metric = metric_of(row)
    if metric != TOP1_ERR:
        diverged = _canonical(metric.diverged) if math.isfinite(metric.diverged) else str(metric.diverged)
        fields["metric"] = [metric.name, metric.direction, diverged]
    if space is not None:
        fields["space"] = {k: v[:1] if k in PER_MEMBER else v for k, v in space.items()}
    return {k: v for k, v in fields.items() if v is not None}


def protocol_key(frame: pd.DataFrame) -> pd.Series:
    """Each row's protocol as a string (canonical JSON of its present fields): rows with equal keys
    are comparable. A column the frame lacks counts as missing, so keys of two frames compare."""
    columns = protocol_columns(frame.columns)
    records = frame[columns].to_dict("records") if columns else [{}] * len(frame)
    keys = [json.dumps(_protocol_fields(r), sort_keys=True, separators=(",", ":")) for r in records]
    return pd.Series(keys, index=frame.index, dtype=object)


def protocol_label(key: str) -> str:
    """A short name of a protocol key for file names and legends (letters, digits, '.', '_', '-'),
    e.g. ``fashion-mnist_32px_p4_b256_small_seed0``; a 6-digit hash of the whole key follows where
    recipe fields or a search space are part of it, so that two protocols never share a label."""
    fields = json.loads(key)
    shown = [("", "dataset", ""), ("", "image_size", "px"), ("p", "patch_size", ""), ("b", "batch_size", ""),
             ("", "preset", ""), ("seed", "seed", "")]  # fmt: skip
    parts = [f"{pre}{fields[k]}{post}" for pre, k, post in shown if k in fields]
    safe = [_UNSAFE.sub("-", p) for p in parts]
    extra = set(fields) - {k for _, k, _ in shown}
    if extra or safe != parts:
        safe.append(hashlib.sha1(key.encode()).hexdigest()[:6])
    return "_".join(safe) or "unspecified"


def protocol_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's protocol label (``protocol_label`` of its ``protocol_key``)."""
    keys = protocol_key(frame)
    return keys.map({k: protocol_label(k) for k in keys.unique()})
