"""How many trials a comparison needs: the power table's effect is detected as often as it says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import power
from cli import main


def test_the_detectable_effect_is_detected_80_percent_of_the_time():
    """From an exponential pilot of 32 trials: the effect the table gives for 32 trials per sweep,
    simulated afresh 200 times (other seeds), is detected 80% +- 7% of the time."""
    pilot = 20 + np.random.default_rng(0).exponential(3.0, 32)
    distances = power.pilot_distances(pilot)
    effect = power.detectable_effect(distances, 32, sims=1000, n_resamples=200, seed=0)
    stretch = 1 + effect / distances.mean()
    detected = power.power_at(distances, 32, stretch, sims=200, n_resamples=200, seed=10_000)
    assert 0.73 <= detected <= 0.87, detected
    assert power.power_at(distances, 32, 1.0, sims=200, n_resamples=200, seed=20_000) <= 0.1  # no effect: about alpha


def test_more_trials_detect_smaller_differences_and_a_flat_pilot_none():
    pilot = 20 + np.random.default_rng(1).exponential(3.0, 32)
    table = power.power_table(pilot, trials=(16, 64), sims=200, n_resamples=200)
    small, large = table["detectable_mean_delta_diff"]
    assert large < small
    assert table["share_of_pilot_mean_delta"].iloc[0] == pytest.approx(small / power.pilot_distances(pilot).mean())
    assert math.isinf(power.detectable_effect(np.zeros(8), 16, sims=20, n_resamples=50))


def test_the_power_command(tiny_store, capsys):
    argv = ["power", "--results", str(tiny_store), "--sweep", "vit_c_1gf-adamw-smoke", "--trials", "8", "--sims", "40"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pilot: vit_c_1gf-adamw-smoke (3 trials pooled)" in out and "detectable_mean_delta_diff" in out
    assert main(["power", "--results", str(tiny_store), "--sweep", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: no EDF sweep 'nope'")


def test_a_paired_pilot_s_effect_is_detected_80_percent_of_the_time_and_needs_fewer_trials():
    """Two sweeps of the same 32 draws whose errors share each draw's difficulty (a bowl over the
    draws plus noise): the paired table's effect for 32 trials is detected 80% +- 7% of the time
    in 200 fresh paired comparisons, and is smaller than the unpaired table's for the same pilot."""
    rng = np.random.default_rng(3)
    difficulty = rng.exponential(3.0, 32)
    a, b = 20 + difficulty + rng.normal(0, 0.5, 32), 22 + 1.2 * difficulty + rng.normal(0, 0.5, 32)
    pairs = power.pilot_distances(a, b, paired=True)
    assert pairs.shape == (32, 2)
    effect = power.detectable_effect(pairs, 32, sims=1000, n_resamples=200, seed=0)
    detected = power.power_at(pairs, 32, 1 + effect / pairs.mean(), sims=200, n_resamples=200, seed=10_000)
    assert 0.73 <= detected <= 0.87, detected
    assert effect < power.detectable_effect(pairs.ravel(), 32, sims=200, n_resamples=200, seed=0)
