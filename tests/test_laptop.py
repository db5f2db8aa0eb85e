"""The laptop protocol: the nano zoo's P/C parity, the preset's data, recipe and centred
intervals, the grid sampler that measured them, and a 2-trial laptop sweep through Ray."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import models
from cli import main
from models.registry import measure
from stability import optimizers
from stability.data import SYSTEM_DIRS, load_dataset
from stability.errors import UserError
from store import Store
from sweeps import grid, plan
from sweeps.space import draw, parse_space_flags

NANO = dict(image_size=16, patch_size=4, num_classes=10, in_chans=1)
ZOO = ["vit_p_nano", "vit_c_nano", "regnety_nano"]
has_fashion_mnist = pytest.mark.skipif(
    not SYSTEM_DIRS["fashion-mnist"].exists(), reason="needs Debian's dataset-fashion-mnist (.ci/run installs it)"
)


def test_nano_vits_are_at_parity_in_flops_and_params():
    p, c = (models.complexity(n, **NANO) for n in ("vit_p_nano", "vit_c_nano"))
    assert c["flops"] == pytest.approx(p["flops"], rel=0.02)
    assert c["params"] == pytest.approx(p["params"], rel=0.03)
    # the parity holds under torch's own count of the built modules too (it skips bias adds)
    image = torch.zeros(1, 1, 16, 16)
    counted = [measure(models.create(n, **NANO).eval(), image)["flops"] for n in ("vit_p_nano", "vit_c_nano")]
    assert counted[1] == pytest.approx(counted[0], rel=0.03)
    assert models.complexity("regnety_nano", **NANO)["flops"] == pytest.approx(p["flops"], rel=0.1)


def test_nano_vits_follow_the_papers_rules():
    p, c = models.create("vit_p_nano", **NANO), models.create("vit_c_nano", **NANO)
    assert len(c.blocks) == len(p.blocks) - 1 == 5
    assert p.stem.conv.kernel_size == (4, 4) and p.stem.conv.stride == (4, 4)
    convs = c.stem.convs()
    assert [(k.kernel_size[0], k.stride[0], k.out_channels) for k in convs] == [(3, 2, 48), (3, 2, 96)]
    assert [type(m) for m in c.stem.body] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    assert c.stem.proj.kernel_size == (1, 1) and c.stem.proj.out_channels == 64
    # the paper drops one block for the C stem because the stem costs about one block
    stem, _, _ = c.stem.complexity(16, 16)
    assert stem.flops == pytest.approx(c.blocks[0].complexity(17).flops, rel=0.1)
    assert [models.family(n) for n in ZOO] == ["ViT_P", "ViT_C", "RegNetY"]


def test_models_lists_the_nano_zoo_at_the_protocols_size(capsys):
    assert main(["models", "--json", "--image-size", "16"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    p, c = rows["vit_p_nano"], rows["vit_c_nano"]
    assert abs(c["flops"] / p["flops"] - 1) < 0.02 and abs(c["params"] / p["params"] - 1) < 0.03
    assert rows["regnety_nano"]["family"] == "RegNetY" and rows["vit_c_nano"]["source"] == "analytic"
    assert main(["models", "--image-size", "16"]) == 0
    table = capsys.readouterr().out
    assert "0.004567" in table and "0.004621" in table  # four significant digits: the parity reads off


@has_fashion_mnist
def test_the_laptop_data_is_a_fixed_subset_of_fashion_mnist():
    full = load_dataset("fashion-mnist", None, 28)
    a, b = load_dataset("fashion-mnist-5k", None, 28), load_dataset("fashion-mnist-5k", None, 16)
    assert a.train_x.shape == (5000, 1, 28, 28) and a.test_x.shape == (2000, 1, 28, 28)
    assert b.train_x.shape == (5000, 1, 16, 16)
    again = load_dataset("fashion-mnist-5k", None, 28)
    assert torch.equal(a.train_x, again.train_x) and torch.equal(a.test_y, again.test_y)
    rows = {bytes(x.flatten().tolist()) for x in full.train_x[:60000]}
    assert all(bytes(x.flatten().tolist()) in rows for x in a.train_x[:50])
    assert set(a.train_y.tolist()) == set(range(10))


def test_the_laptop_preset_adapts_the_recipe_in_every_trial_it_plans():
    scale = plan.choose_scale("laptop", False)
    assert (scale.dataset, scale.image_size, scale.patch_size, scale.epochs, scale.batch_size) == (
        "fashion-mnist-5k",
        16,
        4,
        10,
        128,
    )
    frame = plan.edf_manifest("s", "vit_p_nano", "adamw", scale, trials=4, seed=0)
    assert (frame["autoaugment"] == False).all()  # noqa: E712
    assert (frame["mixup_alpha"] == 0).all() and (frame["cutmix_alpha"] == 0).all()
    sampled = plan.edf_manifest(
        "s", "vit_p_nano", "adamw", scale, trials=8, seed=0, space=parse_space_flags(["mixup_alpha=uniform:0.1,0.5"])
    )
    assert sampled["mixup_alpha"].between(0.1, 0.5).all()  # a space that samples a field overrides the preset
    other = plan.edf_manifest("s", "vit_p_nano", "adamw", plan.choose_scale("smoke", False), trials=2, seed=0)
    assert "autoaugment" not in other


def test_a_laptop_manifest_round_trips_through_the_store_and_its_noise_keeps_the_recipe(tmp_path):
    scale = plan.choose_scale("laptop", False)
    frame = plan.edf_manifest("s", "vit_c_nano", "sgd", scale, trials=3, seed=0)
    store = Store(tmp_path)
    store.write_manifest("s", frame)
    back = store.read_manifest("s")
    assert plan.same_definition(back, plan.edf_manifest("s", "vit_c_nano", "sgd", scale, trials=3, seed=0))
    assert not plan.same_definition(back, plan.edf_manifest("s", "vit_c_nano", "sgd", scale, trials=3, seed=1))
    noise = plan.noise_manifest("s", back.iloc[0].to_dict(), seeds=2)
    assert (noise["autoaugment"] == False).all() and (noise["cutmix_alpha"] == 0).all()  # noqa: E712
    assert (noise["dataset"] == "fashion-mnist-5k").all()


@pytest.mark.parametrize("model", ZOO)
@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_laptop_intervals_are_table_4_wide_and_centred_on_the_measured_optimum(model, optim):
    lr, wd = plan.PRESET_OPTIMUM["laptop"][model][optim]
    frame = plan.edf_manifest("s", model, optim, plan.choose_scale("laptop", False), trials=64, seed=1)
    space = json.loads(frame["space"].iloc[0])
    (_, lr_lo, lr_hi), (_, wd_lo, wd_hi) = space["lr"], space["wd"]
    (t_lr_lo, t_lr_hi), (t_wd_lo, t_wd_hi) = optimizers.entry(optim).interval(models.family(model))
    assert lr_hi / lr_lo == pytest.approx(32) and lr_hi / lr_lo == pytest.approx(t_lr_hi / t_lr_lo)
    assert wd_hi / wd_lo == pytest.approx(t_wd_hi / t_wd_lo)  # 40x for ViTs under AdamW, as Table 4
    assert math.sqrt(lr_lo * lr_hi) == pytest.approx(lr) and math.sqrt(wd_lo * wd_hi) == pytest.approx(wd)
    assert frame["lr"].between(lr_lo, lr_hi).all() and frame["wd"].between(wd_lo, wd_hi).all()
    small = plan.edf_manifest("s", model, optim, plan.choose_scale("small", False), trials=2, seed=1)
    assert json.loads(small["space"].iloc[0])["lr"] != space["lr"]  # other presets keep Table 4's


def test_laptop_grids_train_the_nano_zoo_at_its_optima(capsys):
    scale = plan.choose_scale("laptop", False)
    fig4 = grid.plan_grid(4, scale, trials=32)
    assert sorted(fig4) == sorted(f"{m}-adamw-laptop" for m in ZOO)
    fig2 = grid.plan_grid(2, scale)["figure2-laptop"]
    for row in fig2.itertuples():
        assert (row.lr, row.wd) == plan.PRESET_OPTIMUM["laptop"][row.model][row.optimizer]
    assert sorted(set(fig2["epochs"])) == [10, 20, 40, 80] and set(fig2["warmup_epochs"]) == {1.0}
    assert main(["grid", "--figure", "5", "--preset", "laptop", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "no AutoAugment, no mixup/CutMix" in out.splitlines()[0]
    assert "total: 96 trials (64 ViT, 32 CNN) in 3 sweep(s)" in out


def test_the_grid_sampler_trains_every_point_of_a_space_of_choices_once():
    space = parse_space_flags(["lr=choice:0.1|1|10", "wd=choice:1e-5|1e-4", "ema=choice:true|false"])
    points = draw(space, 1, seed=3, sampler="grid")
    assert len(points) == 12
    assert {(p["lr"], p["wd"], p["ema"]) for p in points} == {
        (lr, wd, ema) for lr in (0.1, 1, 10) for wd in (1e-5, 1e-4) for ema in (True, False)
    }
    assert draw(space, 1, seed=3, sampler="grid") == points
    with pytest.raises(UserError, match="needs every dimension as choice"):
        draw(parse_space_flags(["lr=log:0.1,1", "wd=choice:0.1"]), 4, seed=0, sampler="grid")


@settings(deadline=None)  # the first example imports matplotlib
@given(st.lists(st.floats(0, 60), min_size=1, max_size=30))
def test_the_edf_axis_reaches_every_delta_up_to_the_papers_20_points(errors):
    from analysis import figures, stats

    grid_x = figures.edf_range({"s": pd.DataFrame({"top1_err": [e + 10 for e in errors]})})
    largest = float(stats.deltas([e + 10 for e in errors]).max())
    assert grid_x[0] == 0 and grid_x[-1] >= min(largest, figures.EDF_MAX)
    assert grid_x[-1] <= max(1.0, min(figures.EDF_MAX, largest + 1.5))


@pytest.mark.slow
@has_fashion_mnist
@pytest.mark.usefixtures("shared_ray")
def test_a_two_trial_laptop_sweep_trains_through_ray(tmp_path, capsys):
    argv = ["sweep", "--model", "vit_c_nano", "--optim", "sgd", "--preset", "laptop", "--epochs", "1"]
    assert main([*argv, "--trials", "2", "--results", str(tmp_path)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert any(line.startswith("protocol: laptop: Fashion-MNIST (fixed 5k/2k subset)") for line in out.splitlines())
    trials, _ = Store(tmp_path).read_trials("vit_c_nano-sgd-laptop")
    assert list(trials["status"]) == ["ok", "ok"]
    assert (trials["dataset"] == "fashion-mnist-5k").all() and (trials["image_size"] == 16).all()
    assert (trials["autoaugment"] == False).all() and (trials["mixup_alpha"] == 0).all()  # noqa: E712
    assert trials["top1_err"].min() < 80  # one epoch on 5k images learns at one draw at least (chance: 90)


def test_the_nano_zoo_s_sweeps_are_one_protocol_and_compare_pairwise():
    from analysis import experiments, figure_files

    scale = plan.choose_scale("laptop", False)
    frames = []
    for i, m in enumerate(ZOO):
        frame = plan.edf_manifest(f"{m}-adamw-laptop", m, "adamw", scale, trials=12, seed=0)
        frames.append(frame.assign(status="ok", top1_err=25.0 + i + frame["index"] % 5))
    trials = pd.concat(frames, ignore_index=True)
    assert len({f["space"].iloc[0] for f in frames}) == 3  # each model's own centred interval...
    assert len(experiments.edf_protocols(trials, "adamw")) == 1  # ...under one protocol: one Figure 4
    pairs = experiments.comparisons(trials, n_resamples=99)
    assert len(pairs) == 3 and set(pairs["model_a"]) | set(pairs["model_b"]) == set(ZOO)
    # one seed draws every model's trial i at one position of its own interval: they pair by index
    assert pairs["paired"].all() and (pairs["effect"] == "mean_delta").all()
    positions = experiments.draw_positions(frames[0])
    assert positions.shape == (12, 2) and ((positions >= 0) & (positions <= 1)).all()
    assert experiments.draw_positions(frames[1]) == pytest.approx(positions, abs=1e-9)
    reseeded = plan.edf_manifest("x", "vit_c_nano", "adamw", scale, trials=12, seed=1).assign(
        status="ok", top1_err=25.0
    )
    assert not experiments.same_draws(frames[0], reseeded)
    assert figure_files.figure_protocols(trials, "4") == experiments.edf_protocols(trials, "adamw")


def grid_trials(errors: dict[float, list[float]], wds: list[float]) -> pd.DataFrame:
    """A coarse grid's trial rows: errors[lr][j] at wds[j]."""
    rows = [
        {"lr": lr, "wd": wd, "top1_err": err, "status": "ok", "model": "m"}
        for lr, errs in errors.items()
        for wd, err in zip(wds, errs, strict=True)
    ]
    return pd.DataFrame(rows)


def test_the_grid_optimum_equals_the_hand_computation():
    from analysis.centring import grid_optimum, grid_table

    table = grid_table(grid_trials({0.01: [30, 31], 0.04: [20, 22], 0.16: [26, 40]}, [0.1, 1.0]))
    lr, wd = grid_optimum(table)
    # by lr: 30, 20, 26; the parabola's vertex is 0.5 x (30 - 26) / (30 - 40 + 26) = 1/8 of a step up
    assert lr == pytest.approx(0.04 * 4**0.125) and wd == 0.1  # wd 0.1 beats 1.0 by 8 points
    flat = grid_table(grid_trials({0.01: [30, 30.2], 0.04: [20, 20.5], 0.16: [26, 26.4]}, [0.1, 1.0]))
    assert grid_optimum(flat)[1] == pytest.approx(math.sqrt(0.1))  # within a point: the grid's centre
    edge = grid_table(grid_trials({0.01: [20, 21], 0.04: [25, 26], 0.16: [30, 31]}, [0.1, 1.0]))
    assert grid_optimum(edge)[0] == 0.01  # at the grid's edge: no parabola to move it


@settings(deadline=None)
@given(st.lists(st.floats(10, 90), min_size=6, max_size=6))
def test_the_grid_optimum_stays_between_the_best_points_neighbours(errors):
    from analysis.centring import grid_optimum, grid_table

    lrs = [0.01 * 4**k for k in range(3)]
    table = grid_table(grid_trials({lr: errors[2 * i : 2 * i + 2] for i, lr in enumerate(lrs)}, [1e-4, 1e-3]))
    lr, wd = grid_optimum(table)
    best = int(table.min(axis=1).to_numpy().argmin())
    assert lrs[max(0, best - 1)] <= lr <= lrs[min(2, best + 1)]
    assert 1e-4 <= wd <= 1e-3


README_CLAIMS = ("<!-- laptop claims: .venv/bin/python -m analysis.claims --results docs/laptop/store -->\n",
                 "<!-- end of laptop claims -->")  # fmt: skip


def test_the_readmes_laptop_tables_are_what_the_committed_store_says(capsys):
    """Every number of the README's laptop section is recomputed from the committed store by the
    one command the README names, and the README holds exactly what it prints."""
    from analysis import claims

    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text()
    begin, end = README_CLAIMS
    block = readme.split(begin, 1)[1].split(end, 1)[0]
    assert claims.main(["--results", str(root / "docs" / "laptop" / "store")]) == 0
    assert capsys.readouterr().out == block


README_BUDGETS = ("<!-- laptop budgets: tests/test_laptop.py renders this block from the committed stores -->\n",
                  "<!-- end of laptop budgets -->")  # fmt: skip
DELTAS = ("1 points", "2 points", "4 points")


def laptop_budgets(root: Path) -> str:
    """The README's budgets, sensitivity and transfer tables, from the committed laptop stores."""
    import warnings

    from analysis import budget, experiments, load_trials, transfer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials, moved = load_trials(root / "docs/laptop/store"), load_trials(root / "docs/laptop/transfer")
    table = budget.budget_table(trials)
    k = table.pivot_table(index="sweep", columns="delta", values="k_star", sort=False)
    summary = experiments.stability_table(trials, n_resamples=20).set_index("sweep")
    lines = ["| sweep | k* within 1 / 2 / 4 points | lr sensitivity | wd sensitivity |", "|---|---|---|---|"]
    for sweep, s in summary.iterrows():
        ks = " / ".join(str(int(k.loc[sweep, d])) for d in DELTAS)
        lines.append(f"| `{sweep}` | {ks} | {s['lr_sensitivity']:.2f} | {s['wd_sensitivity']:.2f} |")
    areas = budget.profile_areas(table).pivot_table(index="method", columns="delta", values="area")
    lines += ["", "| optimizer | profile area within 1 / 2 / 4 points (3 models) |", "|---|---|"]
    for method, a in areas.iterrows():
        lines.append(f"| {method} | {' / '.join(format(a[d], '.2f') for d in DELTAS)} |")
    lines += ["", "| tuned at 3 epochs, trained at 10 | lr shift | wd shift | rank correlation | regret |",
              "|---|---|---|---|---|"]  # fmt: skip
    for _, r in transfer.transfer_table(moved).iterrows():
        lines.append(f"| `{r['a']}` | {r['lr_shift']:+.2f} | {r['wd_shift']:+.2f} | {r['rank_correlation']:.2f} | "
                     f"{r['regret']:.2f} points |")  # fmt: skip
    return "\n".join(lines) + "\n"


def test_the_readmes_budget_tables_are_what_the_committed_stores_say():
    root = Path(__file__).resolve().parent.parent
    begin, end = README_BUDGETS
    block = (root / "README.md").read_text().split(begin, 1)[1].split(end, 1)[0]
    assert block == laptop_budgets(root)
