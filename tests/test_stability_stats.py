"""Expected best error after k trials, importances, comparisons, noise floors, and EDF sets
keyed by sweep: estimators against independent computations, on synthetic stores."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import analysis
from analysis import experiments, figures, stats

small_sets = st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=7)


@settings(max_examples=60, deadline=None)
@given(errors=small_sets)
def test_expected_best_equals_brute_force_over_subsets_and_tuples(errors):
    n = len(errors)
    ks = list(range(1, n + 1))
    without = analysis.expected_best(errors, ks, replace=False)
    with_ = analysis.expected_best(errors, ks[:4], replace=True)
    for k in ks:
        mins = [min(c) for c in itertools.combinations(errors, k)]
        assert without.loc[k - 1, "mean"] == pytest.approx(np.mean(mins), rel=1e-9, abs=1e-9)
        assert without.loc[k - 1, "std"] == pytest.approx(np.std(mins), rel=1e-6, abs=1e-6)
    for k in ks[:4]:
        mins = [min(c) for c in itertools.product(errors, repeat=k)]
        assert with_.loc[k - 1, "mean"] == pytest.approx(np.mean(mins), rel=1e-9, abs=1e-9)
        assert with_.loc[k - 1, "std"] == pytest.approx(np.std(mins), rel=1e-6, abs=1e-6)


@settings(max_examples=60, deadline=None)
@given(errors=st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=60), replace=st.booleans())
def test_expected_best_laws(errors, replace):
    n = len(errors)
    curve = analysis.expected_best(errors, range(1, n + 1), replace=replace)
    assert list(curve.columns) == ["k", "mean", "std"]
    assert curve.loc[0, "mean"] == pytest.approx(np.mean(errors), rel=1e-9, abs=1e-9)  # k = 1: the mean
    assert np.all(np.diff(curve["mean"]) <= 1e-9)  # more trials never expect worse
    if not replace:
        assert curve["mean"].iloc[-1] == pytest.approx(min(errors), abs=1e-9)  # k = n: the minimum
    assert (curve["std"] >= 0).all()


def test_expected_best_counts_diverged_as_100_and_checks_k():
    assert analysis.expected_best([np.nan, 10.0], [1])["mean"][0] == pytest.approx(55.0)
    with pytest.raises(ValueError):
        analysis.expected_best([1.0, 2.0], [3], replace=False)


def synthetic_sweep(depends_on: str, n: int = 64, seed: int = 0) -> pd.DataFrame:
    """One sweep whose error depends on one of (lr, wd) alone, drawn log-uniformly."""
    rng = np.random.default_rng(seed)
    lr, wd = 10 ** rng.uniform(np.log10(0.1), np.log10(3.2), n), 10 ** rng.uniform(np.log10(4e-6), np.log10(1.2e-4), n)
    x = np.log10(lr) + 0.25 if depends_on == "lr" else np.log10(wd) + 4.65
    space = json.dumps({"lr": ["log", 0.1, 3.2], "wd": ["log", 4e-6, 1.2e-4]})
    return pd.DataFrame(
        {
            "sweep": "s",
            "index": range(n),
            "status": "ok",
            "model": "vit_c_1gf",
            "lr": lr,
            "wd": wd,
            "top1_err": 30 + 40 * x**2,
            "space": space,
        }
    )


@pytest.mark.parametrize("evaluator", ["ped-anova", "fanova"])
@pytest.mark.parametrize("depends_on", ["lr", "wd"])
def test_importance_singles_out_the_parameter_the_error_depends_on(depends_on, evaluator):
    scores = analysis.importance(synthetic_sweep(depends_on), evaluator=evaluator)
    other = "wd" if depends_on == "lr" else "lr"
    assert set(scores) == {"lr", "wd"} and sum(scores.values()) == pytest.approx(1.0)
    assert scores[depends_on] > 0.8 > scores[other]


def test_importance_uses_the_stored_space_and_wants_one_sweep():
    from analysis.importance import sweep_space

    assert sweep_space(synthetic_sweep("lr")) == {"lr": ["log", 0.1, 3.2], "wd": ["log", 4e-6, 1.2e-4]}
    two = pd.concat([synthetic_sweep("lr"), synthetic_sweep("wd").assign(sweep="t")])
    with pytest.raises(ValueError, match="per sweep"):
        analysis.importance(two)


@pytest.mark.parametrize("evaluator", ["ped-anova", "fanova"])
def test_importance_rebuilds_int_and_choice_dimensions(evaluator):
    """A space with an int and a choice dimension beside lr: the error depends on lr alone."""
    rng = np.random.default_rng(0)
    n = 48
    lr = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), n))
    space = {"lr": ["log", 1e-3, 1e-1], "ema": ["choice", [True, False]], "epochs": ["int", 1, 3]}
    rows = pd.DataFrame(
        {
            "sweep": "s",
            "status": "ok",
            "model": "m",
            "lr": lr,
            "ema": rng.integers(0, 2, n).astype(bool),
            "epochs": rng.integers(1, 4, n),
            "top1_err": 50 + 20 * np.abs(np.log10(lr) + 2) + rng.normal(0, 0.2, n),
            "space": json.dumps(space),
        }
    )
    scores = analysis.importance(rows, evaluator=evaluator)
    assert set(scores) == {"lr", "ema", "epochs"} and scores["lr"] > 0.6 > max(scores["ema"], scores["epochs"])


def sweep_rows(sweep, model, errors, *, lrs=None, preset="smoke", **extra) -> pd.DataFrame:
    n = len(errors)
    lrs = np.geomspace(1e-3, 1e-2, n) if lrs is None else lrs
    family = "ViT_C" if model.startswith("vit_c") else "ViT_P"
    return pd.DataFrame(
        {
            "sweep": sweep,
            "index": range(n),
            "model": model,
            "family": family,
            "optimizer": "adamw",
            "epochs": 1,
            "dataset": "digits",
            "image_size": 8,
            "batch_size": 32,
            "seed": 0,
            "sampler": "random",
            "preset": preset,
            "status": "ok",
            "lr": lrs,
            "wd": 0.1,
            "top1_err": errors,
            **extra,
        }
    )


def test_edf_sets_are_keyed_by_sweep_and_leave_grid_and_noise_rows_out():
    rng = np.random.default_rng(0)
    trials = pd.concat(
        [
            sweep_rows("c-smoke", "vit_c_1gf", 20 + rng.exponential(2, 16)),
            sweep_rows("c-small", "vit_c_1gf", 20 + rng.exponential(2, 16), preset="small"),
            sweep_rows("c-smoke-noise", "vit_c_1gf", [21.0, 22.0, 23.5], sampler="noise", noise_of="c-smoke"),
            sweep_rows("grid", "vit_c_1gf", [30.0, 31.0], sampler="fixed"),
            sweep_rows("tpe", "vit_c_1gf", [40.0, 41.0], sampler="tpe"),
        ]
    )
    sets = experiments.edf_sets(trials)
    assert sorted(sets) == ["c-small", "c-smoke"] and all(len(g) == 16 for g in sets.values())
    assert set(experiments.optimum_runs(trials)["top1_err"]) == {30.0}  # only the grid's rows
    floors = analysis.noise_floors(trials).set_index("sweep")
    assert floors.loc["c-smoke", "seeds"] == 3 and floors.loc["c-smoke", "noise_range"] == pytest.approx(2.5)
    assert floors.loc["c-smoke", "noise_std"] == pytest.approx(np.std([21, 22, 23.5], ddof=1))
    table = experiments.stability_table(trials, n_resamples=50).set_index("sweep")
    assert table.loc["c-smoke", "noise_std"] == pytest.approx(floors.loc["c-smoke", "noise_std"])
    assert np.isnan(table.loc["c-small", "noise_std"])


def test_an_extended_sweep_pairs_with_its_partner_on_their_first_draws():
    """c was extended from 32 to 48 trials (its first 32 draws are p's): the pair is tested on
    those 32 draws, paired, and the words say so."""
    rng = np.random.default_rng(4)
    stable, fragile, lrs = 20 + rng.exponential(1.0, 48), 20 + rng.exponential(8.0, 32), np.geomspace(1e-3, 1e-2, 48)
    trials = pd.concat(
        [sweep_rows("c", "vit_c_1gf", stable, lrs=lrs), sweep_rows("p", "vit_p_1gf", fragile, lrs=lrs[:32])]
    )
    row = analysis.comparisons(trials, n_resamples=999).iloc[0]
    assert bool(row["paired"]) and row["draws"] == 32 and (row["trials_a"], row["trials_b"]) == (48, 32)
    expected = analysis.compare(stable[:32], fragile, paired=True, n_resamples=999, seed=0)
    assert (row["statistic"], row["p_value"]) == pytest.approx((expected["statistic"], expected["p_value"]))
    assert row["in_words"].startswith("vit_c_1gf's mean delta over their first 32 draws (the same in both) is lower")


def test_comparisons_pair_by_index_only_on_the_same_draws_and_say_it_in_words():
    rng = np.random.default_rng(3)
    stable, fragile = 20 + rng.exponential(1.0, 32), 20 + rng.exponential(8.0, 32)
    trials = pd.concat(
        [
            sweep_rows("c", "vit_c_1gf", stable),
            sweep_rows("p", "vit_p_1gf", fragile),
            sweep_rows("p-other-draws", "vit_p_1gf", fragile, lrs=np.geomspace(2e-3, 2e-2, 32)),
            sweep_rows("p-small", "vit_p_1gf", fragile, preset="small", image_size=32),  # another protocol
        ]
    )
    pairs = analysis.comparisons(trials, n_resamples=1999).set_index(["a", "b"])
    assert ("c", "p-small") not in pairs.index and len(pairs) == 3
    row = pairs.loc[("c", "p")]
    assert bool(row["paired"]) and not bool(pairs.loc[("c", "p-other-draws"), "paired"])
    assert row["median_delta_diff"] < 0 and row["median_delta_hi"] < 0  # ViT_C's deltas are smaller
    expected = analysis.compare(stable, fragile, paired=True, n_resamples=1999, seed=0)
    assert row["test"] == expected["test"] == stats.PAIRED_TEST
    assert (row["statistic"], row["p_value"], row["effect_lo"], row["effect_hi"]) == pytest.approx(
        (expected["statistic"], expected["p_value"], expected["low"], expected["high"])
    )
    assert pairs.loc[("c", "p-other-draws"), "test"] == stats.UNPAIRED_TEST
    assert list(pairs["p_holm"]) == pytest.approx(list(stats.holm(pairs["p_value"])))  # one family: one figure
    assert set(pairs["holm_family"]) == {f"the 3 adamw pairs of protocol {row['protocol']}"}
    assert row["p_value"] == pytest.approx(2 / 2000) and row["p_holm"] >= row["p_value"]  # beyond every resample
    assert row["in_words"].startswith(
        f"vit_c_1gf's mean delta over the same draws is lower than vit_p_1gf's: difference {row['statistic']:+.2f} "
    )
    assert f"95% CI [{row['effect_lo']:.2f}, {row['effect_hi']:.2f}], p = {row['p_value']:.3g} " in row["in_words"]
    assert f"(Holm over {row['holm_family']}: {row['p_holm']:.3g})" in row["in_words"]
    unpaired = pairs.loc[("c", "p-other-draws")]
    assert unpaired["effect"] == "mean_delta" and unpaired["statistic"] == pytest.approx(unpaired["effect_diff"])
    assert unpaired["in_words"].startswith(
        f"vit_c_1gf's mean delta is lower than vit_p_1gf's: difference {unpaired['statistic']:+.2f}"
    )


def test_each_optimizer_and_protocol_is_a_holm_family_of_its_own():
    rng = np.random.default_rng(4)
    errs = {m: 20 + rng.exponential(s, 16) for m, s in [("vit_c_1gf", 1.0), ("vit_p_1gf", 3.0), ("regnety_1gf", 2.0)]}
    trials = pd.concat(
        [sweep_rows(f"{m}-{o}", m, e + (o == "sgd"), optimizer=o) for o in ("adamw", "sgd") for m, e in errs.items()]
    )
    pairs = analysis.comparisons(trials, n_resamples=400)
    assert len(pairs) == 6 and pairs["holm_family"].nunique() == 2
    for optim, family in pairs.groupby("optimizer"):
        assert list(family["p_holm"]) == pytest.approx(list(stats.holm(family["p_value"])))  # three pairs, not six
        assert set(family["holm_family"]) == {f"the 3 {optim} pairs of protocol {family['protocol'].iloc[0]}"}


def test_the_sentence_reports_the_quantity_its_test_is_on():
    """Paired draws where the median and the mean delta disagree (one sweep is mostly at its best
    but diverges once; the other is always a little off): the test is on the mean delta, and the
    sentence and its interval say the mean delta, never the median's opposite claim."""
    rare_diverged = [20.0] * 11 + [100.0]  # deltas: 0 x 11, then 80: median 0, mean 6.67
    always_off = [20.0] + [22.0] * 11  # deltas: 0, then 2 x 11: median 2, mean 1.83
    trials = pd.concat([sweep_rows("rare", "vit_c_1gf", rare_diverged), sweep_rows("off", "vit_p_1gf", always_off)])
    row = analysis.comparisons(trials, n_resamples=200).iloc[0]
    assert (row["a"], row["b"], bool(row["paired"]), row["effect"]) == ("off", "rare", True, "mean_delta")
    assert row["median_delta_diff"] > 0 > row["mean_delta_diff"]  # the two summaries disagree here
    assert row["statistic"] == pytest.approx(row["effect_diff"]) == pytest.approx(row["mean_delta_diff"])
    assert row["effect_diff"] == pytest.approx(np.mean([2.0] * 11 + [0.0]) - 80 / 12)
    assert row["effect_lo"] <= row["effect_diff"] <= row["effect_hi"]
    assert (row["effect_lo"], row["effect_hi"]) == (row["mean_delta_lo"], row["mean_delta_hi"])
    words = row["in_words"]
    assert words.startswith(
        f"vit_p_1gf's mean delta over the same draws is lower than vit_c_1gf's: difference {row['statistic']:+.2f}"
    )
    assert f"95% CI [{row['effect_lo']:.2f}, {row['effect_hi']:.2f}]" in words and "median" not in words


def test_comparisons_need_one_protocol_over_every_row_of_both_sweeps():
    """A difference in any row (not only the first) or in the stored space keeps two sweeps apart;
    another lr interval (each model's search range, as Table 4's per family) does not, another
    kind of lr distribution does."""
    errs = 20 + np.random.default_rng(0).exponential(2.0, 8)
    space = json.dumps({"lr": ["log", 1e-3, 1e-2], "wd": ["log", 0.01, 0.1]})
    wider = json.dumps({"lr": ["log", 1e-4, 1e-2], "wd": ["log", 0.01, 0.1]})
    other_space = json.dumps({"lr": ["uniform", 1e-3, 1e-2], "wd": ["log", 0.01, 0.1]})
    mixed = sweep_rows("p-mixed", "vit_p_1gf", errs, space=space)
    mixed.loc[mixed.index[-1], "image_size"] = 32  # one late row of another size
    trials = pd.concat(
        [
            sweep_rows("c", "vit_c_1gf", errs + 1, space=space),
            sweep_rows("p", "vit_p_1gf", errs, space=space),
            sweep_rows("p-space", "vit_p_1gf", errs, space=other_space),
            sweep_rows("p-wider", "vit_p_1gf", errs, space=wider),
            mixed,
        ]
    )
    pairs = analysis.comparisons(trials, n_resamples=50)
    assert list(zip(pairs["a"], pairs["b"], strict=True)) == [("c", "p"), ("c", "p-wider"), ("p", "p-wider")]
    assert set(pairs["protocol"]) == {"digits_8px_b32_smoke_seed0_" + pairs["protocol"].iloc[0].rsplit("_", 1)[1]}


NOISE = {"stable": [21.0, 22.0, 24.0], "fragile": [20.0, 20.5]}


def noisy_store(names: dict[str, str], measured: list[str]) -> pd.DataFrame:
    """Two comparable sweeps, "stable" and "fragile", under the given sweep names, with noise runs
    for the ``measured`` ones."""
    rng = np.random.default_rng(5)
    rows = [sweep_rows(names["stable"], "vit_c_1gf", 20 + rng.exponential(1.0, 12)),
            sweep_rows(names["fragile"], "vit_p_1gf", 20 + rng.exponential(4.0, 12))]  # fmt: skip
    for which in measured:
        name = names[which]
        rows.append(sweep_rows(f"{name}-noise", "vit_c_1gf", NOISE[which], sampler="noise", noise_of=name))
    return pd.concat(rows)


@pytest.mark.parametrize("measured", [["stable"], ["fragile"], ["stable", "fragile"]])
def test_noise_floor_of_a_difference_is_the_same_whichever_sweep_sorts_first(measured):
    seen = []
    for names in [{"stable": "a-sweep", "fragile": "z-sweep"}, {"stable": "z-sweep", "fragile": "a-sweep"}]:
        pairs = analysis.comparisons(noisy_store(names, measured), n_resamples=50)
        assert len(pairs) == 1
        row = pairs.iloc[0]
        words = row["in_words"].split("seed-noise floor of this difference")[1]
        seeds = " + ".join(f"{len(NOISE[k])} ({names[k]})" for k in sorted(measured, key=lambda k: names[k]))
        assert row["noise_seeds"] == seeds and f"; {seeds} seeds, " in words
        if len(measured) == 2:
            assert "both sweeps' noise runs)" in words
        else:
            assert f"{names[measured[0]]}'s noise runs, assumed for both sweeps)" in words
        assert row["noise_floor_lo"] < row["noise_floor"] < row["noise_floor_hi"]
        seen.append(row["noise_floor"])
    assert seen[0] == pytest.approx(seen[1], rel=0.05)  # the same, up to the simulation's own noise


def test_noise_floor_equals_the_hand_computation_where_the_best_is_clear():
    """Each sweep's best far below its other trials: re-seeding moves the mean delta by
    mean(e) - e_best, whose variance is s^2 (n - 1) / n; the two sweeps' noises add."""
    a, b = np.array([0.0, 50, 60, 70, 80]), np.array([0.0, 40, 45, 90])
    floor = stats.noise_floor(a, b, (0.5, 0.3, 1.0), (0.8, 0.4, 2.0), n_sims=40_000)
    expected = np.sqrt(0.5**2 * 4 / 5 + 0.8**2 * 3 / 4)
    assert floor.floor == pytest.approx(expected, rel=0.02) and abs(floor.shift) < 0.02
    assert floor.low == pytest.approx(np.sqrt(0.3**2 * 4 / 5 + 0.4**2 * 3 / 4), rel=0.02)
    assert floor.high == pytest.approx(np.sqrt(1.0**2 * 4 / 5 + 2.0**2 * 3 / 4), rel=0.02)
    kept = stats.noise_floor(a, b, (0.5, 0.3, 1.0), (0.8, 0.4, 2.0), fixed_a=[True] * 5, fixed_b=[True] * 4)
    assert kept.floor == 0.0  # diverged trials keep their score


def test_seed_noise_interval_equals_the_chi_square_computation():
    low, high = stats.seed_noise_interval(1.0, 3)  # 2 degrees of freedom: chi2 quantiles 7.378 and 0.0506
    assert (low, high) == pytest.approx((np.sqrt(2 / 7.3778), np.sqrt(2 / 0.050636)), rel=1e-4)
    assert np.isnan(stats.seed_noise_interval(1.0, 1)).all()


def test_summary_differences_of_a_set_with_itself_are_zero():
    errs = 20 + np.random.default_rng(0).exponential(3.0, 24)
    for name, (d, lo, hi) in analysis.compare_summaries(errs, errs, paired=True, n_resamples=200).items():
        assert d == 0 and lo <= 0 <= hi, name


def test_new_figures_have_one_curve_per_sweep():
    rng = np.random.default_rng(0)
    trials = pd.concat(
        [
            sweep_rows("c", "vit_c_1gf", 20 + rng.exponential(1.0, 12)),
            sweep_rows("p", "vit_p_1gf", 25 + rng.exponential(6, 12)),
        ]
    )
    ax = figures.figure_expected_best(trials, "adamw").get_axes()[0]
    assert len(ax.get_lines()) == 2 and ax.get_xscale() == "log"
    assert ax.get_lines()[0].get_xdata()[-1] == 12
    ax = figures.figure_edfs(trials, "adamw", n_resamples=50).get_axes()[0]
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 2
    fig = figures.figure_dimensions(trials[trials["sweep"] == "c"])
    dims = fig.get_axes()
    assert [a.get_xlabel() for a in dims] == ["lr"] and dims[0].get_xscale() == "log"
    assert "fixed: wd = 0.1" in [t.get_text() for t in fig.texts]  # every trial drew wd 0.1: no panel


def test_public_api():
    for name in ("edf", "summarize", "compare", "holm", "expected_best", "importance", "comparisons", "noise_floors"):
        assert callable(getattr(analysis, name)), name


def test_the_report_counts_failed_trials_per_sweep_and_says_p_values_are_holm_adjusted():
    from analysis import report

    rng = np.random.default_rng(0)
    failed = sweep_rows("p", "vit_p_1gf", [100.0, 100.0], status="failed").assign(index=[12, 13])
    trials = pd.concat(
        [
            sweep_rows("c", "vit_c_1gf", 20 + rng.exponential(1.0, 12)),
            sweep_rows("p", "vit_p_1gf", 25 + rng.exponential(6, 12)),
            sweep_rows("q", "vit_p_1gf", 25 + rng.exponential(6, 12), lrs=np.geomspace(2e-3, 2e-2, 12)),
            failed,
        ]
    )
    page = report.build(trials, "results", n_resamples=20)
    assert "12 trials drawn (diverged ones count with error 100); 2 failed trial(s)" in page
    assert page.count("failed trial(s)") == 1  # only the sweep that has some
    assert "Holm-adjusted within each family of pairs drawn together in one figure" in page
    assert page.count("(Holm over the 3 adamw pairs of protocol ") == 3  # c-p, c-q, p-q: one family
    protocols = report.protocol_table(trials).set_index("sweep")  # the page's first table
    assert protocols.loc["p", ["trials", "failed"]].tolist() == [14, 2] and protocols.loc["c", "failed"] == 0


@pytest.mark.parametrize("vit_p_first", [False, True])  # the sweep names decide which side a comparison puts first
def test_the_papers_claims_are_measured_from_the_sweeps_and_name_what_is_missing(vit_p_first):
    from analysis import claims

    rng = np.random.default_rng(6)
    u = rng.random(32)  # shared draws: the sweeps pair
    errs = {
        ("vit_p_nano", "adamw"): 30 + 40 * (u - 0.5) ** 2 * 4,
        ("vit_c_nano", "adamw"): 25 + 10 * (u - 0.5) ** 2 * 4,
        ("vit_p_nano", "sgd"): 33 + 40 * (u - 0.5) ** 2 * 4,
        ("vit_c_nano", "sgd"): 25.5 + 10 * (u - 0.5) ** 2 * 4,
    }
    name = {"vit_p_nano": "a" if vit_p_first else "z", "vit_c_nano": "m"}
    rows = [sweep_rows(f"{name[m]}-{o}", m, e, optimizer=o) for (m, o), e in errs.items()]
    noise = sweep_rows("m-adamw-noise", "vit_c_nano", [25.0, 25.4, 24.8], sampler="noise", noise_of="m-adamw")
    table = claims.claims_table(pd.concat([*rows, noise]), n_resamples=400)["measured"]
    best = {k: float(v.min()) for k, v in errs.items()}
    gap_p, gap_c = (best[(m, "sgd")] - best[(m, "adamw")] for m in ("vit_p_nano", "vit_c_nano"))
    assert table.iloc[0] == "not in the store: run `stability grid --figure 2` and `--figure 3`"
    assert table.iloc[1] == (
        f"yes (seed noise not measured): best SGD - best AdamW, vit_p_nano {gap_p:+.2f}, vit_c_nano {gap_c:+.2f} "
        "(seed noise of the difference not measured)"
    )
    steeper = table.iloc[2]
    mean_delta = {k: np.mean(v - v.min()) for k, v in errs.items()}
    d = mean_delta[("vit_c_nano", "adamw")] - mean_delta[("vit_p_nano", "adamw")]
    assert steeper.startswith(f"AdamW: yes (ViT_C - ViT_P mean Δ {d:+.2f} points, 95% CI [-")
    assert (
        "SGD: yes (ViT_C - ViT_P mean Δ -" in steeper
        and "over the 1 sgd pair, seed-noise floor not measured" in steeper
    )
    assert "over the 1 adamw pair, seed-noise floor " in steeper  # one sweep's noise stands for both
    c, p = best[("vit_c_nano", "adamw")], best[("vit_p_nano", "adamw")]
    assert table.iloc[3].startswith(
        f"yes: best error of ViT_C vs ViT_P, AdamW {c:.2f}% vs {p:.2f}% (seed noise σ 0.31, not measured)"
    )


def test_a_claim_within_seed_noise_is_not_a_verdict():
    from analysis import claims

    assert claims.verdict(0.9, 0.5) == "within seed noise" and claims.verdict(1.1, 0.5) == "yes"
    assert claims.verdict(-1.1, 0.5) == "no" and claims.verdict(0.1, np.nan) == "yes (seed noise not measured)"
    assert claims.summary_of(["yes", "yes (seed noise not measured)"]) == "yes"
    assert claims.summary_of(["yes", "within seed noise"]) == "mixed"


def test_the_convergence_claim_compares_each_shorter_length_against_seed_noise():
    from analysis import claims

    epochs = [10, 20, 40, 80]
    errs = {"vit_p_nano": [40.0, 33.0, 29.0, 27.0], "vit_c_nano": [33.0, 31.0, 26.5, 25.0]}  # deltas: 13/6/2 vs 8/6/1.5
    grid = pd.concat(
        [
            sweep_rows("figure2-laptop", m, e, sampler="fixed", epochs=epochs, lrs=np.full(4, 1e-3))
            for m, e in errs.items()
        ]
    )
    said = claims.convergence(grid, noise=1.0)  # a difference of two deltas: 2 points of noise, 4 to count
    assert said == (
        "mixed (AdamW, err(E) - err(80) of vit_p_nano vs vit_c_nano: E=10: 13.00 vs 8.00, E=20: 6.00 vs 6.00, "
        "E=40: 2.00 vs 1.50; single runs; ViT_C's delta is lower at 2 of 3 lengths; beyond 4σ = 4.00 points "
        "(σ 1.00, the largest seed noise of the ViTs' sweeps) lower at 1, higher at 0)"
    )
    assert claims.convergence(grid, noise=np.nan).startswith("mixed, seed noise not measured (AdamW")
    assert claims.convergence(grid, noise=np.nan).endswith("ViT_C's delta is lower at 2 of 3 lengths)")
