"""EDFs of delta top-1 error, stability summaries, bootstrap bands and a two-sample test.

DESIGN section 7: with d_i = err_i - min_j err_j, F(x) = (1/n) #{i : d_i <= x}; diverged
trials count in n with error 100. Uncertainty comes from scipy's bootstrap (the baseline is
re-estimated inside every resample, since it is itself a statistic of the sample) and scipy's
two-sample Kolmogorov-Smirnov test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import integrate, special, stats

WITHIN = (1.0, 2.0, 4.0, 8.0)


def as_errors(errors: Sequence[float] | np.ndarray) -> np.ndarray:
    """Errors as floats; a missing (NaN) error is a trial that produced none and counts as 100."""
    arr = np.asarray(errors, dtype=float)
    if arr.size == 0:
        raise ValueError("an EDF needs at least one trial")
    return np.where(np.isnan(arr), 100.0, arr)


def deltas(errors: Sequence[float] | np.ndarray, baseline: float | None = None) -> np.ndarray:
    """Delta top-1 error against the best trial of the set (or a given baseline)."""
    arr = as_errors(errors)
    return arr - (arr.min() if baseline is None else baseline)


def edf(errors: Sequence[float] | np.ndarray, baseline: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted deltas x and F(x), the fraction of trials with delta <= x (ties counted whole)."""
    x = np.sort(deltas(errors, baseline))
    return x, np.searchsorted(x, x, side="right") / x.size


def edf_at(errors, grid: Sequence[float] | np.ndarray, baseline: float | None = None) -> np.ndarray:
    """F evaluated on a grid of deltas."""
    x = np.sort(deltas(errors, baseline))
    return np.searchsorted(x, np.asarray(grid, dtype=float), side="right") / x.size


def _edf_stat(sample: np.ndarray, grid: np.ndarray, axis: int = -1) -> np.ndarray:
    """F on the grid for (a batch of) resamples, each with its own best trial as baseline."""
    d = sample - sample.min(axis=axis, keepdims=True)
    out = (d[..., None] <= grid).mean(axis=-2)  # (resamples, grid) or (grid,)
    return np.moveaxis(out, -1, 0)  # scipy wants the resample axis last


def summarize(errors, *, auc_up_to: float = 10.0, cap: float = 10.0, baseline: float | None = None) -> dict:
    """Stability summaries of one set of trials.

    within_k: fraction of trials within k points of the best; median_delta; auc: the area
    under the EDF from 0 to ``auc_up_to``, divided by it (1 = every trial as good as the best);
    lr_sensitivity: mean over the trials of min(delta, cap), lower is more stable.
    """
    d = deltas(errors, baseline)
    grid = np.linspace(0.0, auc_up_to, 401)
    out = {f"within_{k:g}": float(np.mean(d <= k)) for k in WITHIN}
    out["median_delta"] = float(np.median(d))
    out["auc"] = float(integrate.trapezoid(edf_at(errors, grid, baseline), grid) / auc_up_to)
    out["lr_sensitivity"] = float(np.mean(np.minimum(d, cap)))
    out["n"] = int(d.size)
    return out


def edf_band(
    errors, grid: Sequence[float] | np.ndarray, *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A pointwise bootstrap confidence band (percentile) for the EDF on ``grid``."""
    arr, grid = as_errors(errors), np.asarray(grid, dtype=float)
    if arr.size < 2:
        point = edf_at(arr, grid)
        return point, point
    res = stats.bootstrap(
        (arr,),
        lambda s, axis=-1: _edf_stat(s, grid, axis),
        vectorized=True,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    point = edf_at(arr, grid)
    # the percentile interval of a step function can sit just off its own point estimate
    return np.minimum(res.confidence_interval.low, point), np.maximum(res.confidence_interval.high, point)


def summary_intervals(
    errors, *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0, **summary_kw
) -> dict[str, tuple[float, float, float]]:
    """Each summary with a percentile bootstrap interval: name -> (estimate, low, high)."""
    arr = as_errors(errors)
    names = [k for k in summarize(arr, **summary_kw) if k != "n"]

    def stat(sample, axis=-1):
        if sample.ndim == 1:
            return np.array([summarize(sample, **summary_kw)[k] for k in names])
        rows = [summarize(row, **summary_kw) for row in np.moveaxis(sample, axis, -1)]
        return np.array([[r[k] for r in rows] for k in names])  # (summaries, resamples)

    point = summarize(arr, **summary_kw)
    estimates = np.array([point[k] for k in names])
    return percentile_intervals((arr,), stat, estimates, names, vectorized=True, confidence=confidence,
                                n_resamples=n_resamples, seed=seed)  # fmt: skip


def percentile_intervals(
    samples: tuple, statistic, point: np.ndarray, names, *, confidence: float, n_resamples: int, seed: int, **kw
) -> dict[str, tuple[float, float, float]]:
    """name -> (estimate, low, high) from scipy's percentile bootstrap of a vector-valued statistic.

    The percentile interval of a step function can sit just off its own point estimate, so each
    interval is widened to contain it; a sample of fewer than two has no spread to resample.
    """
    if min(len(s) for s in samples) < 2:
        return {k: (float(v), float(v), float(v)) for k, v in zip(names, point, strict=True)}
    res = stats.bootstrap(
        samples,
        statistic,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        random_state=np.random.default_rng(seed),
        **kw,
    )
    lo, hi = res.confidence_interval
    return {k: (float(point[i]), float(min(lo[i], point[i])), float(max(hi[i], point[i]))) for i, k in enumerate(names)}


def compare(errors_a, errors_b) -> dict:
    """Do two models' delta distributions differ? Two-sample KS on the deltas."""
    res = stats.ks_2samp(deltas(errors_a), deltas(errors_b))
    return {"ks_statistic": float(res.statistic), "p_value": float(res.pvalue)}


def expected_best(errors, ks: Sequence[int], *, replace: bool = True) -> pd.DataFrame:
    """Expected best (lowest) error of k random trials of the set, and its standard deviation.

    Dodge et al. 2019 ("Show Your Work"): with the errors sorted ascending, the best of k
    draws is the i-th smallest with probability ((n-i+1)/n)^k - ((n-i)/n)^k when drawn with
    replacement (their estimator), or C(n-i, k-1) / C(n, k) without (the unbiased one, k <= n).
    Diverged trials count with error 100, as in the EDF.
    """
    x = np.sort(as_errors(errors))
    n, rows = x.size, []
    rank = np.arange(1, n + 1)
    for k in ks:
        if k < 1 or (not replace and k > n):
            raise ValueError(f"k must be in 1..{n} without replacement (1.. with), got {k}")
        if replace:
            p = ((n - rank + 1) / n) ** k - ((n - rank) / n) ** k
        else:  # in logs: the binomials overflow floats beyond a few hundred trials
            log_p = special.gammaln(n - rank + 1) - special.gammaln(k) - special.gammaln(n - rank - k + 2)
            log_p -= special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
            p = np.where(n - rank >= k - 1, np.exp(log_p), 0.0)
        mean = float(p @ x)
        var = max(0.0, float(p @ (x - mean) ** 2))
        rows.append({"k": int(k), "mean": mean, "std": var**0.5})
    return pd.DataFrame(rows, columns=["k", "mean", "std"])


COMPARED = ("within_1", "within_2", "within_4", "within_8", "median_delta", "auc")


def compare_summaries(
    errors_a, errors_b, *, paired: bool = False, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Each summary's difference a - b with a percentile bootstrap interval: name -> (diff, low, high).

    Both sets are resampled (each with its own best trial as baseline, as in
    ``summary_intervals``); ``paired`` resamples the same indices of both, for two sweeps that
    tried the same (lr, wd) draws in the same order.
    """
    a, b = as_errors(errors_a), as_errors(errors_b)

    def diff(x, y):
        sa, sb = summarize(x), summarize(y)
        return np.array([sa[k] - sb[k] for k in COMPARED])

    return percentile_intervals((a, b), diff, diff(a, b), COMPARED, paired=paired, vectorized=False,
                                confidence=confidence, n_resamples=n_resamples, seed=seed)  # fmt: skip
