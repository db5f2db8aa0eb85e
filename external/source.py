"""What every source becomes when it is read: its trials (hyperparameters, outcome, curve), its
metric and its space, and the helpers the readers share."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from store.errors import UserError
from store.schema import Metric, plain, present
from store.space import Dimension

SCALES = ("log", "linear", "int", "choice")


# Planned columns that are constant over a sweep and travel in an exported study's "stability"
# attribute, so that importing it restores them.
CONSTANTS = ["model", "optimizer", "family", "epochs", "dataset", "image_size", "patch_size", "batch_size", "seed",
             "preset", "trainer", "source", "sampler"]  # fmt: skip


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


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def outcome(value, metric: Metric) -> tuple[str, float]:
    """(status, stored value) of a finished trial's value: a NaN or infinite value diverged."""
    if value is None or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return "diverged", metric.diverged
    return "ok", float(value)


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def missing(value) -> bool:
    return not present(value)


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


def absent(value, dim: Dimension):
    """A hyperparameter's value, a number's missing one as NaN (so that its column stays numeric)."""
    return (None if dim.kind == "choice" else math.nan) if value is None else value
