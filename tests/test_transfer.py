"""Tuning transfer between two sweeps of one space, against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import transfer
from cli import main

LRS = [1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2]


def sweep(name: str, scores, lrs=LRS, **extra) -> pd.DataFrame:
    return pd.DataFrame({"sweep": name, "index": range(len(scores)), "lr": lrs, "wd": [0.1, 0.2, 0.1, 0.2, 0.1],
                         "metric_score": scores, **extra})  # fmt: skip


def test_shift_rank_correlation_and_regret_by_hand():
    """A's best is draw 1 (lr 2e-3, wd 0.2), B's draw 2 (lr 4e-3, wd 0.1): shifts +1 and -1 in
    log2. Ranks A 3 1 2 4 5, B 4 3 1 2 5: sum of squared differences 10, Spearman 1 - 60/120.
    B at A's optimum (the same draw) is 30, its best 22: regret 8."""
    a, b = sweep("a", [30.0, 20.0, 25.0, 40.0, 50.0]), sweep("b", [35.0, 30.0, 22.0, 28.0, 60.0])
    row = transfer.transfer(a, b)
    assert (row["lr_shift"], row["wd_shift"]) == pytest.approx((1.0, -1.0))
    assert row["rank_correlation"] == pytest.approx(0.5)
    assert row["regret"] == pytest.approx(8.0) and row["at"] == "same draw"


def test_sweeps_without_shared_draws_use_the_nearest_trial():
    a = sweep("a", [30.0, 20.0, 25.0, 40.0, 50.0])
    b = sweep("b", [35.0, 30.0, 22.0, 28.0, 60.0], lrs=[x * 1.3 for x in LRS])
    row = transfer.transfer(a, b)
    assert math.isnan(row["rank_correlation"]) and row["at"] == "nearest"
    assert row["regret"] == pytest.approx(30.0 - 22.0)  # B's draw 1 (lr 2.6e-3, wd 0.2) is nearest to A's best


def test_a_study_s_length_and_size_pairs():
    common = {"optimizer": "adamw", "dataset": "synthetic", "image_size": 8, "batch_size": 64, "seed": 0}
    sets = {
        "c1-e3": sweep("c1-e3", [1.0] * 5, model="vit_c_1gf", family="ViT_C", epochs=3, flops=1, **common),
        "c1-e10": sweep("c1-e10", [1.0] * 5, model="vit_c_1gf", family="ViT_C", epochs=10, flops=1, **common),
        "c4-e3": sweep("c4-e3", [1.0] * 5, model="vit_c_4gf", family="ViT_C", epochs=3, flops=4, **common),
        "p1-e3": sweep("p1-e3", [1.0] * 5, model="vit_p_1gf", family="ViT_P", epochs=3, flops=1, **common),
    }
    assert sorted(transfer.transfer_pairs(sets)) == [("c1-e3", "c1-e10", "length"), ("c1-e3", "c4-e3", "size")]


def test_the_transfer_command(tiny_store, capsys):
    a, b = "vit_p_1gf-adamw-smoke", "vit_c_1gf-adamw-smoke"
    assert main(["transfer", "--results", str(tiny_store), "--from", a, "--to", b]) == 0
    out = capsys.readouterr().out
    assert a in out and b in out and "regret" in out and "rank_correlation" in out
    assert main(["transfer", "--results", str(tiny_store), "--from", a, "--to", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: no EDF sweep 'nope'")


def test_a_zero_weight_decay_or_an_unsampled_lr_gives_no_shift_and_no_made_up_regret():
    a = sweep("a", [30.0, 20.0, 25.0, 40.0, 50.0]).assign(wd=[0.0, 0.0, 0.1, 0.2, 0.1])
    b = sweep("b", [35.0, 30.0, 22.0, 28.0, 60.0], lrs=[x * 1.3 for x in LRS]).assign(wd=[0.1, 0.0, 0.0, 0.2, 0.1])
    row = transfer.transfer(a, b)  # both optima at wd 0: no log2 ratio, and no log-space distance to it
    assert math.isnan(row["wd_shift"]) and row["lr_shift"] == pytest.approx(math.log2(4e-3 * 1.3 / 2e-3))
    assert math.isnan(row["regret"]) and row["at"] == "none"
    unsampled = transfer.transfer(a.assign(lr=math.nan), b.assign(lr=math.nan))
    assert math.isnan(unsampled["lr_shift"]) and math.isnan(unsampled["regret"])


def test_draws_at_the_same_positions_of_other_intervals_rank_together_but_transfer_to_the_nearest():
    """Two models' intervals centred apart (the laptop preset): the same positions pair the draws
    for the rank correlation, but B's trial of A's index is another (lr, wd), so the regret is
    read at B's trial nearest to A's optimum."""
    space_a = '{"lr": ["log", 1e-3, 1.6e-2], "wd": ["log", 0.1, 0.2]}'
    space_b = '{"lr": ["log", 1.5e-3, 2.4e-2], "wd": ["log", 0.1, 0.2]}'
    a = sweep("a", [30.0, 20.0, 25.0, 40.0, 50.0], space=space_a)
    b = sweep("b", [35.0, 30.0, 22.0, 28.0, 60.0], lrs=[1.5 * x for x in LRS], space=space_b)
    row = transfer.transfer(a, b)
    assert row["rank_correlation"] == pytest.approx(0.5) and row["at"] == "nearest"
    assert row["regret"] == pytest.approx(30.0 - 22.0)  # B's draw 1 (3e-3, 0.2) is nearest to A's (2e-3, 0.2)
