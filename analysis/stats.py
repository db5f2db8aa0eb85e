"""EDFs of delta top-1 error, stability summaries, bootstrap bands and permutation tests.

DESIGN section 7: with d_i = err_i - min_j err_j, F(x) = (1/n) #{i : d_i <= x}; diverged
trials count in n with error 100. Every function takes outcomes with lower better: top-1
errors, or any metric's scores (``store.schema.scores``: negated where higher is better,
diverged trials at the metric's diverged value, which may be infinite). Uncertainty comes
from scipy's bootstrap (the baseline is re-estimated inside every resample, since it is itself
a statistic of the sample); tests are scipy's permutation tests (paired where two sweeps tried
the same draws), Holm-adjusted.
"""

from __future__ import annotations

import math
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
    d = arr - (arr.min() if baseline is None else baseline)
    return np.where(np.isnan(d), np.inf, d)  # inf - inf: a diverged trial where none has a finite value


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

    within_k: fraction of trials within k points of the best; median_delta; mean_delta (the
    area above the EDF: the expected excess error of a random draw over the best, what a paired
    comparison tests); auc: the area under the EDF from 0 to ``auc_up_to``, divided by it (1 =
    every trial as good as the best);
    lr_sensitivity: mean over the trials of min(delta, cap), lower is more stable.
    """
    d = deltas(errors, baseline)
    grid = np.linspace(0.0, auc_up_to, 401)
    out = {f"within_{k:g}": float(np.mean(d <= k)) for k in WITHIN}
    out["median_delta"] = float(np.median(d))
    out["mean_delta"] = float(np.mean(d))
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


PAIRED_TEST = "paired sign-flip permutation (difference of mean deltas over the same draws)"
UNPAIRED_TEST = "permutation (difference of median deltas)"
# The summary whose difference each test is on: what a comparison reports as its effect.
TESTED = {True: "mean_delta", False: "median_delta"}


def _mean_delta_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean delta of a minus mean delta of b, each against its own set's best, re-found in every
    permutation (the best is itself a statistic of the sample). Over paired draws it is also the
    mean per-draw difference of deltas: the mean is linear."""
    dx, dy = x - x.min(axis=axis, keepdims=True), y - y.min(axis=axis, keepdims=True)
    return dx.mean(axis=axis) - dy.mean(axis=axis)


def _median_delta_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Median delta of a minus median delta of b, each against its own set's best."""
    return np.median(x - x.min(axis=axis, keepdims=True), axis=axis) - np.median(
        y - y.min(axis=axis, keepdims=True), axis=axis
    )


def compare(errors_a, errors_b, *, paired: bool = False, n_resamples: int = 9999, seed: int = 0) -> dict:
    """Do two sweeps' deltas differ? A permutation test: {"test", "effect", "statistic", "p_value"}
    (two-sided); ``effect`` names the summary whose difference a - b ``statistic`` is.

    Deltas have heavy ties (0 at each best, many at 100 - best for diverged trials), which tests
    built on continuous distributions (Kolmogorov-Smirnov, Wilcoxon's exact tables) do not allow
    for; a permutation test is exact on whatever values there are. Each set's best is re-found
    inside every permutation, as in the bootstrap.

    ``paired`` (both sweeps tried the same draws, in the same order): a sign-flip test that swaps
    the two errors of each draw (scipy's ``permutation_type="samples"``) on the difference of mean
    deltas, which over paired draws equals the mean per-draw difference of deltas. A sign-flip
    test is valid for any statistic; the mean is chosen because (1) it is a difference of two
    per-sweep summaries (the mean delta, the area above each EDF), so the effect a comparison
    reports with its bootstrap interval is the very quantity tested, read off each sweep's own
    EDF; the median of per-draw differences is no such difference (median(x - y) is not
    median(x) - median(y)); and (2) the median of per-draw differences sits at 0 whenever most
    draws tie (both diverged, both at one error) and barely moves under flips, so its test has
    almost no power. Wilcoxon's signed-rank test would need a choice of zero handling and a
    normal approximation with ties. Otherwise: the two sets' trials are pooled and re-split
    (``permutation_type="independent"``) on the difference of median deltas, the summary an
    unpaired comparison reports. Exact (every permutation) where there are at most
    ``n_resamples`` of them, else ``n_resamples`` random ones drawn from ``seed``; a set of one
    trial has nothing to permute (p-value NaN).
    """
    a, b = as_errors(errors_a), as_errors(errors_b)
    if paired and a.size != b.size:
        raise ValueError(f"a paired comparison needs one error per draw in both sets, got {a.size} and {b.size}")
    statistic = _mean_delta_difference if paired else _median_delta_difference
    out = {"test": PAIRED_TEST if paired else UNPAIRED_TEST, "effect": TESTED[paired]}
    if min(a.size, b.size) < 2:  # nothing to permute: no test
        return {**out, "statistic": float(statistic(a, b)), "p_value": float("nan")}
    res = stats.permutation_test(
        (a, b),
        statistic,
        permutation_type="samples" if paired else "independent",
        vectorized=True,
        n_resamples=n_resamples,
        rng=np.random.default_rng(seed),
    )
    return {**out, "statistic": float(res.statistic), "p_value": float(res.pvalue)}


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values for the family-wise error of one report's comparisons.

    Written here because scipy's ``false_discovery_control`` is Benjamini-Hochberg (false
    discovery rate, a weaker promise) and statsmodels is not a dependency. With the m finite
    p-values sorted, p_(i) becomes max_{j <= i} min(1, (m - j + 1) p_(j)); NaN stays NaN and
    is not counted among the m.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def difference_noise(noise_a: float, noise_b: float) -> float:
    """The seed noise of a difference a - b from the seed-noise standard deviations of a and b:
    sqrt(s_a^2 + s_b^2) (independent runs add variances); where one is measured, it stands for
    both: sqrt(2) s; NaN where neither is. Symmetric in a and b."""
    measured = [s for s in (noise_a, noise_b) if s is not None and np.isfinite(s)]
    if not measured:
        return float("nan")
    return float(np.sqrt(sum(s**2 for s in measured) * (2 / len(measured))))


def expected_best(errors, ks: Sequence[int], *, replace: bool = True) -> pd.DataFrame:
    """Expected best (lowest) error of k random trials of the set, and its standard deviation.

    Dodge et al. 2019 ("Show Your Work"): with the errors sorted ascending, the best of k
    draws is the i-th smallest with probability ((n-i+1)/n)^k - ((n-i)/n)^k when drawn with
    replacement (their estimator), or C(n-i, k-1) / C(n, k) without (the unbiased one, k <= n).
    Diverged trials count with error 100, as in the EDF (with an infinite diverged value, the
    best of k is infinite wherever all k draws can be diverged trials).
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
        drawn = p > 0  # a trial that cannot be the best of k adds nothing, even at an infinite error
        mean = float(p[drawn] @ x[drawn])
        var = max(0.0, float(p[drawn] @ (x[drawn] - mean) ** 2)) if np.isfinite(mean) else math.nan
        rows.append({"k": int(k), "mean": mean, "std": var**0.5})
    return pd.DataFrame(rows, columns=["k", "mean", "std"])


COMPARED = ("within_1", "within_2", "within_4", "within_8", "median_delta", "mean_delta", "auc")


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
