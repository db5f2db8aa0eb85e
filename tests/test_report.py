"""`stability noise` and `stability report` on a copy of the store made by real tiny sweeps."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import budget, experiments, load_trials
from cli import main
from tests.conftest import join_shared_ray

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray")]


class Page(HTMLParser):
    """Headings, images and the text of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.headings, self.images, self.text, self.external = [], [], [], []
        self._in_heading = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3"):
            self._in_heading = True
            self.headings.append("")
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("src", "href"):
            if attrs.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])

    def handle_endtag(self, tag):
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False

    def handle_data(self, data):
        if self._in_heading:
            self.headings[-1] += data
        self.text.append(data)


@pytest.fixture(scope="module")
def store_with_noise(tiny_store, tmp_path_factory, _ray_until_the_end):
    join_shared_ray()
    root = tmp_path_factory.mktemp("noisy") / "results"
    shutil.copytree(tiny_store, root)
    argv = ["noise", "--sweep", "vit_c_1gf-adamw-smoke", "--seeds", "2", "--results", str(root)]
    assert main(argv) == 0
    return root


def test_noise_retrains_the_best_under_other_seeds_beside_the_edf(store_with_noise):
    trials = load_trials(store_with_noise)
    noise = trials[trials["sweep"] == "vit_c_1gf-adamw-smoke-noise"]
    source = trials[trials["sweep"] == "vit_c_1gf-adamw-smoke"]
    best = source.loc[source["top1_err"].idxmin()]
    assert len(noise) == 2 and set(noise["status"]) == {"ok"} and set(noise["noise_of"]) == {best["sweep"]}
    assert sorted(noise["seed"]) == [1, 2] and (noise["lr"] == best["lr"]).all() and (noise["wd"] == best["wd"]).all()
    assert set(noise["sampler"]) == {"noise"}
    sets = experiments.edf_sets(trials)
    assert "vit_c_1gf-adamw-smoke-noise" not in sets and len(sets["vit_c_1gf-adamw-smoke"]) == 3
    table = experiments.stability_table(trials, n_resamples=50).set_index("sweep")
    assert table.loc["vit_c_1gf-adamw-smoke", "noise_std"] == pytest.approx(noise["top1_err"].std(ddof=1))


def test_noise_of_a_sweep_that_is_not_there_is_a_user_error(tmp_path, capsys):
    assert main(["noise", "--sweep", "nope", "--results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no sweep 'nope'")


@pytest.mark.parametrize("replace", [False, True])
def test_report_is_one_self_contained_page(store_with_noise, tmp_path, capsys, replace):
    out = tmp_path / "report.html"
    argv = ["report", "--results", str(store_with_noise), "--out", str(out), "--resamples", "50"]
    assert main(argv + ["--with-replacement"] * replace) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = Page()
    page.feed(out.read_text())
    assert not page.external  # opens offline
    assert {"Protocol of each sweep", "Stability summary", "AdamW sweeps", "The paper's figures"} <= set(page.headings)
    assert {"vit_c_1gf-adamw-smoke", "Figure 3", "What the store still lacks"} <= set(page.headings)
    assert len(page.images) >= 6
    for src in page.images:
        head, data = src.split(",", 1)
        assert head == "data:image/png;base64"
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.verify()
        assert image.size[0] > 100
    text = "".join(page.text)
    # the comparison, in words: the summary its test is on (the mean delta where the sweeps are paired)
    assert re.search(r"vit_c_1gf's mean delta( over the same draws)? is", text) and "95% CI [" in text
    assert "(Holm over the 1 adamw pair of protocol " in text and "within each family of pairs" in text
    assert "bootstrap (" in text  # the test is named
    assert "simultaneous bands" in text
    assert ("drawn with replacement (Dodge" if replace else "drawn without replacement (unbiased)") in text
    assert "3 trials drawn (diverged ones count with error 100)." in text  # per sweep, none failed
    assert "Figure 3 (protocol" not in text  # one protocol: one Figure 3, no label needed
    assert "stability grid --figure 2" in text  # what fills the missing figures
    assert "Importance of each sampled hyperparameter" in text or "Importance not computed" in text


def test_report_of_an_empty_store_is_a_user_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", "--results", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("error: no trial results")


def test_sweeps_record_their_space(tiny_store):
    """Table 4's ViT AdamW interval, log-uniform: what importance rebuilds its distributions from."""
    manifest = pd.read_parquet(tiny_store / "vit_c_1gf-adamw-smoke" / "manifest.parquet")
    assert json.loads(manifest["space"].iloc[0]) == {"lr": ["log", 2.5e-4, 8.0e-3], "wd": ["log", 0.02, 0.8]}
    assert manifest["space"].nunique() == 1
    rows = load_trials(tiny_store)
    assert rows.loc[rows["sweep"] == "vit_c_1gf-adamw-smoke", "space"].notna().all()  # carried to the trial rows


def test_first_k_reads_each_sweeps_first_draws_only(tiny_store, tmp_path, capsys):
    """``--first K``: what a budget of K trials per sweep would have said."""
    every, first = load_trials(tiny_store), load_trials(tiny_store, first=2)
    edf = every["sampler"].isin(["random", "sobol", "imported"])
    expected = every[~edf | (every["index"] < 2)].sort_values("trial_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(first.sort_values("trial_id").reset_index(drop=True), expected)
    assert set(first[first["sampler"] == "random"].groupby("sweep").size()) == {2} and len(first) < len(every)
    out = tmp_path / "report.html"
    argv = ["report", "--results", str(tiny_store), "--out", str(out), "--resamples", "20", "--first", "2"]
    assert main(argv) == 0, capsys.readouterr().err
    page = Page()
    page.feed(out.read_text())
    text = "".join(page.text)
    assert "each sweep's first 2 trials" in text and "2 trials drawn" in text and "3 trials drawn" not in text


def test_a_study_of_two_optimizers_across_three_models_reports_budgets_and_sensitivities(tmp_path, capsys):
    """Written (not trained): 3 nano models x AdamW and SGD, 8 trials each."""
    from sweeps import plan
    from tests.conftest import write_planned_sweeps

    scale = plan.choose_scale("smoke", False, dataset="synthetic", image_size=8, patch_size=4, batch_size=64)
    sweeps = {
        f"{m}-{o}": plan.edf_manifest(f"{m}-{o}", m, o, scale, trials=8, seed=0)
        for m in ("vit_p_nano", "vit_c_nano", "regnety_nano")
        for o in ("adamw", "sgd")
    }
    write_planned_sweeps(tmp_path / "store", sweeps, seed=5)
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(tmp_path / "store"), "--out", str(out), "--resamples", "20"]) == 0
    capsys.readouterr()
    page = Page()
    page.feed(out.read_text())
    text = "".join(page.text)
    assert "Budgets" in page.headings and "Trials to target k*(δ)" in text
    assert "Performance profiles over k*" in text and "Probability of being best at budget k" in text
    assert "lr_sensitivity" in text and "wd_sensitivity" in text and "capped_mean_delta" in text
    assert "How many trials" in text and "detectable_mean_delta_diff" in text  # the power table, per family
    for family in ("the 3 adamw pairs of protocol", "the 3 sgd pairs of protocol"):
        assert any(h.startswith(family) for h in page.headings), family
    areas = budget.profile_areas(budget.budget_table(load_trials(tmp_path / "store")))
    assert set(areas["method"]) == {"adamw", "sgd"} and set(areas["workloads"]) == {3}
    table = budget.budget_table(load_trials(tmp_path / "store"))
    for delta in set(table["delta"]):  # each area is the integral of its step profile over [1, tau_max]
        profile = budget.performance_profile(table, delta)
        top = profile["tau"].max()
        for method, p in profile.groupby("method"):
            steps = np.append(p["tau"].to_numpy(), top)
            integral = float(np.sum(np.diff(steps) * p["rho"].to_numpy()))
            expected = integral / (top - 1) if top > 1 else 1.0
            assert p["area"].iloc[0] == pytest.approx(expected), (delta, method)


def test_first_k_leaves_grid_and_noise_rows_whole(tiny_store):
    every, first = load_trials(tiny_store), load_trials(tiny_store, first=1)
    kept = ~every["sampler"].isin(["random", "sobol", "imported"])
    assert kept.any() and len(first[~first["sampler"].isin(["random", "sobol", "imported"])]) == kept.sum()
