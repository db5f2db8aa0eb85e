"""Sweep planning: the sampler's laws, manifests, presets and the paper's grids."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from stability.errors import UserError
from stability.paper import INTERVALS
from store.space import Dimension
from sweeps import grid, plan
from sweeps.space import draw, parse_range

SMOKE = plan.choose_scale("smoke", has_gpu=False)


def draw_pairs(lr_range, wd_range, n, seed, sampler="random"):
    """(lr, wd) pairs of the default space: both log-uniform."""
    space = {"lr": Dimension("log", *lr_range), "wd": Dimension("log", *wd_range)}
    return [(p["lr"], p["wd"]) for p in draw(space, n, seed, sampler)]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    lo=st.floats(1e-6, 1.0),
    span=st.floats(1.01, 1e4),
    sampler=st.sampled_from(["random", "sobol"]),
)
def test_draws_lie_in_their_intervals(seed, lo, span, sampler):
    lr_range, wd_range = (lo, lo * span), (lo / 10, lo / 10 * span)
    for lr, wd in draw_pairs(lr_range, wd_range, 16, seed, sampler):
        assert lr_range[0] <= lr <= lr_range[1]
        assert wd_range[0] <= wd <= wd_range[1]


@pytest.mark.parametrize("sampler", ["random", "sobol"])
def test_4096_draws_are_log_uniform(sampler):
    (lr_lo, lr_hi), (wd_lo, wd_hi) = INTERVALS["vit"]["sgd"]
    pairs = np.array(draw_pairs((lr_lo, lr_hi), (wd_lo, wd_hi), 4096, 7, sampler))
    for values, lo, hi in ((pairs[:, 0], lr_lo, lr_hi), (pairs[:, 1], wd_lo, wd_hi)):
        u = (np.log(values) - math.log(lo)) / (math.log(hi) - math.log(lo))
        assert stats.kstest(u, "uniform").pvalue > 0.01
    assert abs(stats.spearmanr(pairs[:, 0], pairs[:, 1]).statistic) < 0.05  # independent


@pytest.mark.parametrize("sampler", ["random", "sobol"])
def test_a_longer_sweep_begins_with_the_shorter_ones_draws(sampler):
    """What lets --trials grow a stored sweep: its manifest is the first rows of the longer one."""
    short = plan.edf_manifest("s", "vit_c_nano", "adamw", SMOKE, trials=64, seed=3, sampler=sampler,
                              space={"label_smoothing": Dimension("uniform", 0.0, 0.2)})  # fmt: skip
    long = plan.edf_manifest("s", "vit_c_nano", "adamw", SMOKE, trials=128, seed=3, sampler=sampler,
                             space={"label_smoothing": Dimension("uniform", 0.0, 0.2)})  # fmt: skip
    pd.testing.assert_frame_equal(long.iloc[:64], short)
    assert plan.extends(short, long) and not plan.extends(long, short) and not plan.extends(short, short)
    other_seed = plan.edf_manifest("s", "vit_c_nano", "adamw", SMOKE, trials=128, seed=4, sampler=sampler)
    assert not plan.extends(short, other_seed)


def test_same_seed_same_pairs_different_seed_different():
    r = ((0.1, 3.2), (4e-6, 1.2e-4))
    assert draw_pairs(*r, 64, 3) == draw_pairs(*r, 64, 3)
    assert draw_pairs(*r, 64, 3) != draw_pairs(*r, 64, 4)
    assert draw_pairs(*r, 64, 3, "sobol") == draw_pairs(*r, 64, 3, "sobol")


def test_manifest_uses_table4_interval_and_is_stable():
    m = plan.edf_manifest("s", "regnety_4gf", "adamw", SMOKE, trials=64, seed=0)
    assert len(m) == 64 and m["trial_id"].is_unique and list(m["index"]) == list(range(64))
    assert m["lr"].between(1.25e-3, 4.0e-2).all() and m["wd"].between(0.0075, 0.24).all()
    assert plan.same_definition(m, plan.edf_manifest("s", "regnety_4gf", "adamw", SMOKE, trials=64, seed=0))
    assert not plan.same_definition(m, plan.edf_manifest("s", "regnety_4gf", "adamw", SMOKE, trials=64, seed=1))
    assert not plan.same_definition(m, plan.edf_manifest("s", "regnety_4gf", "adamw", SMOKE, trials=63, seed=0))


@pytest.mark.parametrize(
    ("text", "ok"), [("0.1,3.2", True), ("3,1", False), ("0,1", False), ("-1,2", False), ("a,b", False), ("1", False)]
)
def test_parse_range(text, ok):
    if ok:
        assert parse_range(text, "--lr-range") == (0.1, 3.2)
    else:
        with pytest.raises(UserError, match="--lr-range"):
            parse_range(text, "--lr-range")


def test_presets():
    assert plan.choose_scale(None, has_gpu=True).preset == "small"
    assert plan.choose_scale(None, has_gpu=False).preset == "smoke"
    paper = plan.choose_scale("paper", has_gpu=True)
    assert (paper.dataset, paper.image_size, paper.epochs, paper.batch_size) == ("imagenet", 224, 50, 2048)
    assert plan.choose_scale("smoke", False, epochs=3).epochs == 3
    with pytest.raises(UserError, match="unknown preset"):
        plan.choose_scale("huge", False)


@pytest.mark.parametrize(
    ("figure", "vit", "cnn", "sweeps"), [(2, 24, 12, 1), (3, 48, 24, 1), (4, 6 * 64, 3 * 64, 9), (5, 6 * 64, 3 * 64, 9)]
)
def test_grid_counts_match_the_paper(figure, vit, cnn, sweeps):
    planned = grid.plan_grid(figure, plan.choose_scale("paper", True))
    frames = list(planned.values())
    assert len(planned) == sweeps
    assert sum(int(f["model"].str.startswith("vit").sum()) for f in frames) == vit
    assert sum(int((~f["model"].str.startswith("vit")).sum()) for f in frames) == cnn
    if figure in (2, 3):
        assert sorted(set(frames[0]["epochs"])) == [50, 100, 200, 400]
        row = frames[0].set_index(["model", "optimizer", "epochs"]).loc[("vit_c_4gf", "adamw", 400)]
        assert (row["lr"], row["wd"]) == (1.0e-3, 0.24)
    else:
        assert all(len(f) == 64 and set(f["epochs"]) == {50} for f in frames)
        assert set(frames[0]["optimizer"]) == {"adamw" if figure == 4 else "sgd"}


def test_grid_follows_preset_and_narrowing():
    planned = grid.plan_grid(3, SMOKE, models=["vit_c_1gf", "regnety_1gf"], optims=["sgd"])
    frame = next(iter(planned.values()))
    assert sorted(set(frame["epochs"])) == [1, 2, 4, 8]  # 50/100/200/400 scaled to the smoke preset
    assert set(frame["optimizer"]) == {"sgd"} and len(frame) == 8
    with pytest.raises(UserError):
        grid.plan_grid(2, SMOKE, models=["regnety_1gf"], optims=["adamw"])


@pytest.mark.parametrize("preset", ["smoke", "small", "paper"])
def test_rescaled_grids_keep_the_papers_absolute_warmup(preset):
    """5 warm-up epochs at every length of the paper's 50-400 grid: 5/50 of the preset's base
    length at every rescaled length, never a tenth of each length."""
    scale = plan.choose_scale(preset, False)
    frame = next(iter(grid.plan_grid(2, scale, models=["vit_c_1gf"]).values()))
    assert sorted(frame["epochs"]) == [scale.epochs * k for k in (1, 2, 4, 8)]
    assert set(frame["warmup_epochs"]) == {scale.epochs / 10}
    assert preset != "paper" or set(frame["warmup_epochs"]) == {5.0}
    from store.schema import config_fields

    assert {config_fields(r)["warmup_epochs"] for r in frame.to_dict("records")} == {scale.epochs / 10}


def test_status_counts_an_unfinished_sweep(tmp_path, capsys):
    from cli import sweeps as commands
    from store import Store
    from sweeps import engine

    store = Store(tmp_path)
    manifest = plan.edf_manifest("s", "vit_c_1gf", "sgd", SMOKE, trials=4, seed=0)
    engine.prepare_manifest(store, "s", manifest)
    assert commands.summarize(store, "s")["remaining"] == 4
    rows = manifest.to_dict("records")
    store.write_trial("s", {**rows[0], "status": "ok", "top1_err": 40.0}, [])
    store.write_trial("s", {**rows[1], "status": "diverged", "top1_err": 100.0}, [])
    s = commands.summarize(store, "s")
    assert (s["planned"], s["done"], s["diverged"], s["failed"], s["remaining"]) == (4, 1, 1, 0, 2)
    assert s["best"].startswith(rows[0]["trial_id"])
    commands.print_status(store)
    assert "s " in capsys.readouterr().out


def test_the_protocol_line_says_what_the_flags_changed_of_the_preset(capsys):
    from cli import main

    base = ["sweep", "--dry-run", "--model", "vit_c_1gf", "--optim", "adamw", "--trials", "2", "--preset", "smoke"]
    assert main(base) == 0
    assert "as your flags set it" not in capsys.readouterr().out
    assert main([*base, "--dataset", "synthetic", "--batch-size", "64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("protocol: smoke: digits")  # the preset's own note
    assert lines[1] == "  as your flags set it: synthetic, 8 px / patch 4, 1 epoch(s), batch 64"
