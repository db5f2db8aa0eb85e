"""Learning-rate and weight-decay sensitivity, as Wortsman et al. (2023, "Small-scale proxies for
large-scale Transformer training instabilities") define it for the learning rate:

    S = mean over the values v of a hyperparameter of [min(l(v), l0) - l*],  l* = min over v of l(v)

with l(v) the outcome at v (here: the best over the sweep's other hyperparameters at v), l0 the
outcome at initialisation, so that a value that trains worse than not training at all (a
diverged trial among them) counts as l0 and no more. Lower is less sensitive. On a
``--sampler grid`` sweep the values are the grid's own; on a random or Sobol sweep they are
``bins`` equal-width bins of the hyperparameter on its sampled scale (log for lr and wd), over
the interval the sweep's space stored, and a bin without trials is left out.

Top-1 error starts at chance, 100 (1 - 1/C) for C classes: the trial row's ``num_classes``, or,
for rows written before it was recorded, the built-in dataset's class count. Another metric
starts at the value its trainable declared (``trainables.register(initial=...)``, the row's
``metric_initial``); without one it has no sensitivity (NaN).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from store import schema

# Class counts of the built-in datasets, for trial rows written before rows recorded
# ``num_classes`` (tests/test_sensitivity.py checks them against the loaders that can run here).
BUILT_IN_CLASSES = {"fashion-mnist": 10, "fashion-mnist-5k": 10, "digits": 10, "synthetic": 10, "cifar10": 10,
                    "cifar100": 100, "imagenet": 1000}  # fmt: skip
HYPERPARAMETERS = ("lr", "wd")


def bins_for(n: int) -> int:
    """Bins of a random or Sobol sweep of ``n`` trials: about sqrt(n), so a bin holds about as many
    trials as there are bins (6 for 32 trials, 8 for 64), at least 2."""
    return max(2, math.ceil(math.sqrt(n)))


def sensitivity(values, scores, *, initial: float, edges=None) -> tuple[float, int]:
    """Wortsman et al.'s sensitivity of ``scores`` (lower is better) to the hyperparameter
    ``values``, with ``initial`` the score at initialisation; returns it with the number of
    values (or bins) it averages over. ``edges``: bin edges on the values' scale (None: each
    distinct value is one point of a grid). NaN where fewer than two values (or bins) hold
    trials, or no trial did better than ``initial``."""
    v, s = np.asarray(values, dtype=float), np.minimum(np.asarray(scores, dtype=float), initial)
    keep = np.isfinite(v)
    v, s = v[keep], s[keep]
    if not v.size:
        return math.nan, 0
    groups = np.unique(v, return_inverse=True)[1] if edges is None else np.digitize(v, edges[1:-1])
    best = np.array([s[groups == g].min() for g in np.unique(groups)])
    if best.size < 2 or best.min() >= initial:  # one value, or nothing trained past the start: unknown, not 0
        return math.nan, int(best.size)
    return float(np.mean(best - best.min())), int(best.size)


def initial_score(g: pd.DataFrame) -> float:
    """The sweep's score at initialisation (``schema.scores`` units: lower is better), or NaN."""
    metric = schema.metric_of_frame(g)
    if metric != schema.TOP1_ERR:  # the value its trainable declared (``initial``), if one
        declared = (
            pd.to_numeric(g["metric_initial"], errors="coerce").dropna().unique() if "metric_initial" in g else []
        )
        return metric.sign * float(declared[0]) if len(declared) == 1 else math.nan
    classes = pd.to_numeric(g["num_classes"], errors="coerce").dropna() if "num_classes" in g else pd.Series([])
    datasets = g["dataset"].dropna().unique() if "dataset" in g else []
    counts = set(classes) or {BUILT_IN_CLASSES.get(d) for d in datasets}
    if len(counts) != 1 or None in counts:  # none recorded, or two different counts
        return math.nan
    return 100.0 * (1.0 - 1.0 / float(counts.pop()))


def on_scale(g: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The sweep's values of ``name`` on the scale its space samples them (log for a log
    dimension) with the bin edges over the interval it stored; a grid sweep's values as they are,
    with no bins (each value is one point). None where the sweep stored no range for it."""
    values = g[name].to_numpy(dtype=float)
    if "sampler" in g and (g["sampler"] == "grid").all():
        return values, None
    spaces = g["space"].dropna().unique() if "space" in g else []
    stored = json.loads(spaces[0]).get(name) if len(spaces) == 1 else None
    if not stored or stored[0] not in ("log", "uniform"):
        return None
    scale = np.log if stored[0] == "log" else np.asarray
    lo, hi = scale(np.array(stored[1:3], dtype=float))
    return scale(values), np.linspace(lo, hi, bins_for(len(g)) + 1)


def sweep_sensitivity(g: pd.DataFrame, name: str) -> tuple[float, int]:
    """One sweep's sensitivity to ``name`` (lr or wd) with the number of values or bins: NaN where
    the sweep does not vary it or its score at initialisation is unknown."""
    initial = initial_score(g)
    scaled = on_scale(g, name) if name in g and g[name].nunique() > 1 and not math.isnan(initial) else None
    if scaled is None:
        return math.nan, 0
    return sensitivity(scaled[0], g["metric_score"], initial=initial, edges=scaled[1])


def sensitivities(g: pd.DataFrame) -> dict:
    """``lr_sensitivity``, ``wd_sensitivity`` and the values or bins each averages over."""
    out = {}
    for name in HYPERPARAMETERS:
        out[f"{name}_sensitivity"], out[f"{name}_sensitivity_points"] = sweep_sensitivity(g, name)
    return out
