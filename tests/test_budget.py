"""Budgets against hand computations: trials to target, performance profiles, the probability of
being best at a budget."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import budget, load_trials


@pytest.mark.parametrize(("delta", "k"), [(4.0, 1), (2.0, 2), (1.0, 2), (0.5, 3), (0.0, 4)])
def test_trials_to_target_counted_by_hand(delta, k):
    """Scores 0, 1, 3, 5. Without replacement the best of 2 is the i-th lowest with odds
    C(4 - i, 1) / C(4, 2) = 3/6, 2/6, 1/6: expected 5/6; of 3, C(4 - i, 2) / C(4, 3) = 3/4, 1/4:
    1/4; of 1, the mean 9/4; of 4, the best."""
    assert budget.trials_to_target([5.0, 0.0, 3.0, 1.0], delta) == k


def profile_table() -> pd.DataFrame:
    """k* of methods a and b on three workloads: a (2, 4, 8), b (4, 4, 2)."""
    rows = [("vit_c_1gf", "a", 2), ("vit_c_4gf", "a", 4), ("vit_c_18gf", "a", 8),
            ("vit_c_1gf", "b", 4), ("vit_c_4gf", "b", 4), ("vit_c_18gf", "b", 2)]  # fmt: skip
    return pd.DataFrame(
        [
            {
                "protocol": "p",
                "model": m,
                "family": "ViT_C",
                "optimizer": o,
                "epochs": 3,
                "delta": "2 points",
                "k_star": k,
            }
            for m, o, k in rows
        ]
    )


def test_the_performance_profile_counted_by_hand():
    """Ratios to each workload's best k*: a (1, 1, 4), b (2, 1, 1); tau_max 4. rho_a is 2/3 up to
    4 then 1; rho_b 2/3 up to 2 then 1. Areas over [1, 4] / 3: a (2/3 * 3) / 3 = 2/3, b
    (2/3 * 1 + 1 * 2) / 3 = 8/9."""
    profile = budget.performance_profile(profile_table(), "2 points")
    a, b = (profile[profile["method"] == m] for m in ("a", "b"))
    assert list(a["tau"]) == [1, 4] and list(a["rho"]) == pytest.approx([2 / 3, 1])
    assert list(b["tau"]) == [1, 2] and list(b["rho"]) == pytest.approx([2 / 3, 1])
    assert a["area"].iloc[0] == pytest.approx(2 / 3) and b["area"].iloc[0] == pytest.approx(8 / 9)
    assert set(profile["workloads"]) == {3}


def test_a_method_that_is_lower_everywhere_is_always_best():
    sets = {
        name: pd.DataFrame({"index": range(16), "metric_score": base + np.arange(16.0)})
        for name, base in (("low", 10.0), ("high", 30.0))
    }
    odds = budget.probability_best(sets, 4, n_resamples=200, seed=1)
    assert odds == {"low": 1.0, "high": 0.0}
    same = {"x": sets["low"], "y": sets["low"].copy()}
    odds = budget.probability_best(same, 4, n_resamples=400, seed=2)
    assert sum(odds.values()) == pytest.approx(1.0) and abs(odds["x"] - 0.5) < 0.1  # exchangeable: even odds


def test_sweeps_of_different_sizes_are_compared_on_their_first_draws():
    sets = {"long": pd.DataFrame({"index": range(8)}), "short": pd.DataFrame({"index": range(5)})}
    assert {n: len(g) for n, g in budget.first_trials(sets).items()} == {"long": 5, "short": 5}


def test_the_budget_table_of_a_store(tiny_store):
    table = budget.budget_table(load_trials(tiny_store))
    assert set(table["delta"]) == {"1 points", "2 points", "4 points"}
    for _, r in table.iterrows():
        assert 1 <= r["k_star"] <= r["trials"] == 3
    by_delta = table.pivot_table(index="sweep", columns="delta", values="k_star")
    assert (by_delta["1 points"] >= by_delta["4 points"]).all()  # a looser target needs no more trials


def test_the_shared_draws_are_counted_by_index_whatever_failed():
    """Failed trials leave no row: the prefix is each sweep's planned draws below the smallest
    planned count, not the shortest row count."""
    full = pd.DataFrame({"index": range(32)})
    holed = pd.DataFrame({"index": [i for i in range(32) if i not in (5, 9)]})  # two failed
    longer = pd.DataFrame({"index": range(64)})
    kept = budget.first_trials({"full": full, "holed": holed, "longer": longer})
    assert {n: len(g) for n, g in kept.items()} == {"full": 32, "holed": 30, "longer": 32}


def test_another_metric_s_profile_compares_methods_at_one_share_of_each_range():
    rows = []
    for model, spread in (("m1", 1.0), ("m2", 3.0)):
        for optim, scale in (("adamw", 1.0), ("sgd", 2.0)):
            for i, loss in enumerate(np.linspace(0, spread * scale, 8)):
                rows.append({"sweep": f"{model}-{optim}", "index": i, "model": model, "family": "F", "optimizer": optim,
                             "epochs": 3, "status": "ok", "sampler": "random", "dataset": "d", "loss": 1 + loss,
                             "metric": "loss", "metric_direction": "minimize", "metric_diverged": np.inf})  # fmt: skip
    table = budget.budget_table(pd.DataFrame(rows))
    assert set(table["delta"]) == {"5% of its range", "10% of its range", "20% of its range"}
    assert (table["delta_value"] > 0).all()
    profile = budget.performance_profile(table, "20% of its range")
    assert set(profile["method"]) == {"adamw", "sgd"} and set(profile["workloads"]) == {2}
