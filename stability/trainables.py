"""The registry of trainables: a researcher's own training function, swept like the built-in trainer.

A trainable is ``fn(params, report, checkpoint) -> None`` registered under a name with the metric
it reports and the hyperparameters it takes (each with its default and validity rule, as an
optimizer's are):

    @trainables.register("modadd", metric="val_acc", direction="maximize", diverged=0.0,
                         hyperparameters={"lr": positive(1e-3), "wd": nonnegative(1.0)})
    def train(params, report, checkpoint):
        ...                                   # restore from checkpoint/ if something is there
        for epoch in range(start, params["epochs"]):
            ...                               # train one epoch
            report(epoch + 1, val_acc=acc, train_loss=loss)
            ...                               # then save to checkpoint/

``params`` holds every hyperparameter (the trial's sampled value, else its default), ``seed``,
``epochs`` and ``device``. ``report(epoch, **values)`` records one point of the trial's curve
(``epoch`` counts whatever unit the trainable steps in: epochs, or steps); the trial's outcome is
the last reported value of its metric. A non-finite metric value ends the trial as ``diverged``
(its curve so far is kept). The curve is saved beside the checkpoint at every report, so a trial
that restarts (a node lost, the driver killed) continues it: a point re-reported for an epoch
drops every later point of the earlier attempt. Report an epoch before saving its checkpoint: a
trial stopped between the two then re-trains and re-reports that epoch, where the other order
could leave it out of the curve. A trainable that raises is retried from its
checkpoint and then recorded as ``failed`` with its error; one that returns without reporting
its metric is ``failed`` with that reason.

Registered from a user's file with ``--import`` (or ``imports`` of a study file), in every trial
process, as models and optimizers are.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from models.registry import Registry
from stability.optimizers import Hyperparameter
from stability.recipe import finite_number as _number
from store.files import write_atomic
from store.schema import PLAN, Metric, reserved_columns, worst

Reporter = Callable[..., None]
Fn = Callable[[dict, Reporter, Path], None]
# What a trainable's params hold beyond its hyperparameters.
GIVEN = ("seed", "epochs", "device")
CURVE_FILE = "curve.json"


def positive(default: float) -> Hyperparameter:
    """A number > 0: a learning rate."""
    return Hyperparameter(default, "a number > 0", lambda v: _number(v) and v > 0)


def nonnegative(default: float) -> Hyperparameter:
    """A number >= 0: a weight decay, a dropout rate's complement."""
    return Hyperparameter(default, "a number >= 0", lambda v: _number(v) and v >= 0)


def fraction(default: float) -> Hyperparameter:
    """A number in (0, 1): a share of the data, a dropout rate."""
    return Hyperparameter(default, "a number in (0, 1)", lambda v: _number(v) and 0 < v < 1)


def integer(default: int, low: int = 1, high: int | None = None) -> Hyperparameter:
    """An integer in [low, high]: a width, a depth."""
    rule = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")

    def ok(v) -> bool:
        return _number(v) and float(v).is_integer() and v >= low and (high is None or v <= high)

    return Hyperparameter(default, rule, ok, int)


@dataclass(frozen=True)
class Entry:
    name: str
    build: Fn  # the training function (``build``: the name ``Registry`` compares sources by)
    metric: Metric
    hyperparameters: dict[str, Hyperparameter]
    epochs: int
    optimizer: str  # a label for tables and figures: what the function trains with
    dataset: str | None
    about: str
    initial: float | None = None  # the metric before any training (the sensitivities' l0)


_REGISTRY = Registry("trainable")
_ENTRIES: dict[str, Entry] = _REGISTRY.entries
# Columns a trainable's hyperparameter may not be named after (lr and wd are the identity's own).
TAKEN = reserved_columns(free={"lr", "wd"})


def register(
    name: str,
    *,
    metric: str,
    direction: str = "minimize",
    diverged: float | None = None,
    hyperparameters: dict[str, Hyperparameter] | None = None,
    epochs: int = 10,
    optimizer: str = "custom",
    dataset: str | None = None,
    about: str = "",
    initial: float | None = None,
) -> Callable[[Fn], Fn]:
    """Decorator: register ``fn`` as trainable ``name``, once per name (``models.registry.Registry``).

    ``metric``: the reported value that is the trial's outcome, better in ``direction``;
    ``diverged``: what a diverged trial counts as (default: the worst, +inf or -inf);
    ``epochs``: the default length (``--epochs`` overrides it); ``optimizer`` and ``dataset``:
    labels the store and figures show; ``initial``: the metric's value before training (a loss
    at initialisation, chance accuracy), which the lr and wd sensitivity caps each value at
    (``analysis.sensitivity``; without it a trainable's sweep has no sensitivity)."""
    if not name or not metric:
        raise ValueError("a trainable needs a name and a metric")
    clash = sorted(set(hyperparameters or {}) & (TAKEN | set(GIVEN)))
    if clash:
        raise ValueError(f"trainable {name!r}: hyperparameter name(s) {', '.join(clash)} are trial columns")
    if metric in (TAKEN | {"lr", "wd", *(hyperparameters or {})}) - {"top1_err", "top1_err_raw", "train_loss"}:
        raise ValueError(f"trainable {name!r}: metric {metric!r} is a trial column or one of its hyperparameters")
    spec = Metric(metric, direction, worst(direction) if diverged is None else float(diverged))
    if epochs < 1:
        raise ValueError(f"trainable {name!r}: epochs must be at least 1")

    return _REGISTRY.decorator(
        name,
        lambda fn: Entry(name, fn, spec, dict(hyperparameters or {}), epochs, optimizer, dataset, about, initial),
    )


entry: Callable[[str], Entry] = _REGISTRY.get
names: Callable[[], list[str]] = _REGISTRY.names
hyperparameter_names: Callable[[], list[str]] = _REGISTRY.hyperparameter_names


def problem(trainer: str, name: str, value) -> str | None:
    """Why ``value`` cannot be hyperparameter ``name`` of ``trainer``, or None if it can."""
    hyper = entry(trainer).hyperparameters
    if name not in hyper:
        known = ", ".join(hyper) or "none"
        return f"trainable {trainer!r} has no hyperparameter {name!r} (it has: {known})"
    if not hyper[name].ok(value):
        return f"{name} of trainable {trainer!r} must be {hyper[name].rule}, got {value!r}"
    return None


class Diverged(Exception):
    """Raised inside ``report`` to stop a trainable whose metric went non-finite."""


class Curve:
    """A trial's reported points, saved beside its checkpoint at every report (``CURVE_FILE``), so
    that a restarted trial continues the curve of the attempt whose checkpoint it resumed."""

    def __init__(self, folder: Path, metric: str, on_point=None) -> None:
        self.path, self.metric, self.on_point = folder / CURVE_FILE, metric, on_point
        self.points: list[dict] = json.loads(self.path.read_text()) if self.path.exists() else []
        self.resumed_from: float | None = None  # the last kept epoch before this attempt's first report
        self.reported = False
        self.start = time.perf_counter()

    def report(self, epoch: int, **values) -> None:
        if not _number(epoch) or not float(epoch).is_integer():
            raise TypeError(f"report(epoch, ...): epoch must be a whole number (an epoch or a step), got {epoch!r}")
        epoch = int(epoch)
        point = {"epoch": epoch, **{k: _plain(v) for k, v in values.items()}}
        kept = [p for p in self.points if p["epoch"] < epoch]
        if not self.reported and kept:  # where this attempt took up the curve of an earlier one
            self.resumed_from = kept[-1]["epoch"]
            self.start = time.perf_counter() - kept[-1].get("wall_s", 0.0)
        self.reported = True
        point["wall_s"] = time.perf_counter() - self.start
        self.points = [*kept, point]
        self._save()
        if self.on_point is not None:
            self.on_point(point)
        value = point.get(self.metric)
        if value is None:
            return
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise TypeError(f"report(...): the metric {self.metric} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise Diverged(f"{self.metric} = {value!r} at epoch {epoch}")

    def _save(self) -> None:
        write_atomic(self.path, lambda tmp: tmp.write_text(json.dumps(self.points)))

    def last(self) -> dict | None:
        """The last point that holds the metric."""
        return next((p for p in reversed(self.points) if self.metric in p), None)


def _plain(v):
    """A reported value as JSON can hold it (a tensor or numpy scalar as a float)."""
    if hasattr(v, "item"):
        v = v.item()
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


def params_of(row: dict, trainer: str, device: str) -> dict:
    """The trainable's params for a planned row: each hyperparameter's sampled value or default."""
    spec = entry(trainer)
    params = {}
    for k, h in spec.hyperparameters.items():
        v = row.get(k)
        present = v is not None and not (isinstance(v, float) and math.isnan(v))
        params[k] = h.kind(_plain(v)) if present else h.default
    return {**params, "seed": int(row["seed"]), "epochs": int(row["epochs"]), "device": device}


def run(row: dict, checkpoint_dir: Path, *, device: str = "cpu", on_point=None):
    """Train one planned row with its registered trainable; a ``TrainResult`` (the row's outcome
    and its curve). ``on_point``: called with each reported point (the sweep reports it to Tune)."""
    from stability.trainer import VERSION, TrainResult

    trainer = row["trainer"]
    spec = entry(trainer)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    curve = Curve(checkpoint_dir, spec.metric.name, on_point)
    started = datetime.now(UTC).isoformat()
    status, diverged_epoch = "ok", None
    try:
        spec.build(params_of(row, trainer, device), curve.report, checkpoint_dir)
    except Diverged:
        status, diverged_epoch = "diverged", curve.points[-1]["epoch"]
    last = curve.last()
    if last is None:
        raise RuntimeError(f"trainable {trainer!r} returned without reporting its metric {spec.metric.name!r}")
    if status == "ok" and not math.isfinite(last[spec.metric.name]):  # diverged in an attempt that then died
        status, diverged_epoch = "diverged", last["epoch"]
    value = spec.metric.diverged if status == "diverged" else last[spec.metric.name]
    outcome = {
        "status": status,
        spec.metric.name: value,
        "train_loss": float(last["train_loss"]) if isinstance(last.get("train_loss"), int | float) else math.nan,
        "diverged_epoch": None if diverged_epoch is None else int(diverged_epoch),
        "completed_epochs": int(curve.points[-1]["epoch"]),
        "wall_s": float(curve.points[-1]["wall_s"]),
        "device": device,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(),
        "version": VERSION,
        "error": None,
        "resumed_from_epoch": None if curve.resumed_from is None else int(curve.resumed_from),
        "metric_initial": math.nan if spec.initial is None else float(spec.initial),
    }
    planned = {k: v for k, v in row.items() if k in PLAN or k in spec.hyperparameters}
    return TrainResult({**planned, **spec.metric.columns(), **outcome}, curve.points)
