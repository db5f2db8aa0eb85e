"""How many trials a comparison needs: the smallest difference in mean delta that the comparison
test (``stats.compare``, the one ``analysis.comparisons`` runs) detects with 80% power at
alpha 0.05, for N trials per sweep, simulated from a pilot.

The pilot gives distances of trials to their sweep's best, each sweep's scaled to one mean
delta, so that a difference between the pilot sweeps is not mistaken for noise. Unpaired
(sweeps of other draws): the distances of one sweep, or of several pooled; a simulated
comparison draws two sweeps of N trials from them with replacement. Paired (two sweeps of the
same draws, as one seed gives every model): the pilot is the pairs of distances draw by draw
(several comparisons' pairs pooled); a simulated comparison draws N pairs with replacement and
swaps each pair's sides at random, so that neither side is better by construction and the pairs
keep their correlation, and runs the paired test. Either way the second side's distances are
then stretched by a factor c: its mean delta is c times the first's in expectation, whatever the
level, so the effect is (c - 1) times the pilot's mean delta, in the metric's points. c is found
by bisection on the share of simulations in which the test rejects equal stability, with the
same draws at every c (common random numbers), so that the share grows with c; the bisection
aims at 80% plus the share's one-sided 95% Monte Carlo margin, so that the simulated share's
noise does not make the table promise more power than the test has. N beyond the pilot's trials
reuses the pilot's distances (with replacement).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import experiments, stats
from analysis.experiments import first_trials

TRIALS = (16, 32, 64, 128)
POWER, ALPHA = 0.8, 0.05


def pilot_distances(*sweeps, paired: bool = False) -> np.ndarray:
    """Each pilot sweep's distances to its own best, an infinite score (a diverged trial of a loss)
    at the largest finite distance, as the summaries count it, each sweep's scaled to the sweeps'
    average mean delta (so that the pilot itself holds no difference in mean delta, only their
    shapes): pooled (one axis), or, ``paired``, two sweeps' side by side in the order of their
    draws (shape (n, 2))."""
    cap = stats.largest_distance(*sweeps)
    out = []
    for scores in sweeps:
        x = stats.as_errors(scores)
        d = x - stats.best_of(x)
        out.append(np.where(np.isfinite(d), d, cap))
    level = np.mean([d.mean() for d in out])
    out = [d * (level / d.mean()) if d.mean() > 0 else d for d in out]  # the pilot's own difference taken out
    return np.column_stack(out) if paired else np.concatenate(out)


def power_at(pilot: np.ndarray, n: int, stretch: float, *, sims: int, n_resamples: int, seed: int) -> float:
    """The share of ``sims`` simulated comparisons of ``n`` trials each (paired where ``pilot``
    holds pairs), the second side's distances stretched by ``stretch``, in which the test rejects
    equal stability at ``ALPHA``."""
    rng = np.random.default_rng(seed)
    paired, rejected = pilot.ndim == 2, 0
    for i in range(sims):
        if paired:
            rows = pilot[rng.integers(0, len(pilot), n)]
            swap = rng.random(n) < 0.5
            a, b = np.where(swap, rows[:, 1], rows[:, 0]), np.where(swap, rows[:, 0], rows[:, 1])
        else:
            a, b = pilot[rng.integers(0, pilot.size, (2, n))]
        p = stats.compare(a, stretch * b, paired=paired, n_resamples=n_resamples, seed=seed + i)["p_value"]
        rejected += p <= ALPHA
    return rejected / sims


def detectable_effect(pilot: np.ndarray, n: int, *, sims: int = 400, n_resamples: int = 400, seed: int = 0,
                      steps: int = 10) -> float:  # fmt: skip
    """The smallest difference in mean delta (points of the metric) detected with ``POWER`` for
    ``n`` trials per sweep; inf where even a 64-fold stretch is not (a pilot without spread)."""
    base = float(pilot.mean())
    if base <= 0:
        return np.inf
    target = POWER + 1.645 * np.sqrt(POWER * (1 - POWER) / sims)  # the estimate's one-sided 95% bound
    hi = 2.0
    while power_at(pilot, n, hi, sims=sims, n_resamples=n_resamples, seed=seed) < target:
        hi *= 2
        if hi > 64:
            return np.inf
    lo = 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if power_at(pilot, n, mid, sims=sims, n_resamples=n_resamples, seed=seed) >= target:
            hi = mid
        else:
            lo = mid
    return (hi - 1.0) * base


def power_table(*sweeps, paired: bool = False, trials=TRIALS, sims: int = 400, n_resamples: int = 400,
                seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Per N: the detectable difference in mean delta, and as a share of the pilot's mean delta
    (``paired``: two sweeps of the same draws, each a sequence of scores in draw order)."""
    return table_of(pilot_distances(*sweeps, paired=paired), trials, sims=sims, n_resamples=n_resamples, seed=seed)


def table_of(
    pilot: np.ndarray, trials=TRIALS, *, sims: int = 400, n_resamples: int = 400, seed: int = 0
) -> pd.DataFrame:
    """``power_table`` of distances already gathered (pooled, or pairs of shape (n, 2))."""
    rows = []
    for n in trials:
        effect = detectable_effect(pilot, n, sims=sims, n_resamples=n_resamples, seed=seed)
        share = effect / pilot.mean() if pilot.mean() > 0 else np.inf
        rows.append({"trials": n, "paired": pilot.ndim == 2, "detectable_mean_delta_diff": effect,
                     "share_of_pilot_mean_delta": share})  # fmt: skip
    return pd.DataFrame(rows)


def sweeps_pilot(sets: dict[str, pd.DataFrame]) -> np.ndarray:
    """The pilot of the named sweeps: the pairs of their distances where they are two sweeps of
    the same draws (on the draws they share), else all their distances pooled."""
    first = first_trials(sets)
    if len(sets) == 2 and experiments.same_draws(*first.values()):
        return pilot_distances(*(g.sort_values("index")["metric_score"] for g in first.values()), paired=True)
    return pilot_distances(*(g["metric_score"] for g in sets.values()))


def family_pilot(sets: dict[str, pd.DataFrame], pairs: pd.DataFrame) -> np.ndarray:
    """The pilot of a family of comparisons (rows of ``analysis.comparisons``): their pairs of
    distances pooled where every comparison is paired, else the family's sweeps' distances pooled."""
    if pairs["paired"].all():
        return np.concatenate(
            [sweeps_pilot({a: sets[a], b: sets[b]}) for a, b in zip(pairs["a"], pairs["b"], strict=True)]
        )
    return sweeps_pilot({n: sets[n] for n in sorted(set(pairs["a"]) | set(pairs["b"]))})
