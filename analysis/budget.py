"""Budgets: how many trials a sweep needs to come near its best, and which method needs fewest.

- ``trials_to_target``: k*(δ), the smallest k whose expected best of k random trials
  (``stats.expected_best``, without replacement: unbiased) is within δ of the sweep's best.
  δ = 1, 2 and 4 points of top-1 error; for another metric, 5%, 10% and 20% of the range of its
  finite values in the sweep (the table says which).
- ``performance_profile``: Dolan and Moré's (2002) profile over k*, as AlgoPerf scores training
  algorithms by time to target: for each method (the compared axis: optimizers, or stems) the
  share ρ(τ) of workloads (models, or model sizes, within one protocol) where its k* is at most τ
  times the best method's k*, and the area under ρ over τ in [1, τ_max], normalised to 1.
- ``probability_best``: the probability that each method has the lowest expected best at
  budget k (Sivaprasad et al. 2020), the share of bootstrap resamples (each sweep's trials
  redrawn) in which it does, ties shared.

Sweeps of different sizes are compared on the draws they share: each sweep's first k trials, k
the smallest count among them (the draws of an extended sweep begin with the shorter one's).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from analysis import experiments, stats
from analysis.experiments import first_trials
from store import schema

DELTAS = (1.0, 2.0, 4.0)  # points of top-1 error
RANGE_SHARES = (0.05, 0.1, 0.2)  # of another metric's range in the sweep
PROFILE_COLUMNS = ["method", "tau", "rho", "area", "workloads"]


def trials_to_target(scores, delta: float) -> int:
    """k*(δ): the smallest k whose expected best of k is within ``delta`` of the best (lower is better)."""
    x = stats.as_errors(scores)
    best = stats.best_of(x)
    curve = stats.expected_best(x, range(1, x.size + 1))["mean"].to_numpy()
    return int(np.flatnonzero(curve - best <= delta + 1e-9 * max(1.0, abs(best)))[0] + 1)


def targets(g: pd.DataFrame) -> list[tuple[str, float]]:
    """The sweep's δs with their labels: points of top-1 error, or shares of another metric's
    range in the sweep (one label for every sweep, so that methods compare at one share; the
    sweep's own δ is the table's ``delta_value``)."""
    if schema.metric_of_frame(g) == schema.TOP1_ERR:
        return [(f"{d:g} points", d) for d in DELTAS]
    finite = g["metric_score"][np.isfinite(g["metric_score"])]
    spread = float(finite.max() - finite.min()) if len(finite) else 0.0
    return [(f"{share:.0%} of its range", share * spread) for share in RANGE_SHARES]


def budget_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per EDF sweep and δ: its trials, its best, δ (in words) and k*(δ); sweeps of one
    protocol and metric compared on the draws they share (``first_trials``)."""
    rows = []
    sets = experiments.edf_sets(trials)
    groups: dict[tuple, dict[str, pd.DataFrame]] = {}
    for name, g in sets.items():
        key = (schema.protocol_labels(g).iloc[0], schema.metric_of_frame(g).name)
        groups.setdefault(key, {})[name] = g
    for (protocol, metric), group in sorted(groups.items()):
        for name, g in sorted(first_trials(group).items()):
            for label, delta in targets(g):
                rows.append({"sweep": name, "protocol": protocol, "model": g["model"].iloc[0],
                             "family": g["family"].iloc[0], "optimizer": g["optimizer"].iloc[0],
                             "epochs": g["epochs"].iloc[0], "metric": metric,
                             "trials": len(g), "best": stats.best_of(g["metric_score"]), "delta": label,
                             "delta_value": delta,
                             "k_star": trials_to_target(g["metric_score"], delta)})  # fmt: skip
    return pd.DataFrame(rows)


def profile_axes(table: pd.DataFrame) -> tuple[str, list[str]] | None:
    """The compared axis (``method``) and what makes a workload: optimizers across models where the
    sweeps hold several optimizers, else stems (families) across model sizes; None where neither
    varies."""
    if table["optimizer"].nunique() > 1:
        return "optimizer", ["protocol", "model", "epochs"]
    if table["family"].nunique() > 1:
        return "family", ["protocol", "optimizer", "size", "epochs"]
    return None


def performance_profile(table: pd.DataFrame, delta: str) -> pd.DataFrame:
    """Per method: ρ(τ) at each τ where it steps (``tau``, ``rho``) and ``area`` (the normalised
    area under ρ over [1, τ_max], τ_max the largest ratio of any method; 1 where every method ties
    everywhere). Workloads where some method has no sweep are left out."""
    chosen = table[table["delta"] == delta].assign(size=lambda t: t["model"].map(experiments.SIZE_OF))
    axes = profile_axes(chosen)
    if axes is None:
        return pd.DataFrame(columns=PROFILE_COLUMNS)
    method, workload = axes
    keys = chosen[workload].astype(str)  # an imported sweep's unknown length is a workload too
    wide = chosen.assign(**keys).pivot_table(index=workload, columns=method, values="k_star", aggfunc="min").dropna()
    ratios = wide.div(wide.min(axis=1), axis=0)
    top = float(ratios.to_numpy().max()) if len(ratios) else 1.0
    rows = []
    for m in ratios.columns:
        r = np.sort(ratios[m].to_numpy())
        area = 1.0 if top == 1.0 else float(np.mean((top - r) / (top - 1.0)))
        for tau in np.unique(r):
            rows.append({"method": m, "tau": float(tau), "rho": float(np.mean(r <= tau)), "area": area,
                         "workloads": len(r)})  # fmt: skip
    return pd.DataFrame(rows, columns=PROFILE_COLUMNS)


def probability_best(sets: dict[str, pd.DataFrame], k: int, *, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Per sweep, the share of bootstrap resamples (each sweep's trials redrawn with replacement;
    sweeps of the same draws redrawn together) in which its expected best of ``k`` is the lowest
    of the sweeps, ties shared; on the draws the sweeps share."""
    rng = np.random.default_rng(seed)
    first = first_trials(sets)
    names = list(first)
    paired = all(experiments.same_draws(first[a], first[b]) for a, b in itertools.pairwise(names))
    ordered = {n: g.sort_values("index") if paired else g for n, g in first.items()}
    scores = {name: stats.as_errors(g["metric_score"]) for name, g in ordered.items()}
    wins = dict.fromkeys(scores, 0.0)
    for _ in range(n_resamples):
        shared = rng.integers(0, len(next(iter(scores.values()))), len(next(iter(scores.values()))))
        picks = {n: x[shared] if paired else rng.choice(x, x.size) for n, x in scores.items()}
        means = {n: stats.expected_best(x, [k])["mean"].iloc[0] for n, x in picks.items()}
        low = min(means.values())
        winners = [n for n, v in means.items() if v == low]
        for n in winners:
            wins[n] += 1 / len(winners)
    return {n: w / n_resamples for n, w in wins.items()}


def method_groups(trials: pd.DataFrame) -> tuple[str, dict[str, dict[str, pd.DataFrame]]] | None:
    """The compared axis (``profile_axes``) and, per workload (in words), its sweeps by method."""
    sets = experiments.edf_sets(trials)
    if not sets:
        return None
    meta = pd.DataFrame(
        [
            {
                "sweep": n,
                "protocol": schema.protocol_labels(g).iloc[0],
                "model": g["model"].iloc[0],
                "family": g["family"].iloc[0],
                "optimizer": g["optimizer"].iloc[0],
                "epochs": g["epochs"].iloc[0],
                "size": experiments.SIZE_OF.get(g["model"].iloc[0]),
            }
            for n, g in sets.items()
        ]
    )
    axes = profile_axes(meta)
    if axes is None:
        return None
    method, workload = axes
    groups: dict[str, dict[str, pd.DataFrame]] = {}
    for _, r in meta.iterrows():
        groups.setdefault(" / ".join(str(r[c]) for c in workload), {})[str(r[method])] = sets[r["sweep"]]
    return method, {w: g for w, g in groups.items() if len(g) > 1}


def probability_table(trials: pd.DataFrame, *, n_resamples: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per workload with two or more methods and budget k (1, 2, 4, ... up to the shared trials):
    each method's probability of the lowest expected best (``probability_best``)."""
    found = method_groups(trials)
    rows = []
    for workload, sets in sorted((found[1] if found else {}).items()):
        n = min(len(g) for g in sets.values())
        for k in [2**i for i in range(n.bit_length()) if 2**i <= n]:
            odds = probability_best(sets, k, n_resamples=n_resamples, seed=seed)
            rows += [{"workload": workload, "k": k, "method": m, "probability": p} for m, p in sorted(odds.items())]
    return pd.DataFrame(rows)


def profile_areas(table: pd.DataFrame) -> pd.DataFrame:
    """Each method's normalised profile area and workloads, per δ (``performance_profile``)."""
    rows = []
    for delta in dict.fromkeys(table["delta"]) if len(table) else []:
        profile = performance_profile(table, delta)
        for method, p in profile.groupby("method"):
            rows.append(
                {"delta": delta, "method": method, "area": p["area"].iloc[0], "workloads": p["workloads"].iloc[0]}
            )
    return pd.DataFrame(rows)
