"""EDFs of distances to the best, stability summaries, and the intervals, bands and tests on them.

With d_i = err_i - min_j err_j, F(x) = (1/n) #{i : d_i <= x}; diverged trials count in n at the
metric's diverged value (error 100 for top-1 error). Every function takes outcomes with lower
better: top-1 errors, or any metric's scores (``store.schema.scores``).

Every summary is measured from the sweep's best, which is itself a noisy statistic: the estimand
of a summary is its expected value over re-runs of a sweep of the same size (new draws, new
seeds). Its uncertainty comes from one resampling scheme, used for every interval, band and test
(docs/analysis.md, "Statistics", says why and shows its calibration):

- the draws are resampled with replacement (the same indices in both sweeps where they are
  paired), for the part of each summary that is an average over draws;
- the best is *not* taken from the resample (a resample keeps the sample's minimum only about
  63% of the time and never goes below it, so its spread is far too small): it is the observed
  best plus a Gaussian fluctuation of the size of the best's sampling spread, estimated from the
  gaps between the sweep's lowest trials (``best_spread``);
- each within-k fraction gets one pseudo-trial, within or not with equal odds (in a pair, within
  in one sweep and not in the other), so that a fraction at 0 or 1, or a pair with no discordant
  draw, does not collapse to a zero-width interval (the resampling analogue of Agresti and
  Coull's added trials).

An interval is the resampled distribution centred on the estimate (the estimate is unbiased for
its estimand, so the resamples' own bias is taken out); a p-value is read off the same resamples,
so that p <= alpha exactly when the 1 - alpha interval excludes 0. scipy's ``bootstrap`` resamples data
only, so it cannot redraw the baseline apart from the draws; this is written by hand for that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as scipy_stats

WITHIN = (1.0, 2.0, 4.0, 8.0)
AUC_UP_TO = 10.0  # the area under the EDF is taken on [0, 10] points
CAP = 10.0  # capped_mean_delta: a draw counts at most this far from the best
SUMMARIES = ("within_1", "within_2", "within_4", "within_8", "median_delta", "mean_delta", "auc", "capped_mean_delta")
COMPARED = ("within_1", "within_2", "within_4", "within_8", "median_delta", "mean_delta", "auc")
FRACTIONS = {"within_1", "within_2", "within_4", "within_8"}
EFFECT = "mean_delta"  # the summary whose difference a comparison tests: the area above each EDF
CONFIDENCE = 0.95


def as_errors(errors: Sequence[float] | np.ndarray) -> np.ndarray:
    """Errors as floats; a missing (NaN) error is a trial that produced none and counts as 100."""
    arr = np.asarray(errors, dtype=float)
    if arr.size == 0:
        raise ValueError("an EDF needs at least one trial")
    return np.where(np.isnan(arr), 100.0, arr)


def largest_distance(*sweeps: Sequence[float] | np.ndarray) -> float:
    """The largest finite distance to its own best over one or more sweeps: where a trial with an
    infinite score (a diverged trial of a metric whose diverged value is infinite, such as a loss)
    counts in means and medians, so that it is at least as far from the best as the worst trial
    that trained, in any of the sweeps compared. A distance, so a sweep shifted by a constant keeps
    every verdict; 0 where no sweep has a finite score."""
    out = 0.0
    for errors in sweeps:
        arr = as_errors(errors)
        finite = arr[np.isfinite(arr)]
        if finite.size:
            out = max(out, float(finite.max() - finite.min()))
    return out


def best_of(errors: Sequence[float] | np.ndarray) -> float:
    """The best (lowest) finite score; 0 where none is finite (every trial alike)."""
    return float(_finite_min(as_errors(errors)))


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


def _summaries(x: np.ndarray, best: np.ndarray, pseudo: np.ndarray | None = None, cap: float = math.inf) -> np.ndarray:
    """Every summary (``SUMMARIES`` order, last axis) of sets ``x`` (..., n) against baselines
    ``best`` (...,); ``pseudo`` (...,): one more trial per fraction, within (1) or not (0);
    ``cap``: the distance an infinite score counts at in means and medians (``largest_distance``)."""
    d = x - best[..., None]
    capped = np.where(np.isinf(x), cap, d)
    n = x.shape[-1]
    counts = [np.count_nonzero(d <= k, axis=-1) for k in WITHIN]
    fractions = [c / n if pseudo is None else (c + pseudo) / (n + 1) for c in counts]
    auc = np.clip(1.0 - d / AUC_UP_TO, 0.0, 1.0).mean(axis=-1)  # the EDF's area on [0, 10], exactly
    rest = [np.median(capped, axis=-1), capped.mean(axis=-1), auc, np.minimum(d, CAP).mean(axis=-1)]
    return np.stack([*fractions, *rest], axis=-1)


def summarize(errors, *, baseline: float | None = None) -> dict:
    """Stability summaries of one set of trials.

    within_k: fraction of trials within k points of the best; median_delta; mean_delta (the
    area above the EDF: the expected excess error of a random draw over the best, what a
    comparison tests); auc: the area under the EDF from 0 to 10 points, divided by 10 (1 = every
    trial as good as the best); capped_mean_delta: mean over the trials of min(delta, 10), lower is
    more stable (what earlier releases named lr_sensitivity; the learning rate's sensitivity is
    ``analysis.sensitivity``'s). An infinite score is never within k, and counts at the largest finite distance in
    the median and mean (``largest_distance``).
    """
    x = as_errors(errors)
    best = np.array(best_of(x) if baseline is None else baseline, dtype=float)
    out = dict(zip(SUMMARIES, map(float, _summaries(x, best, cap=largest_distance(x))), strict=True))
    out["n"] = int(x.size)
    return out


# sqrt(E[(x(k+1) - x(1))^2]) / sd(best) for the k lowest gaps, measured on 32-trial sweeps whose
# errors are a smooth bowl over the hyperparameters plus Gaussian seed noise of 0.7 points (at 0.2
# and 2 points the same ratio for three gaps is 2.78 and 2.06): the squared estimate is unbiased for
# the best's variance there (docs/analysis.md, "Statistics").
SPREAD_DIVISOR = {1: 1.2, 2: 1.75, 3: 2.2}


def best_spread(scores: Sequence[float] | np.ndarray) -> float:
    """The standard deviation of a sweep's best over re-runs of the sweep, estimated from the
    distance between its best and its fourth-lowest distinct finite value (its three lowest gaps).
    The best of n noisy trials moves by about the gaps between the lowest trials; one gap alone is
    as noisy as an exponential draw, three are steadier. Distinct values, because errors counted
    over a test set are quantized (0.05 points on 2,000 images) and tie at the best, where the best
    still moves. Calibrated (``SPREAD_DIVISOR``) where seed noise is Gaussian; it errs wide
    (conservative) where the lowest trials lie further apart than that."""
    x = np.unique(np.asarray(scores, dtype=float))
    lowest = x[np.isfinite(x)][:4]
    k = lowest.size - 1
    return float((lowest[-1] - lowest[0]) / SPREAD_DIVISOR[k]) if k >= 1 else 0.0


def _baselines(x: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` draws of the best: the observed best plus a Gaussian fluctuation of ``best_spread``'s
    size. (A minimum's own skew, a Gumbel shape, measured worse: with intervals centred on the
    estimate it shifted them, for a test of 4.8% size and 0.83 power where this gives 3.7% and 0.89.)"""
    return best_of(x) + best_spread(x) * rng.standard_normal(count)


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval and the p-value of "the estimand is 0", read off one resampling."""

    estimate: float
    low: float
    high: float
    p_value: float


def _read(estimate: np.ndarray, resampled: np.ndarray, confidence: float) -> list[Interval]:
    """Intervals and two-sided p-values for each column of ``resampled`` (B, m).

    With c the resampled values centred on their mean, the interval is the middle ``confidence``
    of e + c (the resampled distribution moved onto the estimate e: its percentile interval, less
    its bias), and the test of "estimand = t" has p(t) = min(1, 2 min(#{c <= t - e} + 1,
    #{c >= t - e} + 1) / (B + 1)), so that the interval is exactly {t : p(t) > alpha}:
    [e + c_(j+1), e + c_(B-j)] with j = floor(alpha (B + 1) / 2) - 1. Too few resamples to reject
    at alpha give an infinite interval, never a short one.
    """
    b = resampled.shape[0]
    centred = np.sort(resampled - resampled.mean(axis=0), axis=0)
    j = math.floor((1 - confidence) * (b + 1) / 2 + 1e-9) - 1
    out = []
    for i, e in enumerate(estimate):
        c = centred[:, i]
        below, above = np.searchsorted(c, -e, side="right"), b - np.searchsorted(c, -e, side="left")
        p = min(1.0, 2 * (int(min(above, below)) + 1) / (b + 1))
        low, high = (float(e + c[j]), float(e + c[b - 1 - j])) if j >= 0 else (-math.inf, math.inf)
        out.append(Interval(float(e), low, high, p))
    return out


def summary_intervals(
    errors, *, confidence: float = CONFIDENCE, n_resamples: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Each summary of one sweep with its interval: name -> (estimate, low, high) (module docstring)."""
    x = as_errors(errors)
    rng = np.random.default_rng(seed)
    cap = largest_distance(x)
    point = _summaries(x, np.array(best_of(x)), cap=cap)
    if x.size < 2:  # nothing to resample: no interval
        return {k: (float(v), -math.inf, math.inf) for k, v in zip(SUMMARIES, point, strict=True)}
    sample = x[rng.integers(0, x.size, (n_resamples, x.size))]
    resampled = _summaries(sample, _baselines(x, n_resamples, rng), rng.integers(0, 2, n_resamples), cap)
    read = _read(point, resampled, confidence)
    return {
        k: (r.estimate, *_within_range(k, r.low, r.high, difference=False))
        for k, r in zip(SUMMARIES, read, strict=True)
    }


def _within_range(name: str, low: float, high: float, *, difference: bool) -> tuple[float, float]:
    """An interval cut to the values its summary can take: a fraction or an area in [0, 1] (a
    difference of two in [-1, 1]); a distance to the best at least 0 (a difference: any)."""
    if name in FRACTIONS or name == "auc":
        bound = (-1.0 if difference else 0.0, 1.0)
    else:
        bound = (-math.inf if difference else 0.0, math.inf)
    return max(low, bound[0]), min(high, bound[1])


def edf_band(
    errors,
    grid: Sequence[float] | np.ndarray,
    *,
    confidence: float = CONFIDENCE,
    n_resamples: int = 2000,
    seed: int = 0,
    simultaneous: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A band for the EDF on ``grid``: simultaneous (the whole expected EDF lies inside it with
    ``confidence``: F(x) +- the quantile of the largest centred deviation over the grid, a
    constant width) or pointwise (each x alone). Resampled as in the module
    docstring; clipped to [0, 1]."""
    x, grid = as_errors(errors), np.asarray(grid, dtype=float)
    point = edf_at(errors, grid)
    if x.size < 2 or not np.isfinite(x).any():  # nothing to resample, or no trial with a distance
        return np.zeros_like(point), np.ones_like(point)
    rng = np.random.default_rng(seed)
    sample = x[rng.integers(0, x.size, (n_resamples, x.size))]
    d = sample - _baselines(x[np.isfinite(x)], n_resamples, rng)[:, None]  # an infinite score stays beyond every x
    pseudo = rng.integers(0, 2, n_resamples)
    resampled = np.stack([np.count_nonzero(d <= t, axis=1) + pseudo for t in grid], axis=1) / (x.size + 1)
    if simultaneous:
        widest = np.abs(resampled - resampled.mean(axis=0)).max(axis=1)
        half = float(np.quantile(widest, confidence, method="higher"))
        return np.clip(point - half, 0, 1), np.clip(point + half, 0, 1)
    read = _read(point, resampled, confidence)
    return np.clip([r.low for r in read], 0, 1), np.clip([r.high for r in read], 0, 1)


PAIRED_TEST = "paired bootstrap (the same draws resampled in both sweeps; each best redrawn from its lowest trials)"
UNPAIRED_TEST = "bootstrap (each sweep resampled alone; each best redrawn from its lowest trials)"


def summary_differences(
    errors_a, errors_b, *, paired: bool = False, confidence: float = CONFIDENCE, n_resamples: int = 2000, seed: int = 0
) -> dict[str, Interval]:
    """Each compared summary's difference a - b with its interval and the p-value of "no
    difference", all from one resampling (module docstring). Its null, for ``EFFECT``: both sweeps
    have the same expected mean delta at their sizes, whatever their levels (a constant added to
    every error changes no delta): equal stability, levels free. ``paired``: both tried the same
    draws in the same order, and are resampled by the same indices. Infinite scores count at the
    largest finite distance of the two in means and medians, and are never within k."""
    a, b = as_errors(errors_a), as_errors(errors_b)
    if paired and a.size != b.size:
        raise ValueError(f"a paired comparison needs one error per draw in both sets, got {a.size} and {b.size}")
    cap = largest_distance(a, b)
    keep = [SUMMARIES.index(k) for k in COMPARED]
    point = (_summaries(a, np.array(best_of(a)), cap=cap) - _summaries(b, np.array(best_of(b)), cap=cap))[keep]
    if min(a.size, b.size) < 2:  # nothing to resample: no interval, no test
        return {k: Interval(float(v), -math.inf, math.inf, math.nan) for k, v in zip(COMPARED, point, strict=True)}
    rng = np.random.default_rng(seed)
    index_a = rng.integers(0, a.size, (n_resamples, a.size))
    index_b = index_a if paired else rng.integers(0, b.size, (n_resamples, b.size))
    pseudo_a = rng.integers(0, 2, n_resamples)
    pseudo_b = 1 - pseudo_a if paired else rng.integers(0, 2, n_resamples)  # a pair: one discordant pseudo-draw
    resampled = _summaries(a[index_a], _baselines(a, n_resamples, rng), pseudo_a, cap) - _summaries(
        b[index_b], _baselines(b, n_resamples, rng), pseudo_b, cap
    )
    read = _read(point, resampled[:, keep], confidence)
    return {
        k: Interval(r.estimate, *_within_range(k, r.low, r.high, difference=True), r.p_value)
        for k, r in zip(COMPARED, read, strict=True)
    }


def compare_summaries(
    errors_a, errors_b, *, paired: bool = False, confidence: float = CONFIDENCE, n_resamples: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """Each summary's difference a - b with its interval: name -> (diff, low, high) (``summary_differences``)."""
    got = summary_differences(errors_a, errors_b, paired=paired, confidence=confidence, n_resamples=n_resamples,
                              seed=seed)  # fmt: skip
    return {k: (r.estimate, r.low, r.high) for k, r in got.items()}


def compare(
    errors_a, errors_b, *, paired: bool = False, confidence: float = CONFIDENCE, n_resamples: int = 2000, seed: int = 0
) -> dict:
    """Are two sweeps equally stable? {"test", "effect", "statistic", "p_value", "low", "high"}:
    the difference a - b of mean deltas (``EFFECT``, the area above each EDF), its 95% interval and
    the two-sided p-value of "equal stability, levels free", read off one resampling, so that
    p <= 0.05 exactly when the interval excludes 0 (``summary_differences``). Diverged trials are
    data: an infinite score counts at the largest finite distance, so every value is finite; a set of
    one trial has nothing to resample (p-value NaN, an infinite interval)."""
    got = summary_differences(
        errors_a, errors_b, paired=paired, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    r = got[EFFECT]
    test = PAIRED_TEST if paired else UNPAIRED_TEST
    return {"test": test, "effect": EFFECT, "statistic": r.estimate, "p_value": r.p_value, "low": r.low, "high": r.high}


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values for the family-wise error of one family of comparisons.

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


def seed_noise_interval(std: float, seeds: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The interval of a seed-noise standard deviation measured from ``seeds`` runs (chi-square with
    seeds - 1 degrees of freedom, for Gaussian noise): three seeds give about [0.52 s, 6.3 s]."""
    if seeds < 2 or not np.isfinite(std):
        return math.nan, math.nan
    alpha, df = 1 - confidence, seeds - 1
    chi = scipy_stats.chi2.ppf([1 - alpha / 2, alpha / 2], df)
    low, high = std * np.sqrt(df / chi)
    return float(low), float(high)


@dataclass(frozen=True)
class NoiseFloor:
    """How far the compared difference moves when every trial is re-run under another seed."""

    floor: float  # its standard deviation
    low: float  # the floor at the low end of both seed-noise intervals
    high: float  # ... at the high end
    shift: float  # the mean change of the difference from seed noise alone (a noisier sweep's best is pulled down)


def noise_floor(
    errors_a,
    errors_b,
    noise_a: tuple[float, float, float],
    noise_b: tuple[float, float, float],
    *,
    fixed_a=None,
    fixed_b=None,
    n_sims: int = 2000,
    seed: int = 0,
) -> NoiseFloor:
    """The seed-noise floor of the difference of mean deltas: every trial's score plus Gaussian
    noise of its sweep's measured standard deviation, the difference recomputed, ``n_sims`` times.
    ``noise_*``: (std, low, high) of each sweep's seed noise (``seed_noise_interval``); ``fixed_*``:
    trials that keep their score (diverged ones). The noise is measured at each sweep's best only:
    the floor assumes the same noise at every draw."""
    a, b = as_errors(errors_a), as_errors(errors_b)
    cap = largest_distance(a, b)
    rng = np.random.default_rng(seed)
    za, zb = rng.standard_normal((n_sims, a.size)), rng.standard_normal((n_sims, b.size))
    if fixed_a is not None:
        za[:, np.asarray(fixed_a, dtype=bool)] = 0.0
    if fixed_b is not None:
        zb[:, np.asarray(fixed_b, dtype=bool)] = 0.0
    at = SUMMARIES.index(EFFECT)

    def moved(sa: float, sb: float) -> np.ndarray:
        xa, xb = a + sa * za, b + sb * zb
        return _summaries(xa, _finite_min(xa), cap=cap)[:, at] - _summaries(xb, _finite_min(xb), cap=cap)[:, at]

    observed = _summaries(a, np.array(best_of(a)), cap=cap)[at] - _summaries(b, np.array(best_of(b)), cap=cap)[at]
    diffs = moved(noise_a[0], noise_b[0])
    low, high = (float(moved(noise_a[i], noise_b[i]).std()) for i in (1, 2))
    return NoiseFloor(float(diffs.std()), low, high, float(diffs.mean() - observed))


def _finite_min(x: np.ndarray) -> np.ndarray:
    """Each row's best finite score (0 where a row has none, as ``best_of``)."""
    best = np.where(np.isfinite(x), x, np.inf).min(axis=-1)
    return np.where(np.isfinite(best), best, 0.0)


def expected_best(errors, ks: Sequence[int], *, replace: bool = False) -> pd.DataFrame:
    """Expected best (lowest) error of k random trials of the set, and its standard deviation.

    With the errors sorted ascending, the best of k draws is the i-th smallest with probability
    C(n-i, k-1) / C(n, k) without replacement (the default: unbiased for the best of k fresh
    trials, k <= n; Tang et al. 2020), or ((n-i+1)/n)^k - ((n-i)/n)^k with replacement (Dodge et
    al. 2019's estimator, biased). Diverged trials count at their score, as in the EDF (with an
    infinite diverged value, the best of k is infinite wherever all k draws can be diverged trials).
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


def estimator_name(replace: bool) -> str:
    """How an expected-best curve was estimated, for captions."""
    return "with replacement (Dodge et al. 2019, biased)" if replace else "without replacement (unbiased)"
