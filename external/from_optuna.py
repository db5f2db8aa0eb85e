"""An Optuna study, read through ``optuna.load_study``."""

from __future__ import annotations

import math

from external.optuna_storage import open_storage
from external.source import CONSTANTS, Source, Trial, iso, one_line, outcome
from store.errors import UserError
from store.schema import Metric, worst
from store.space import Dimension, quiet_optuna


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
