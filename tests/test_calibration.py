"""Calibration of every verdict by seeded simulation where the truth is known.

Sweeps are simulated as the errors of draws u in [0, 1) (a draw's position in the sweep's lr/wd
interval) on a bowl: err = level + c * 4 (u - 0.5)^2 + N(0, 0.7^2) seed noise, 32 draws a
sweep; a steeper bowl (larger c) is a less stable model. Two sweeps are "paired" when they share
their draws. The truth of a summary is its expected value over sweeps of the same size, from
20,000 simulated sweeps. Each claim is checked against a binomial tolerance of three standard
errors around the nominal level; the calibration of docs/analysis.md, "Statistics", is the same
simulation at more repetitions.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis import stats

N = 32  # draws per sweep
ALPHA = 0.05
STABLE, STEEP = 14.0, 22.0  # bowl heights: the steeper bowl is the less stable sweep


def sweeps(rng: np.random.Generator, count: int, c: float, level: float, u: np.ndarray | None = None) -> np.ndarray:
    """``count`` sweeps (count, N) of one bowl; ``u``: the draws (shared where sweeps are paired)."""
    u = rng.random((count, N)) if u is None else u
    return level + c * 4 * (u - 0.5) ** 2 + rng.normal(0.0, 0.7, u.shape)


def pairs(seed: int, count: int, c_b: float, level_b: float, *, paired: bool):
    """``count`` pairs of sweeps: a on the stable bowl at level 24, b on bowl c_b at 24 + level_b."""
    rng = np.random.default_rng(seed)
    u = rng.random((count, N))
    a = sweeps(rng, count, STABLE, 24.0, u)
    b = sweeps(rng, count, c_b, 24.0 + level_b, u if paired else None)
    return a, b


def truth(c_a: float, c_b: float, level_b: float, *, paired: bool) -> dict[str, float]:
    """The expected difference of each compared summary, from 20,000 simulated pairs."""
    a, b = pairs(12345, 20_000, c_b, level_b, paired=paired)
    if c_a != STABLE:
        raise ValueError("a is the stable bowl")
    keep = [stats.SUMMARIES.index(k) for k in stats.COMPARED]
    diff = stats._summaries(a, a.min(axis=1)) - stats._summaries(b, b.min(axis=1))
    return dict(zip(stats.COMPARED, diff[:, keep].mean(axis=0), strict=True))


def upper(rate: float, count: int) -> float:
    """The nominal rate plus three binomial standard errors: what a calibrated rate stays under."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / count)


def rejection_rate(a: np.ndarray, b: np.ndarray, *, paired: bool) -> float:
    p = [
        stats.compare(x, y, paired=paired, n_resamples=1000, seed=i)["p_value"]
        for i, (x, y) in enumerate(zip(a, b, strict=True))
    ]
    return float(np.mean(np.asarray(p) <= ALPHA))


@pytest.mark.parametrize("paired", [True, False])
def test_equal_stability_at_another_level_is_rejected_at_the_nominal_rate(paired):
    a, b = pairs(1, 400, STABLE, 5.0, paired=paired)  # b: the same bowl, 5 points higher
    assert rejection_rate(a, b, paired=paired) <= upper(ALPHA, 400)


@pytest.mark.parametrize("level", [0.0, 5.0])
def test_a_steeper_sweep_is_found_at_its_own_level_or_another(level):
    a, b = pairs(2, 400, STEEP, level, paired=True)
    assert rejection_rate(a, b, paired=True) >= 0.85
    a, b = pairs(3, 200, STEEP, level, paired=False)
    assert rejection_rate(a, b, paired=False) >= 0.3  # unpaired: each sweep's draws add their own noise


def test_identical_sweeps_with_one_diverged_trial_each_are_not_called_different():
    rng = np.random.default_rng(4)
    a, b = sweeps(rng, 200, STABLE, 24.0), sweeps(rng, 200, STABLE, 24.0)  # a loss-like metric, lower better
    a[np.arange(200), rng.integers(0, N, 200)] = np.inf  # one diverged trial each, anywhere
    b[np.arange(200), rng.integers(0, N, 200)] = np.inf
    for paired in (True, False):
        got = [
            stats.compare(x, y, paired=paired, n_resamples=1000, seed=i)
            for i, (x, y) in enumerate(zip(a, b, strict=True))
        ]
        p = np.array([g["p_value"] for g in got])
        assert np.isfinite(p).all() and np.isfinite([g["statistic"] for g in got]).all()
        assert np.isfinite([g["low"] for g in got]).all() and np.isfinite([g["high"] for g in got]).all()
        assert np.mean(p > ALPHA) >= 1 - upper(ALPHA, 200)  # a calibrated size, not only the 10% asked


@pytest.mark.parametrize(("c_b", "level_b", "paired"), [(STABLE, 5.0, True), (STEEP, 5.0, True), (STEEP, 0.0, False)])
def test_every_compared_summary_interval_covers_its_truth(c_b, level_b, paired):
    true = truth(STABLE, c_b, level_b, paired=paired)
    a, b = pairs(5, 1000, c_b, level_b, paired=paired)
    covered = {k: 0 for k in stats.COMPARED}
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for k, r in stats.summary_differences(x, y, paired=paired, n_resamples=1000, seed=i).items():
            covered[k] += r.low <= true[k] <= r.high
    rates = {k: v / 1000 for k, v in covered.items()}
    assert min(rates.values()) >= 1 - upper(ALPHA, 1000), str(rates)  # 0.929


def test_the_p_value_and_the_interval_are_one_claim():
    a, b = pairs(6, 300, STEEP, 5.0, paired=True)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for r in stats.summary_differences(x, y, paired=True, n_resamples=999, seed=i).values():
            assert (r.p_value <= ALPHA) == (not r.low <= 0 <= r.high)


def test_a_single_sweeps_intervals_and_simultaneous_band_cover_their_truth():
    rng = np.random.default_rng(7)
    many = sweeps(rng, 20_000, STABLE, 24.0)
    grid = np.linspace(0.0, 16.0, 33)
    d = many - many.min(axis=1, keepdims=True)
    true_edf = (d[:, :, None] <= grid).mean(axis=1).mean(axis=0)  # the expected EDF of a 32-draw sweep
    true = dict(zip(stats.SUMMARIES, stats._summaries(many, many.min(axis=1)).mean(axis=0), strict=True))
    sample = sweeps(rng, 600, STABLE, 24.0)
    band = summary = 0
    for i, x in enumerate(sample):
        lo, hi = stats.edf_band(x, grid, n_resamples=1000, seed=i)
        band += bool(np.all((lo <= true_edf) & (true_edf <= hi)))
        summary += np.array(
            [lo_ <= true[k] <= hi_ for k, (_, lo_, hi_) in stats.summary_intervals(x, n_resamples=1000, seed=i).items()]
        )
    assert band / 600 >= 1 - upper(ALPHA, 600)
    assert (summary / 600 >= 1 - upper(ALPHA, 600)).all(), str(dict(zip(stats.SUMMARIES, summary / 600, strict=True)))
