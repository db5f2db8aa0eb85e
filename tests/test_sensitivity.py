"""Learning-rate and weight-decay sensitivity (Wortsman et al. 2023) against hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import experiments, load_trials
from analysis.sensitivity import BUILT_IN_CLASSES, bins_for, sensitivity, sweep_sensitivity


def grid_sweep() -> pd.DataFrame:
    """A 3 x 2 grid of lr x wd with top-1 errors; one diverged trial (error 100)."""
    lrs, wds = [1e-3, 1e-2, 1e-1], [0.01, 0.1]
    errors = {(1e-3, 0.01): 40.0, (1e-3, 0.1): 35.0, (1e-2, 0.01): 20.0, (1e-2, 0.1): 25.0,
              (1e-1, 0.01): 100.0, (1e-1, 0.1): 95.0}  # fmt: skip
    rows = [
        {
            "index": i,
            "lr": lr,
            "wd": wd,
            "top1_err": errors[lr, wd],
            "status": "diverged" if errors[lr, wd] == 100 else "ok",
        }
        for i, (lr, wd) in enumerate((lr, wd) for lr in lrs for wd in wds)
    ]
    frame = pd.DataFrame(rows).assign(sampler="grid", dataset="digits", metric_score=lambda f: f["top1_err"])
    return frame


def test_a_grid_sweep_s_sensitivity_is_the_formula_with_diverged_trials_at_chance():
    g = grid_sweep()
    chance = 100 * (1 - 1 / 10)  # digits: 10 classes
    # l(lr) is the best over wd: 35, 20, min(95, 100) capped at 90; l* = 20
    assert sweep_sensitivity(g, "lr") == (pytest.approx(((35 - 20) + 0 + (chance - 20)) / 3), 3)
    # l(wd) is the best over lr: 20 at wd 0.01, 25 at wd 0.1; l* = 20
    assert sweep_sensitivity(g, "wd") == (pytest.approx((0 + 5) / 2), 2)


def test_a_random_sweep_is_binned_in_log_lr_over_its_stored_interval():
    space = json.dumps({"lr": ["log", 1e-4, 1.0], "wd": ["log", 0.01, 1.0]})
    lrs = [1.5e-4, 3e-4, 1e-3, 5e-3, 1e-2, 0.5, 0.9, 3e-2, 0.2]  # 9 trials: 3 bins of 4/3 decades each
    errors = [50.0, 45.0, 40.0, 28.0, 30.0, 100.0, 97.0, 33.0, 60.0]
    g = pd.DataFrame({"lr": lrs, "wd": 0.1, "top1_err": errors, "metric_score": errors, "sampler": "random",
                      "space": space, "dataset": "synthetic", "num_classes": 10})  # fmt: skip
    assert bins_for(9) == 3
    edges = np.log([1e-4, 10 ** (-8 / 3), 10 ** (-4 / 3), 1.0])
    bins = np.digitize(np.log(lrs), edges[1:-1])
    assert bins.tolist() == [0, 0, 0, 1, 1, 2, 2, 1, 2]
    # per bin the best, capped at chance (90): 40, 28, min(90, 90, 60) = 60; l* = 28
    assert sweep_sensitivity(g, "lr") == (pytest.approx(((40 - 28) + 0 + (60 - 28)) / 3), 3)
    assert math.isnan(sweep_sensitivity(g, "wd")[0])  # wd held at one value: no sensitivity


def test_a_metric_without_a_known_start_has_no_sensitivity():
    g = grid_sweep().assign(metric="loss", metric_direction="minimize", metric_diverged=math.inf, loss=1.0)
    assert math.isnan(sweep_sensitivity(g, "lr")[0])


@settings(max_examples=50, deadline=None)
@given(
    scores=st.lists(st.floats(0, 200, allow_nan=False), min_size=2, max_size=30),
    shift=st.floats(-50, 50, allow_nan=False),
    initial=st.floats(1, 150, allow_nan=False),
)
def test_sensitivity_laws(scores, shift, initial):
    """Zero when every value is as good as the best; between 0 and l0 - l*; unchanged when every
    outcome and l0 move by one constant (it measures distances, not levels); unknown (NaN) with
    one value, or where nothing beat l0."""
    values = np.arange(len(scores)) % 5
    s, n = sensitivity(values, scores, initial=initial)
    capped = np.minimum(scores, initial)
    assert n == len(set(values.tolist()))
    if capped.min() >= initial:
        assert math.isnan(s)
        return
    assert -1e-9 <= s <= initial - capped.min() + 1e-9
    moved, _ = sensitivity(values, np.array(scores) + shift, initial=initial + shift)
    assert moved == pytest.approx(s, abs=1e-6)
    level = min(3.0, initial - 1)
    assert sensitivity(values, np.full(len(scores), level), initial=initial)[0] == 0.0
    assert math.isnan(sensitivity(np.zeros(len(scores)), scores, initial=initial)[0])


def test_the_built_in_class_counts_are_the_loaders():
    from stability.data import load_dataset

    for name in ("digits", "synthetic"):
        assert load_dataset(name, None, 8).num_classes == BUILT_IN_CLASSES[name]


def test_the_summary_table_has_each_sweep_s_sensitivities(tiny_store):
    """Trial rows record their data's class count; the table's numbers are the function's."""
    trials = load_trials(tiny_store)
    assert set(trials["num_classes"].dropna()) == {10}
    table = experiments.stability_table(trials, n_resamples=20).set_index("sweep")
    sets = experiments.edf_sets(trials)
    for sweep, g in sets.items():
        assert table.loc[sweep, "lr_sensitivity"] == pytest.approx(sweep_sensitivity(g, "lr")[0])
        assert table.loc[sweep, "lr_sensitivity_points"] == bins_for(len(g))
    assert "capped_mean_delta" in table and "wd_sensitivity" in table


def test_one_occupied_bin_or_nothing_better_than_chance_is_unknown_not_zero():
    g = grid_sweep()
    assert not math.isnan(sweep_sensitivity(g[g["lr"] == 1e-2], "wd")[0])  # two wd values at one lr: known
    one_value = g[g["wd"] == 0.1]
    assert math.isnan(sweep_sensitivity(one_value, "wd")[0])  # one value: no sensitivity, not 0
    at_chance = g.assign(top1_err=95.0, metric_score=95.0)
    assert math.isnan(sweep_sensitivity(at_chance, "lr")[0])  # no trial beat chance: l* = l0


def test_grid_sampler_sweeps_get_their_sensitivity_in_a_table_of_their_own():
    """A --sampler grid sweep is not an EDF sweep (the summary table leaves it out); its exact
    sensitivity is in ``experiments.sensitivity_table``."""
    g = grid_sweep().drop(columns=["metric_score"])
    trials = g.assign(sweep="scan", model="vit_c_nano", family="ViT_C", optimizer="adamw", epochs=3)
    table = experiments.sensitivity_table(trials).set_index("sweep")
    assert table.loc["scan", "lr_sensitivity"] == pytest.approx(((35 - 20) + 0 + (90 - 20)) / 3)
    assert table.loc["scan", "lr_sensitivity_points"] == 3 and table.loc["scan", "trials"] == 6


def test_a_trainable_s_declared_start_is_its_l0_in_its_own_direction():
    """Validation accuracy (higher is better) declared to start at chance, 10%: l(lr) is the best
    accuracy at each lr (60, 80, and a diverged 0 that counts as 10); the mean distance to 80 is
    (20 + 0 + 70) / 3 = 30 points."""
    acc = [60.0, 50.0, 80.0, 70.0, 0.0, 5.0]
    g = grid_sweep().assign(val_acc=acc, metric="val_acc", metric_direction="maximize", metric_diverged=0.0,
                            metric_initial=10.0, metric_score=[-a for a in acc])  # fmt: skip
    assert sweep_sensitivity(g, "lr") == (pytest.approx(30.0), 3)
    assert math.isnan(sweep_sensitivity(g.drop(columns=["metric_initial"]), "lr")[0])
