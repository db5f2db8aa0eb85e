"""Search spaces over any recipe field: each DIST kind (bounds, distribution, seeds), space
files, manifests with sampled columns, packing by them, and the unknown-family error."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import models
from models import registry
from stability.errors import UserError
from store import schema
from store.space import Dimension, parse_dimension, space_from_json, space_to_json
from sweeps import plan
from sweeps.space import complete_space, draw, parse_space_flags, read_space_file

SMOKE = plan.choose_scale("smoke", has_gpu=False)


def values(text: str, n: int = 400, seed: int = 0, sampler: str = "random") -> np.ndarray:
    space = parse_space_flags([f"label_smoothing={text}"] if "choice" not in text else [f"autoaugment={text}"])
    return np.array([p[next(iter(space))] for p in draw(space, n, seed, sampler)])


@pytest.mark.parametrize("sampler", ["random", "sobol"])
def test_log_dimension_is_log_uniform_within_its_bounds(sampler):
    x = np.array([p["lr"] for p in draw(parse_space_flags(["lr=log:1e-4,1e-1"]), 512, 3, sampler)])
    assert x.min() >= 1e-4 and x.max() <= 1e-1
    u = (np.log(x) - math.log(1e-4)) / (math.log(1e-1) - math.log(1e-4))
    assert stats.kstest(u, "uniform").pvalue > 0.01
    assert stats.kstest((x - 1e-4) / (1e-1 - 1e-4), "uniform").pvalue < 1e-6  # not uniform in x


@pytest.mark.parametrize("sampler", ["random", "sobol"])
def test_uniform_dimension_is_uniform_within_its_bounds(sampler):
    x = values("uniform:0.05,0.25", 512, 1, sampler)
    assert x.min() >= 0.05 and x.max() <= 0.25
    assert stats.kstest((x - 0.05) / 0.2, "uniform").pvalue > 0.01


def test_int_dimension_draws_every_integer_of_its_closed_range():
    space = parse_space_flags(["epochs=int:2,5"])
    x = [p["epochs"] for p in draw(space, 400, 0)]
    assert all(isinstance(v, int) for v in x) and set(x) == {2, 3, 4, 5}
    assert stats.chisquare(np.bincount(x)[2:]).pvalue > 0.001


def test_choice_dimension_draws_only_and_every_choice():
    x = values("choice:true|false", 200)
    assert set(x.tolist()) == {True, False}
    assert parse_dimension("choice:0.1|2|adam").choices == (0.1, 2, "adam")


@pytest.mark.parametrize("sampler", ["random", "sobol"])
def test_draws_are_fixed_by_the_seed(sampler):
    space = parse_space_flags(
        ["lr=log:1e-4,1e-1", "wd=log:1e-3,1", "mixup_alpha=uniform:0.1,1", "ema=choice:true|false"]
    )
    assert draw(space, 20, 7, sampler) == draw(space, 20, 7, sampler)
    assert draw(space, 20, 7, sampler) != draw(space, 20, 8, sampler)


@settings(max_examples=40, deadline=None)
@given(lo=st.floats(1e-6, 1.0), ratio=st.floats(1.001, 1e4), seed=st.integers(0, 2**31 - 1))
def test_every_draw_lies_in_its_interval(lo, ratio, seed):
    hi = lo * ratio
    points = draw({"lr": Dimension("log", lo, hi), "wd": Dimension("uniform", lo, hi)}, 8, seed)
    assert all(lo <= p["lr"] <= hi and lo <= p["wd"] <= hi for p in points)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("dropout=uniform:0,1", "'dropout' cannot be swept"),
        ("lr=log:0,1", "log needs 0 < A < B"),
        ("lr=log:1,0.1", "needs A < B"),
        ("lr=gauss:0,1", "is not one of log:A,B"),
        ("epochs=uniform:1,5", "epochs takes integers"),
        ("epochs=int:0,5", "epochs must be an integer >= 1"),
        ("label_smoothing=uniform:0,1.5", "label_smoothing must be a number in [0, 1)"),
        ("autoaugment=uniform:0,1", "autoaugment is true or false"),
        ("ema=choice:yes|no", "ema must be true or false"),
        ("lr", "--space takes NAME=DIST"),
        ("momentum=choice:", "choice needs one or more distinct values"),
    ],
)
def test_a_bad_dimension_is_one_clear_error(flag, message):
    with pytest.raises(UserError) as caught:
        parse_space_flags([flag])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_space_file_holds_the_same_dimensions_as_flags(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[space]\nlr = "log:1e-4,1e-2"\nbatch_size = "choice:16|32"\nbeta2 = "uniform:0.9,0.999"\n')
    flags = parse_space_flags(["lr=log:1e-4,1e-2", "batch_size=choice:16|32", "beta2=uniform:0.9,0.999"])
    assert read_space_file(path) == flags
    (tmp_path / "bad.toml").write_text("[space]\nlr = 0.1\n")
    with pytest.raises(UserError, match="write the distribution as a string"):
        read_space_file(tmp_path / "bad.toml")
    (tmp_path / "none.toml").write_text("trials = 3\n")
    with pytest.raises(UserError, match="no \\[space\\] table"):
        read_space_file(tmp_path / "none.toml")


def test_the_stored_space_round_trips():
    space = parse_space_flags(["lr=log:1e-4,1e-2", "epochs=int:1,3", "ema=choice:true|false", "wd=uniform:0,0.5"])
    assert space_from_json(space_to_json(space)) == space


def test_a_manifest_has_a_column_per_sampled_field_and_stores_its_space():
    space = parse_space_flags(["label_smoothing=uniform:0,0.3", "epochs=int:1,3"])
    m = plan.edf_manifest("s", "vit_c_1gf", "adamw", SMOKE, trials=6, seed=0, space=space)
    assert {"label_smoothing", "epochs"} <= set(m.columns)
    assert m["label_smoothing"].between(0, 0.3).all() and set(m["epochs"]) <= {1, 2, 3}
    assert all(tid.startswith(f"vit_c_1gf-adamw-e{e}-") for tid, e in zip(m["trial_id"], m["epochs"], strict=True))
    stored = json.loads(m["space"].iloc[0])
    assert list(stored) == ["lr", "wd", "label_smoothing", "epochs"]
    assert stored["lr"][0] == "log" and stored["label_smoothing"] == ["uniform", 0.0, 0.3]
    again = plan.edf_manifest("s", "vit_c_1gf", "adamw", SMOKE, trials=6, seed=0, space=space)
    assert plan.same_definition(m, again)
    other = plan.edf_manifest("s", "vit_c_1gf", "adamw", SMOKE, trials=6, seed=1, space=space)
    assert not plan.same_definition(m, other)
    assert not plan.same_definition(m.drop(columns="label_smoothing"), m)


def test_the_default_space_is_table_4s_and_its_draws_are_unchanged():
    from tests.test_sweeps import draw_pairs

    m = plan.edf_manifest("s", "vit_c_1gf", "sgd", SMOKE, trials=5, seed=4)
    (lr_lo, lr_hi), (wd_lo, wd_hi) = plan_interval = ((0.1, 3.2), (4.0e-6, 1.2e-4))
    assert json.loads(m["space"].iloc[0]) == {"lr": ["log", lr_lo, lr_hi], "wd": ["log", wd_lo, wd_hi]}
    assert list(zip(m["lr"], m["wd"], strict=True)) == draw_pairs(*plan_interval, 5, 4)
    assert not set(schema.RECIPE) & set(m.columns)


def test_packs_separate_trials_that_differ_in_a_sampled_field():
    space = parse_space_flags(["autoaugment=choice:true|false"])
    m = plan.edf_manifest("s", "vit_c_1gf", "adamw", SMOKE, trials=12, seed=0, space=space)
    groups = plan.packs(m, lambda row: 16)
    by_id = m.set_index("trial_id")
    assert len(groups) == 2 and sorted(len(g) for g in groups) == sorted(m["autoaugment"].value_counts())
    for g in groups:
        assert by_id.loc[g, "autoaugment"].nunique() == 1
    plain = plan.edf_manifest("s", "vit_c_1gf", "adamw", SMOKE, trials=12, seed=0)
    assert len(plan.packs(plain, lambda row: 16)) == 1


def test_an_unknown_family_must_be_given_lr_and_wd():
    @models.register("test_unknown_family", family="Unknown")
    def build(*, num_classes, image_size, in_chans, patch_size=None):
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * image_size**2, num_classes))

    try:
        with pytest.raises(UserError) as caught:
            plan.edf_manifest("s", "test_unknown_family", "adamw", SMOKE, trials=2, seed=0)
        assert "--space lr=log:A,B --space wd=log:C,D" in str(caught.value)
        with pytest.raises(UserError):
            complete_space(parse_space_flags(["lr=log:1e-3,1e-1"]), "test_unknown_family", "Unknown", "adamw")
        given_space = parse_space_flags(["lr=log:1e-3,1e-1", "wd=log:1e-4,1e-2"])
        m = plan.edf_manifest("s", "test_unknown_family", "adamw", SMOKE, trials=2, seed=0, space=given_space)
        assert m["lr"].between(1e-3, 1e-1).all() and (m["family"] == "Unknown").all()
    finally:
        registry._ENTRIES.pop("test_unknown_family")


def test_a_row_maps_to_the_trainers_config_with_its_sampled_fields():
    space = parse_space_flags(["momentum=uniform:0.5,0.95", "ema=choice:false"])
    row = plan.edf_manifest("s", "vit_c_1gf", "sgd", SMOKE, trials=1, seed=0, space=space).iloc[0].to_dict()
    fields = schema.config_fields(row, ["momentum"])
    assert fields["optim"] == "sgd" and fields["ema"] is False and 0.5 <= dict(fields["optim_args"])["momentum"] <= 0.95
    assert "label_smoothing" not in fields
    failed = schema.failed_row(row, "boom", "now", ["momentum"])
    assert failed["momentum"] == row["momentum"] and failed["status"] == "failed"
    # the built-in trainer's rows name no trainable and no source, and measure top-1 error by default
    assert set(schema.PLAN) - {"noise_of", "trainer", "source", *schema.METRIC_COLUMNS} <= set(failed)
    assert isinstance(pd.DataFrame([failed]), pd.DataFrame)


def test_quiet_optuna_restores_the_callers_log_level():
    import optuna

    from store.space import quiet_optuna

    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.DEBUG)
        with quiet_optuna():
            assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
        draw({"lr": Dimension("log", 1e-3, 1e-1)}, 2, seed=0)  # a sweep's draws, then the caller's level again
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)
