"""Which sampled hyperparameter the error depends on: Optuna's importance evaluators on a sweep.

The evaluators work on an Optuna study, so one is built in memory from the store's rows
(``optuna.trial.create_trial``) with the sweep's own distributions: log-uniform where the
sweep sampled log-uniformly. Optuna drops trials without a finite value; here a diverged
trial already has error 100 and a failed one (an infrastructure fault) is left out, as in
the EDFs.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from analysis.experiments import scored, usable
from store.space import from_json, quiet_optuna, stored_space

EVALUATORS = ("ped-anova", "fanova")


def sweep_space(trials: pd.DataFrame) -> dict[str, list]:
    """Each sampled dimension as the sweep stored it in ``space`` (``store.space``'s JSON):
    ``[kind, low, high]`` for log / uniform / int, ``["choice", [values]]``.

    Stores written before the space was recorded: lr and wd, log-uniform over what was
    drawn (their Table 4 sampling was log-uniform).
    """
    return {name: dim.to_json() for name, dim in stored_space(trials).items()}


def distribution(dim: list, drawn: pd.Series):
    """The Optuna distribution of a stored dimension, its bounds widened by any float rounding
    of the drawn values."""
    stored = from_json(dim)
    if stored.kind != "choice":
        stored = replace(stored, low=min(stored.low, float(drawn.min())), high=max(stored.high, float(drawn.max())))
    return stored.distribution()


def param_value(dim: list, value):
    """A row's value as the distribution holds it (numbers come back from parquet as numpy types)."""
    if dim[0] == "choice":
        return next(c for c in dim[1] if c == value or str(c) == str(value))
    return int(value) if dim[0] == "int" else float(value)


def importance(
    trials: pd.DataFrame, *, params: list[str] | None = None, evaluator: str = "ped-anova", seed: int = 0
) -> dict[str, float]:
    """Each sampled parameter's importance for the metric of one sweep (top-1 error for the
    built-in trainer; the study minimizes its ``metric_score``, the metric with lower better), normalized
    to sum 1; trials without a finite score (a diverged trial of a loss) are left out.

    ``evaluator``: "ped-anova" (Optuna's PED-ANOVA, its default) or "fanova".
    """
    import optuna

    if evaluator not in EVALUATORS:
        raise ValueError(f"evaluator must be one of {', '.join(EVALUATORS)}, got {evaluator!r}")
    rows = scored(usable(trials))
    if "sweep" in rows and rows["sweep"].nunique() > 1:
        raise ValueError("importance is computed per sweep; pass the rows of one sweep")
    space = sweep_space(rows)
    names = params or list(space)
    distributions = {n: distribution(space[n], rows[n]) for n in names}
    if evaluator == "fanova":
        chosen = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    else:
        chosen = optuna.importance.PedAnovaImportanceEvaluator()
    with quiet_optuna():
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=seed))
        for r in rows.itertuples():
            values = {n: param_value(space[n], getattr(r, n)) for n in names}
            if math.isfinite(r.metric_score):
                trial = optuna.trial.create_trial(params=values, distributions=distributions, value=r.metric_score)
                study.add_trial(trial)
        return dict(optuna.importance.get_param_importances(study, evaluator=chosen, params=names))
