"""A Ray Tune experiment folder, read through Ray Tune's ``ExperimentAnalysis``."""

from __future__ import annotations

import json
import math
import numbers
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from external.source import Source, Trial, observed_space, one_line, outcome, scaled
from store.errors import UserError
from store.schema import Metric, plain, worst

# Tune's own bookkeeping in a result; what is left is what the trainable reported.
TUNE_KEYS = {"done", "trial_id", "experiment_tag", "episodes_this_iter", "timesteps_this_iter", "should_checkpoint",
             "sweep", "epoch"}  # fmt: skip


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
    """The last line of the error a Tune trial recorded (its exception), read by Tune from the
    trial's own storage; None where there is none to read."""
    try:
        text = t.get_error() or ""
    except Exception:  # the error file is gone: the status says enough
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else None
