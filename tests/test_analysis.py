"""Analysis laws (EDFs, summaries, intervals, bands, tests, Holm), gaps and deltas, and figure structure."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

from analysis import experiments, figure_files, figures, stats

errors_st = st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=80)


@pytest.fixture(autouse=True)
def _close_figures():
    """Every test's figures are closed after it, so that a run holds few open at once."""
    yield
    plt.close("all")


@settings(max_examples=80, deadline=None)
@given(errors=errors_st, seed=st.integers(0, 1000))
def test_edf_laws(errors, seed):
    x, f = stats.edf(errors)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(f) >= 0)
    assert np.all((f > 0) & (f <= 1))
    assert f[-1] == 1.0 and x[0] == 0.0
    assert np.all(stats.deltas(errors) >= 0)
    shuffled = np.random.default_rng(seed).permutation(errors)
    x2, f2 = stats.edf(shuffled)
    assert np.array_equal(x, x2) and np.array_equal(f, f2)


@settings(max_examples=40, deadline=None)
@given(errors=errors_st, n_div=st.integers(1, 5))
def test_diverged_trials_count_in_n(errors, n_div):
    with_div = [*errors, *[100.0] * n_div]
    n = len(with_div)
    f_below_100 = stats.edf_at(with_div, [100.0 - min(with_div) - 1e-9])[0]
    assert f_below_100 <= (n - n_div) / n + 1e-12
    assert stats.edf_at([*errors, np.nan], [1e9])[0] == 1.0  # a missing error counts as 100


def test_edf_matches_definition_and_baseline():
    errs = [30.0, 32.0, 32.0, 40.0, 100.0]
    x, f = stats.edf(errs)
    assert list(x) == [0, 2, 2, 10, 70] and list(f) == [0.2, 0.6, 0.6, 0.8, 1.0]
    assert list(stats.edf(errs, baseline=25.0)[0]) == [5, 7, 7, 15, 75]
    s = stats.summarize(errs)
    assert (s["within_1"], s["within_2"], s["within_8"]) == (0.2, 0.6, 0.6)
    assert s["median_delta"] == 2.0
    assert s["capped_mean_delta"] == pytest.approx((0 + 2 + 2 + 10 + 10) / 5)


@settings(max_examples=15, deadline=None)
@given(errors=st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=2, max_size=40), seed=st.integers(0, 100))
def test_bands_contain_the_edf_and_intervals_are_ordered_and_finite(errors, seed):
    grid = np.linspace(0, 30, 31)
    point = stats.edf_at(errors, grid)
    for simultaneous in (True, False):
        lo, hi = stats.edf_band(errors, grid, n_resamples=200, seed=seed, simultaneous=simultaneous)
        assert np.all((lo >= 0) & (hi <= 1) & (lo <= hi))
        if simultaneous:  # a constant half-width around the EDF, cut to [0, 1]
            assert np.all(lo <= point) and np.all(point <= hi)
    for name, (est, low, high) in stats.summary_intervals(errors, n_resamples=200, seed=seed).items():
        assert np.isfinite([est, low, high]).all() and low <= high, name
        assert est == pytest.approx(stats.summarize(errors)[name])


def test_reading_resamples_equals_the_hand_computation():
    """39 resamples 1..39 (centred: -19..19): the 95% interval is the estimate +- 19 (j = 0), and
    the p-value of 0 counts the centred values beyond -estimate, plus one, over 40, twice."""
    resampled = np.arange(1.0, 40.0)[:, None]
    (at_zero,) = stats._read(np.array([0.0]), resampled, 0.95)
    assert (at_zero.low, at_zero.high, at_zero.p_value) == (-19.0, 19.0, 1.0)
    (edge,) = stats._read(np.array([19.5]), resampled, 0.95)  # -19.5: no centred value at or below it
    assert (edge.low, edge.high, edge.p_value) == (0.5, 38.5, pytest.approx(2 / 40))
    (inside,) = stats._read(np.array([18.5]), resampled, 0.95)  # one value (-19) at or below -18.5
    assert inside.low == -0.5 and inside.p_value == pytest.approx(4 / 40)
    (few,) = stats._read(np.array([5.0]), resampled[:20], 0.95)  # 20 resamples cannot reject at 5%
    assert (few.low, few.high) == (-np.inf, np.inf) and few.p_value > 0.05


def test_best_spread_equals_the_hand_computation():
    assert stats.best_spread([7.0, 1.0, 100.0, 2.0, 4.0]) == pytest.approx((7 - 1) / 2.2)  # three gaps
    assert stats.best_spread([3.0, 1.0]) == pytest.approx(2 / 1.2)  # one gap
    assert stats.best_spread([np.inf, 1.0, 2.5, np.inf]) == pytest.approx(1.5 / 1.2)  # finite trials only
    assert stats.best_spread([5.0]) == stats.best_spread([5.0, 5.0, 5.0]) == 0.0  # nothing to spread
    assert stats.best_spread([5.0, 5.0, 5.0, 5.0, 9.0]) == pytest.approx(4 / 1.2)  # ties at the best: distinct values


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from([20.0, 20.0, 21.0, 25.0, 100.0, np.inf]), st.floats(20.0, 40.0)),
        min_size=2,
        max_size=30,
    ),
    paired=st.booleans(),
    resamples=st.sampled_from([199, 999, 1000]),
    confidence=st.sampled_from([0.9, 0.95, 0.99]),
)
def test_every_p_value_agrees_with_its_interval_and_diverged_trials_stay_finite(pairs, paired, resamples, confidence):
    a, b = (np.array(x) for x in zip(*pairs, strict=True))
    got = stats.summary_differences(a, b, paired=paired, n_resamples=resamples, confidence=confidence)
    for name, r in got.items():
        assert np.isfinite([r.estimate, r.p_value]).all() and r.low <= r.high, name
        if np.isfinite([r.low, r.high]).all():
            assert (r.p_value <= round(1 - confidence, 9)) == (not r.low <= 0 <= r.high), name
        else:  # too few resamples to reject at this level: never a verdict
            assert r.p_value > round(1 - confidence, 9)
    cap = max((x[np.isfinite(x)].max() - x[np.isfinite(x)].min() for x in (a, b) if np.isfinite(x).any()), default=0)

    def mean_delta(x):  # each trial's distance to its own finite best; a diverged one at the largest distance
        best = x[np.isfinite(x)].min() if np.isfinite(x).any() else 0.0
        return np.mean(np.where(np.isfinite(x), x - best, cap))

    assert got["mean_delta"].estimate == pytest.approx(mean_delta(a) - mean_delta(b))
    test = stats.compare(a, b, paired=paired, confidence=confidence, n_resamples=resamples)
    assert (test["statistic"], test["p_value"], test["low"], test["high"]) == pytest.approx(
        (got["mean_delta"].estimate, got["mean_delta"].p_value, got["mean_delta"].low, got["mean_delta"].high)
    )


@pytest.mark.parametrize("diverged", [False, True])
def test_a_shift_of_every_error_changes_no_verdict(diverged):
    rng = np.random.default_rng(1)
    a, b = 20 + rng.exponential(1.0, 32), 20 + rng.exponential(3.0, 32)
    if diverged:  # a loss-like metric: infinite scores count at a distance, so the shift changes nothing
        a[[3, 9]], b[5] = np.inf, np.inf
    for paired in (True, False):
        for shift in (5.0, 50.0):
            got, shifted = stats.compare(a, b, paired=paired), stats.compare(a, b + shift, paired=paired)
            assert _same(got, shifted)
        assert stats.summarize(a) == pytest.approx(stats.summarize(a + 50.0))


def _same(x: dict, y: dict) -> bool:
    return x.keys() == y.keys() and all(
        x[k] == y[k] if isinstance(x[k], str) else x[k] == pytest.approx(y[k]) for k in x
    )


def test_the_test_finds_a_less_stable_sweep_and_not_a_higher_one():
    rng = np.random.default_rng(0)
    a, b = rng.gamma(2, 2, 64), rng.gamma(2, 2, 64)
    assert stats.compare(a, b)["p_value"] > 0.05
    spread = np.concatenate([rng.gamma(2, 2, 32), rng.gamma(2, 2, 32) + 15])
    assert stats.compare(a, spread)["p_value"] < 0.01
    assert stats.compare(a, spread)["high"] < 0


@settings(max_examples=20, deadline=None)
@given(shift=st.floats(8.0, 30.0), seed=st.integers(0, 10_000))
def test_the_test_finds_clearly_larger_deltas(shift, seed):
    rng = np.random.default_rng(seed)
    stable = rng.exponential(1.0, 64)
    fragile = np.concatenate([rng.exponential(1.0, 8), rng.exponential(1.0, 56) + shift])
    assert stats.compare(stable, fragile)["p_value"] < 2e-3
    assert stats.compare(stable, fragile, paired=True)["p_value"] < 2e-3


def test_tests_are_seeded_and_paired_needs_one_error_per_draw():
    rng = np.random.default_rng(2)
    a, b = 20 + rng.exponential(1.0, 40), 20 + rng.exponential(3.0, 40)
    assert stats.compare(a, b, seed=4) == stats.compare(a, b, seed=4)
    assert stats.compare(a, b, paired=True, seed=4) == stats.compare(a, b, paired=True, seed=4)
    with pytest.raises(ValueError, match="one error per draw"):
        stats.compare(a, b[:-1], paired=True)
    single = stats.compare([20.0], [21.0, 30.0])
    assert np.isnan(single["p_value"]) and single["statistic"] == pytest.approx(-4.5)  # nothing to resample
    assert (single["low"], single["high"]) == (-np.inf, np.inf)


def test_identical_sweeps_with_a_diverged_trial_each_are_alike():
    errors = [20.0, 21.0, 22.5, np.inf, 24.0, 30.0]
    same = stats.compare(errors, errors, paired=True)
    assert same["statistic"] == 0.0 and same["p_value"] > 0.9 and same["low"] < 0 < same["high"]
    moved = stats.compare(errors, [*errors[3:], *errors[:3]])  # unpaired: the order does not matter
    assert moved["statistic"] == 0.0 and moved["p_value"] > 0.9


def test_expected_best_defaults_to_the_unbiased_estimator():
    errors = [3.0, 1.0, 2.0]  # best of 2 without replacement: pairs (1,2) (1,3) (2,3) -> 1, 1, 2
    assert stats.expected_best(errors, [2])["mean"][0] == pytest.approx(4 / 3)
    assert stats.expected_best(errors, [2], replace=True)["mean"][0] == pytest.approx((5 * 1 + 3 * 2 + 1 * 3) / 9)


def test_holm_equals_the_hand_computation():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> raised to 0.06
    got = stats.holm([0.01, 0.04, 0.03, 0.005, np.nan])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and np.isnan(got[4])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


@settings(max_examples=100, deadline=None)
@given(p=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=30))
def test_holm_laws(p):
    adjusted = stats.holm(p)
    assert np.all(adjusted >= np.asarray(p)) and np.all(adjusted <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)  # monotone in the order of the raw p-values
    assert adjusted[order[0]] == pytest.approx(min(1.0, len(p) * min(p)))


def grid_trials() -> pd.DataFrame:
    """A grid store's trials table (Figure 3 style): two families, two optimizers, four lengths."""
    rows = []
    for model, family, base in [
        ("vit_p_4gf", "ViT_P", 30.0),
        ("vit_c_4gf", "ViT_C", 27.0),
        ("regnety_4gf", "RegNetY", 26.0),
    ]:
        for optim, penalty in [("adamw", 0.0), ("sgd", 2.0)]:
            for e, gain in zip([50, 100, 200, 400], [0.0, 2.0, 3.0, 3.5], strict=True):
                diverged = model == "vit_p_4gf" and optim == "sgd" and e == 400
                rows.append(
                    {
                        "model": model,
                        "family": family,
                        "optimizer": optim,
                        "epochs": e,
                        "sampler": "fixed",
                        "status": "diverged" if diverged else "ok",
                        "lr": 1e-3,
                        "wd": 0.1,
                        "top1_err": 100.0 if diverged else base + penalty - gain,
                    }
                )
    return pd.DataFrame(rows)


def edf_trials(optim: str = "adamw") -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for model, family, spread in [
        ("vit_p_4gf", "ViT_P", 8.0),
        ("vit_c_4gf", "ViT_C", 2.0),
        ("vit_c_1gf", "ViT_C", 3.0),
    ]:
        for i in range(16):
            lr, wd = 10 ** rng.uniform(-3.6, -2.1), 10 ** rng.uniform(-1.7, -0.1)
            rows.append(
                {
                    "sweep": f"{model}-{optim}",
                    "index": i,
                    "model": model,
                    "family": family,
                    "optimizer": optim,
                    "epochs": 50,
                    "sampler": "random",
                    "status": "ok",
                    "lr": lr,
                    "wd": wd,
                    "top1_err": 25 + rng.exponential(spread),
                }
            )
    return pd.DataFrame(rows)


def test_carry_forward_gap_and_length_delta():
    curve = experiments.error_vs_epochs(grid_trials())
    row = curve.set_index(["model", "optimizer", "epochs"]).loc[("vit_p_4gf", "sgd", 400)]
    assert bool(row["carried"]) and row["top1_err"] == pytest.approx(32.0 - 3.0)  # the 200-epoch result
    gaps = experiments.optimizer_gaps(grid_trials()).set_index(["model", "epochs", "optimizer"])
    assert gaps.loc[("vit_c_4gf", 50, "sgd"), "gap"] == pytest.approx(2.0)  # err(SGD) - err(AdamW)
    assert gaps.loc[("vit_c_4gf", 50, "adamw"), "gap"] == 0.0
    assert gaps.loc[("vit_c_4gf", 50, "sgd"), "best_optimizer"] == "adamw"
    assert bool(gaps.loc[("vit_p_4gf", 400, "sgd"), "carried"])
    deltas = experiments.training_length_deltas(grid_trials()).set_index(["model", "optimizer", "epochs"])
    assert deltas.loc[("vit_c_4gf", "adamw", 50), "delta"] == pytest.approx(3.5)
    assert set(deltas["reference_epochs"]) == {400}


def test_stability_table_orders_fragile_after_stable():
    table = experiments.stability_table(edf_trials(), n_resamples=100).set_index("model")
    assert table.loc["vit_c_4gf", "within_2"] > table.loc["vit_p_4gf", "within_2"]
    assert table.loc["vit_p_4gf", "capped_mean_delta"] > table.loc["vit_c_4gf", "capped_mean_delta"]
    assert (table["within_1_lo"] <= table["within_1"]).all()


def lines_with_marker(ax, marker) -> list[Line2D]:
    return [ln for ln in ax.get_lines() if ln.get_marker() == marker]


def test_figure3_structure():
    fig = figures.figure3(grid_trials())
    axes = fig.get_axes()
    assert len(axes) == 3 and [a.get_title() for a in axes] == ["1GF", "4GF", "18GF"]
    ax = axes[1]
    assert len(lines_with_marker(ax, "^")) >= 3 and len(lines_with_marker(ax, "v")) >= 3
    assert any(ln.get_linestyle() == "--" for ln in ax.get_lines())  # the carried-forward segment
    assert ax.get_legend() is None and len(fig.legends) == 1  # one shared legend below the panels
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"ViT_P AdamW", "ViT_P SGD", "ViT_C AdamW", "RegNetY SGD"} <= labels
    assert ax.get_ylabel() == "top-1 error (%)" and ax.get_xlabel() == "epochs"
    assert "no optimizer runs" in axes[0].texts[0].get_text()
    colors = {ln.get_label(): ln.get_color() for ln in lines_with_marker(ax, "^")}
    assert colors["ViT_P AdamW"] == figures.COLORS["ViT_P"] and colors["ViT_C AdamW"] == figures.COLORS["ViT_C"]


def test_figure2_structure():
    fig = figures.figure2(grid_trials())
    ax = fig.get_axes()[1]
    assert ax.get_ylabel() == "err(E) - err(400)"
    points = lines_with_marker(ax, "^") + lines_with_marker(ax, "v")
    assert {x for ln in points for x in ln.get_xdata()} == {50, 100, 200}
    assert any(list(ln.get_ydata()) == [0, 0] for ln in ax.get_lines())  # the zero reference
    assert {t.get_text() for t in fig.legends[0].get_texts()} >= {"ViT_P SGD", "ViT_C AdamW", "RegNetY SGD"}
    assert len(fig.legends[0].get_texts()) == 6


def test_edf_figure_structure():
    fig = figures.figure_edf(edf_trials(), "adamw", n_resamples=50)
    axes = fig.get_axes()
    assert len(axes) == 6
    scatter = axes[0]
    assert len(scatter.collections) == 2 and scatter.get_xscale() == "log"
    assert len([ln for ln in scatter.get_lines() if ln.get_xdata()[0] == ln.get_xdata()[-1]]) == 2  # optimum bars
    edf_4gf = axes[4]
    assert len(edf_4gf.get_lines()) == 2 and len(edf_4gf.collections) == 2  # EDF steps and shaded bands
    assert edf_4gf.get_ylim() == (0.0, 1.0)
    assert "no 18GF AdamW sweeps" in axes[5].texts[0].get_text()


def test_analysis_never_imports_torch_or_ray():
    code = (
        "import sys, analysis, analysis.figures, analysis.figure_files, analysis.experiments, "
        "analysis.report, analysis.importance; "
        "assert 'torch' not in sys.modules and 'ray' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_edf_figure_scatter_falls_back_to_the_sizes_present():
    only_1gf = edf_trials()[lambda t: t["model"] == "vit_c_1gf"]
    axes = figures.figure_edf(only_1gf, "adamw", n_resamples=20).get_axes()
    assert axes[0].get_title() == "1GF models: error vs lr" and len(axes[0].collections) == 1


def test_resamples_reach_the_figures_bands(monkeypatch):
    seen, real = [], stats.edf_band

    def spy(*args, **kw):
        seen.append(kw["n_resamples"])
        return real(*args, **kw)

    monkeypatch.setattr(stats, "edf_band", spy)
    figures.FIGURES["4"](edf_trials(), 37)
    assert seen and set(seen) == {37}


def comparison_trials(families: dict[str, str], optims=("adamw", "sgd"), n: int = 6) -> pd.DataFrame:
    """EDF sweeps of each model (of the given family) under each optimizer."""
    rng = np.random.default_rng(1)
    rows = [
        {
            "sweep": f"s-{m}-{o}",
            "model": m,
            "family": f,
            "optimizer": o,
            "status": "ok",
            "sampler": "random",
            "lr": float(lr),
            "wd": 0.1,
            "top1_err": float(20 + 10 * rng.random()),
        }
        for m, f in families.items()
        for o in optims
        for lr in np.geomspace(1e-3, 1e-1, n)
    ]
    return pd.DataFrame(rows)


def test_a_model_keeps_one_colour_across_optimizers_and_the_legend_names_each_once():
    trials = comparison_trials({"mine_a": "Mine", "mine_b": "Mine", "vit_c_1gf": "ViT_C"})
    colors = figures.sweep_colors(experiments.edf_sets(trials))
    for m in ("mine_a", "mine_b", "vit_c_1gf"):
        assert colors[f"s-{m}-adamw"] == colors[f"s-{m}-sgd"]
    assert len({colors[f"s-{m}-adamw"] for m in ("mine_a", "mine_b", "vit_c_1gf")}) == 3
    assert colors["s-vit_c_1gf-adamw"] == figures.COLORS["ViT_C"]  # the only model of its family
    fig = figures.figure_comparison(trials, n_resamples=20)
    legend = fig.legends[0]
    assert sorted(t.get_text() for t in legend.get_texts()) == ["mine_a (n=6)", "mine_b (n=6)", "vit_c_1gf (n=6)"]
    assert len(fig.get_axes()) == 2 * 2  # per optimizer: the EDF and error vs lr; wd took one value
    assert "fixed: wd = 0.1" in [t.get_text() for t in fig.texts]


def with_failed(trials: pd.DataFrame, model: str, k: int) -> pd.DataFrame:
    """The trials plus k failed ones of the model's sweep (infrastructure faults: error 100, no outcome)."""
    mine = trials[trials["model"] == model]
    extra = mine.head(k).assign(status="failed", top1_err=100.0, index=range(len(mine), len(mine) + k))
    return pd.concat([trials, extra], ignore_index=True)


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_failed_edf_trials_are_left_out_and_counted_in_tables_and_legends():
    trials = with_failed(edf_trials(), "vit_p_4gf", 2)
    table = experiments.stability_table(trials, n_resamples=20).set_index("model")
    assert table.loc["vit_p_4gf", ["n", "failed"]].tolist() == [16, 2] and table.loc["vit_c_4gf", "failed"] == 0
    expected = {"vit_p_4gf (n=16, 2 failed left out)", "vit_c_4gf (n=16)", "vit_c_1gf (n=16)"}
    edfs = figures.figure_edfs(trials, "adamw", n_resamples=20).get_axes()[0]
    assert set(legend_texts(edfs)) == {*expected, figures.BAND_LABEL}  # the band named once
    assert set(legend_texts(figures.figure_expected_best(trials, "adamw").get_axes()[0])) == expected
    edf_4gf = figures.figure_edf(trials, "adamw", n_resamples=20).get_axes()[4]
    assert set(legend_texts(edf_4gf)) == {"vit_p_4gf (n=16, 2 failed left out)", "vit_c_4gf (n=16)", figures.BAND_LABEL}
    fig = figures.figure_comparison(trials, n_resamples=20)
    assert "vit_p_4gf (n=16, 2 failed left out)" in {t.get_text() for t in fig.legends[0].get_texts()}


def test_failed_grid_runs_are_left_out_and_counted():
    grid = grid_trials()
    point = grid[(grid["model"] == "vit_c_4gf") & (grid["optimizer"] == "adamw")]
    failed = pd.concat(
        [
            point[point["epochs"] == 400].assign(epochs=800, status="failed", top1_err=100.0),  # a point of its own
            point[point["epochs"] == 100].assign(status="failed", top1_err=100.0),  # a repeat of a finished point
        ]
    )
    trials = pd.concat([grid, failed], ignore_index=True)
    assert experiments.failed_grid_runs(trials)[["model", "optimizer", "epochs"]].values.tolist() == [
        ["vit_c_4gf", "adamw", 800]
    ]
    curve = experiments.error_vs_epochs(trials).set_index(["model", "optimizer"])
    assert set(curve.loc[("vit_c_4gf", "adamw"), "failed"]) == {1} and set(
        curve.loc[("vit_p_4gf", "sgd"), "failed"]
    ) == {0}
    deltas = experiments.training_length_deltas(trials)
    assert set(deltas["reference_epochs"]) == {400}  # the failed 800-epoch run is no reference
    gaps = experiments.optimizer_gaps(trials).set_index("model")
    assert set(gaps.loc["vit_c_4gf", "failed"]) == {1} and set(gaps.loc["regnety_4gf", "failed"]) == {0}
    assert figures.figure3(trials)._suptitle.get_text() == "1 failed run left out"
    assert figures.figure3(grid)._suptitle is None


def colour_trials() -> pd.DataFrame:
    """EDF sweeps of both optimizers: two of one model (two presets) and two models of one family in
    one size panel, beside a model of each other family."""
    rng = np.random.default_rng(4)
    rows = []
    for sweep, model, family, preset in [
        ("c4-smoke", "vit_c_4gf", "ViT_C", "smoke"),
        ("c4-small", "vit_c_4gf", "ViT_C", "small"),
        ("c4b", "vit_c_4gf_b", "ViT_C", "smoke"),
        ("c1", "vit_c_1gf", "ViT_C", "smoke"),
        ("p4", "vit_p_4gf", "ViT_P", "smoke"),
        ("r4", "regnety_4gf", "RegNetY", "smoke"),
    ]:
        for optim in ("adamw", "sgd"):
            for i in range(8):
                rows.append(
                    {
                        "sweep": f"{sweep}-{optim}",
                        "index": i,
                        "model": model,
                        "family": family,
                        "optimizer": optim,
                        "epochs": 50,
                        "preset": preset,
                        "sampler": "random",
                        "status": "ok",
                        "lr": 10 ** rng.uniform(-3.6, -2.1),
                        "wd": 10 ** rng.uniform(-1.7, -0.1),
                        "top1_err": 25 + rng.exponential(3.0),
                    }
                )
    return pd.DataFrame(rows)


def line_colours(ax) -> dict[str, tuple]:
    """Legend label (without its count) -> colour of every labelled line and scatter of a panel."""
    out = {ln.get_label(): to_rgb(ln.get_color()) for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    out.update(
        {c.get_label(): to_rgb(c.get_facecolor()[0]) for c in ax.collections if not c.get_label().startswith("_")}
    )
    return {label.split(" (n=")[0]: colour for label, colour in out.items()}


def test_each_sweep_has_one_distinct_colour_in_every_panel_and_figure(monkeypatch):
    monkeypatch.setitem(experiments.SIZE_OF, "vit_c_4gf_b", "4GF")
    trials = colour_trials()
    edfs = line_colours(figures.figure_edfs(trials, "adamw", n_resamples=20).get_axes()[0])
    best = line_colours(figures.figure_expected_best(trials, "adamw").get_axes()[0])
    assert edfs == best and len(edfs) == 6 and len(set(edfs.values())) == 6
    sgd = line_colours(figures.figure_edfs(trials, "sgd", n_resamples=20).get_axes()[0])
    for model in ("vit_c_4gf_b", "vit_c_1gf", "vit_p_4gf", "regnety_4gf"):  # one sweep per optimizer: one colour
        assert sgd[model] == edfs[model]
    axes = figures.figure_edf(trials, "adamw", n_resamples=20).get_axes()
    scatter, panel_4gf, panel_1gf = line_colours(axes[0]), line_colours(axes[4]), line_colours(axes[3])
    assert set(scatter) == {"c4-smoke-adamw", "c4-small-adamw", "vit_c_4gf_b", "vit_p_4gf", "regnety_4gf"}
    assert scatter == panel_4gf and len(set(scatter.values())) == 5
    assert panel_1gf == {"vit_c_1gf": edfs["vit_c_1gf"]}  # the store's colour, not its panel's family colour
    assert scatter["vit_p_4gf"] == to_rgb(figures.COLORS["ViT_P"])  # the only ViT_P model of the store


def sweep_colours(ax, labels: dict[str, str]) -> dict[str, tuple]:
    """Sweep -> colour of a panel's labelled lines and scatters, from each sweep's legend label."""
    by_label = line_colours(ax)
    return {sweep: by_label[label] for sweep, label in labels.items() if label in by_label}


def test_a_sweep_has_one_colour_in_every_figure_of_a_store(monkeypatch):
    """One sweep -> colour mapping per store: vit_p_4gf is alone in Figure 4's 4GF panels but shares
    its family with vit_p_1gf in the store, so it has one (palette) colour everywhere; so does each
    sweep in Figure 4, the EDFs, the expected-best and the comparison figure."""
    monkeypatch.setitem(experiments.SIZE_OF, "vit_c_4gf_b", "4GF")
    p1 = colour_trials().query("sweep == 'p4-adamw'").assign(sweep="p1-adamw", model="vit_p_1gf")
    trials = pd.concat([colour_trials(), p1], ignore_index=True)
    sets = {k: g for k, g in experiments.edf_sets(trials).items() if g["optimizer"].iloc[0] == "adamw"}
    labels = {k: figures._set_label(k, g, sets) for k, g in sets.items()}
    store = figures.store_colors(trials)
    edf = figures.figure_edf(trials, "adamw", n_resamples=20).get_axes()
    seen = [sweep_colours(ax, labels) for ax in (edf[0], edf[3], edf[4])]
    seen.append(sweep_colours(figures.figure_edfs(trials, "adamw", n_resamples=20).get_axes()[0], labels))
    seen.append(sweep_colours(figures.figure_expected_best(trials, "adamw").get_axes()[0], labels))
    seen.append(sweep_colours(figures.figure_comparison(trials, n_resamples=20).get_axes()[0], labels))
    assert {s for panel in seen for s in panel} == set(sets) and len(seen[-1]) == len(sets) == 7
    for panel in seen:
        assert panel == {s: to_rgb(store[s]) for s in panel}
    assert store["p4-adamw"] != figures.COLORS["ViT_P"] and store["r4-adamw"] == figures.COLORS["RegNetY"]
    assert len({store[s] for s in sets}) == len(sets)
    # a part of the store (one model) drawn with the store's colours keeps them
    part = figures.figure_edfs(trials[trials["model"] == "vit_p_4gf"], "adamw", n_resamples=20, colors=store)
    assert line_colours(part.get_axes()[0]) == {"vit_p_4gf": to_rgb(store["p4-adamw"])}


def with_space(trials: pd.DataFrame, space: dict, **columns) -> pd.DataFrame:
    """EDF trials whose sweeps sampled ``space`` (stored as JSON), with the given columns set."""
    return trials.assign(space=json.dumps(space), **columns)


def test_a_dimension_fixed_at_one_value_gets_no_panel_and_the_edf_keeps_its_size():
    lr_wd = {"lr": ["log", 1e-4, 1e-2], "wd": ["log", 0.01, 1.0]}
    plain = figures.figure_comparison(with_space(edf_trials(), lr_wd), n_resamples=20)
    fixed = with_space(
        edf_trials(),
        {**lr_wd, "ema": ["choice", [True]], "mixup_alpha": ["uniform", 0.0, 0.8], "beta2": ["choice", [0.99]]},
        ema=True,
        beta2=0.99,
        mixup_alpha=np.linspace(0, 0.8, len(edf_trials())),
    )
    fig = figures.figure_comparison(fixed, n_resamples=20)
    axes = fig.get_axes()
    assert [a.get_xlabel() for a in axes[1:]] == ["lr", "wd", "mixup_alpha"]  # no panel for ema or beta2
    assert any(t.get_text() == "fixed: ema = True, beta2 = 0.99" for t in fig.texts)
    width = [a.get_position().width * f.get_figwidth() for f, a in ((plain, plain.get_axes()[0]), (fig, axes[0]))]
    assert width[1] == pytest.approx(width[0], rel=0.1)  # inches: the EDF is as wide with three dimensions as two


def test_the_edf_axis_fits_the_deltas_and_keeps_the_papers_20_where_they_reach_it():
    small = edf_trials().assign(top1_err=lambda t: 25 + (t["index"] % 8))  # deltas up to 7 points
    ax = figures.figure_comparison(small, n_resamples=20).get_axes()[0]
    assert ax.get_xlim() == (0.0, 8.0)
    wide = edf_trials().assign(top1_err=lambda t: 25 + 2 * t["index"])  # deltas up to 30 points
    assert figures.figure_comparison(wide, n_resamples=20).get_axes()[0].get_xlim() == (0.0, 20.0)


def test_a_nano_store_gets_one_edf_panel_the_full_width():
    nano = edf_trials()[lambda t: t["model"] != "vit_c_1gf"].replace(
        {"vit_p_4gf": "vit_p_nano", "vit_c_4gf": "vit_c_nano", "vit_p_4gf-adamw": "p", "vit_c_4gf-adamw": "c"}
    )
    fig = figures.figure_edf(nano, "adamw", n_resamples=20)
    axes = fig.get_axes()
    assert [a.get_title() for a in axes] == [
        "nano models: error vs lr",
        "nano models: error vs wd",
        "nano models: error vs lr·wd",
        "nano: EDF of Δ top-1 error",
    ]
    assert len(axes[3].get_lines()) == 2 and axes[3].get_position().width > 0.8
    assert axes[3].get_xlim() == (0.0, 20.0)  # Figures 4 and 5 keep the paper's axis, so that they compare
    assert figure_files.missing_parts(nano, "4") == []
    assert figure_files.missing_parts(nano, "5") == ["nano sgd EDF sweeps"]
    assert experiments.panel_sizes({"nano", "4GF"}) == ["nano", "1GF", "4GF", "18GF"]
    assert experiments.panel_sizes(set()) == experiments.SIZES
