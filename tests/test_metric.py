"""A sweep's metric: its direction, its diverged value, and every analysis computed on the
distance to the best in that direction (``store.schema.Metric``, ``analysis.experiments.scored``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import experiments, stats
from store import schema

values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=30)


def sweep(metric: str, direction: str, outcomes, diverged=None, status=None) -> pd.DataFrame:
    n = len(outcomes)
    return pd.DataFrame(
        {
            "sweep": "s",
            "index": range(n),
            "trial_id": [f"t{i}" for i in range(n)],
            "model": "m",
            "family": "trainable",
            "optimizer": "adamw",
            "epochs": 3,
            "sampler": "random",
            "status": status or ["ok"] * n,
            metric: outcomes,
            "metric": metric,
            "metric_direction": direction,
            "metric_diverged": diverged,
        }
    )


@settings(max_examples=60, deadline=None)
@given(values)
def test_a_maximized_metrics_distance_is_the_best_minus_each_value(v):
    rows = sweep("acc", "maximize", v, diverged=0.0)
    assert np.allclose(stats.deltas(schema.scores(rows)), max(v) - np.array(v))


@settings(max_examples=60, deadline=None)
@given(values)
def test_negating_the_values_and_the_direction_gives_the_same_edf(v):
    up, down = sweep("acc", "maximize", v, diverged=-1e9), sweep("loss", "minimize", [-x for x in v], diverged=1e9)
    x_up, f_up = stats.edf(schema.scores(up))
    x_down, f_down = stats.edf(schema.scores(down))
    assert np.allclose(x_up, x_down) and np.array_equal(f_up, f_down)


def test_rows_without_a_metric_measure_top1_error_as_before():
    old = pd.DataFrame({"status": ["ok", "diverged", "ok"], "top1_err": [30.0, 100.0, np.nan]})
    assert schema.metric_of_frame(old) == schema.TOP1_ERR
    assert list(schema.scores(old)) == [30.0, 100.0, 100.0]  # a missing error counts as 100, as stats.as_errors
    named = old.assign(metric="top1_err", metric_direction="minimize", metric_diverged=100.0)
    assert schema.metric_of_frame(named) == schema.TOP1_ERR


def test_diverged_trials_count_at_the_metrics_diverged_value():
    rows = sweep("loss", "minimize", [0.5, np.nan, 0.7], status=["ok", "diverged", "ok"])
    assert list(schema.metric_values(rows)) == [0.5, math.inf, 0.7]  # default: the worst there is
    d = stats.deltas(schema.scores(rows))
    assert d[0] == 0 and d[1] == math.inf and d[2] == pytest.approx(0.2)
    assert stats.summarize(schema.scores(rows))["within_1"] == pytest.approx(2 / 3)  # never near the best
    acc = sweep("acc", "maximize", [90.0, 10.0], diverged=0.0, status=["ok", "diverged"])
    assert list(schema.metric_values(acc)) == [90.0, 0.0]


def test_a_diverged_value_on_the_best_side_or_nan_is_refused():
    for direction, bad in (("minimize", -math.inf), ("maximize", math.inf), ("minimize", math.nan)):
        with pytest.raises(ValueError, match="cannot count as"):
            schema.Metric("m", direction, bad)
    with pytest.raises(ValueError, match="direction"):
        schema.Metric("m", "up", 0.0)
    with pytest.raises(ValueError, match="more than one metric"):
        schema.metric_of_frame(pd.concat([sweep("a", "minimize", [1.0]), sweep("b", "minimize", [1.0])]))


def test_a_maximized_metric_named_score_is_scored_once_whatever_its_name():
    rows = sweep("score", "maximize", [0.2, 0.9, 0.5], diverged=0.0)
    once = experiments.scored(rows)
    twice = experiments.scored(once)
    assert list(twice["metric_score"]) == [-0.2, -0.9, -0.5] and twice.equals(once)
    table = experiments.stability_table(rows, n_resamples=50)
    assert table.loc[0, "best_err"] == 0.9 and table.loc[0, "metric"] == "score"
    assert table.loc[0, "median_delta"] == pytest.approx(0.4)  # best 0.9 minus the median value 0.5


def test_two_metrics_are_two_protocols_and_never_compared():
    a = sweep("loss", "minimize", [0.5, 0.6, 0.7])
    b = sweep("acc", "maximize", [50.0, 60.0, 70.0]).assign(sweep="t", trial_id=lambda f: "u" + f["trial_id"])
    assert schema.protocol_key(a).iloc[0] != schema.protocol_key(b).iloc[0]
    assert experiments.comparisons(pd.concat([a, b], ignore_index=True), n_resamples=99).empty
