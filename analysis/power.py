"""How many trials a comparison needs: the smallest difference in mean delta that the comparison
test (``stats.compare``, the one ``analysis.comparisons`` runs) detects with 80% power at
alpha 0.05, for N trials per sweep, simulated from a pilot.

The pilot (one sweep, or the sweeps of one comparison pooled) gives the distances of trials to
their sweep's best. A simulated comparison draws two sweeps of N trials from those distances
(with replacement; unpaired, which is what two sweeps of other draws get and is conservative for
paired ones) and stretches the second's distances by a factor c: its mean delta is then c times
the first's in expectation, whatever the level, so the effect is (c - 1) times the pilot's mean
delta, in the metric's points. c is found by bisection on the share of simulations in which the
test rejects equal stability, with the same draws at every c (common random numbers), so that
the share grows with c.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats

TRIALS = (16, 32, 64, 128)
POWER, ALPHA = 0.8, 0.05


def pilot_distances(*sweeps) -> np.ndarray:
    """Each pilot sweep's distances to its own best, pooled; an infinite score (a diverged trial
    of a loss) at the largest finite distance, as the summaries count it."""
    cap = stats.largest_distance(*sweeps)
    out = []
    for scores in sweeps:
        x = stats.as_errors(scores)
        d = x - stats.best_of(x)
        out.append(np.where(np.isfinite(d), d, cap))
    return np.concatenate(out)


def power_at(distances: np.ndarray, n: int, stretch: float, *, sims: int, n_resamples: int, seed: int) -> float:
    """The share of ``sims`` simulated comparisons of ``n`` trials each, the second's distances
    stretched by ``stretch``, in which the test rejects equal stability at ``ALPHA``."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, distances.size, (sims, 2, n))
    rejected = 0
    for i, (a, b) in enumerate(draws):
        p = stats.compare(distances[a], stretch * distances[b], n_resamples=n_resamples, seed=seed + i)["p_value"]
        rejected += p <= ALPHA
    return rejected / sims


def detectable_effect(distances: np.ndarray, n: int, *, sims: int = 400, n_resamples: int = 400, seed: int = 0,
                      steps: int = 10) -> float:  # fmt: skip
    """The smallest difference in mean delta (points of the metric) detected with ``POWER`` for
    ``n`` trials per sweep; inf where even a 64-fold stretch is not (a pilot without spread)."""
    base = float(distances.mean())
    if base <= 0:
        return np.inf
    hi = 2.0
    while power_at(distances, n, hi, sims=sims, n_resamples=n_resamples, seed=seed) < POWER:
        hi *= 2
        if hi > 64:
            return np.inf
    lo = 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        if power_at(distances, n, mid, sims=sims, n_resamples=n_resamples, seed=seed) >= POWER:
            hi = mid
        else:
            lo = mid
    return (hi - 1.0) * base


def power_table(*sweeps, trials=TRIALS, sims: int = 400, n_resamples: int = 400, seed: int = 0) -> pd.DataFrame:
    """Per N: the detectable difference in mean delta, and as a share of the pilot's mean delta."""
    distances = pilot_distances(*sweeps)
    rows = []
    for n in trials:
        effect = detectable_effect(distances, n, sims=sims, n_resamples=n_resamples, seed=seed)
        share = effect / distances.mean() if distances.mean() > 0 else np.inf
        rows.append({"trials": n, "detectable_mean_delta_diff": effect, "share_of_pilot_mean_delta": share})
    return pd.DataFrame(rows)
