"""The optimizer registry: each built-in optimizer's step against a hand computation or the library's
own optimizer on the same groups, the decay policy under every entry, exact resume, sweepable
hyperparameters, user optimizers and N-optimizer analysis."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import models
from analysis import experiments, figures
from cli import main
from stability import optimizers
from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.errors import UserError
from stability.trainer import train
from store.space import space_from_json
from sweeps import plan
from sweeps.space import parse_space_flags
from tests.conftest import TINY

pytestmark = pytest.mark.usefixtures("shared_ray")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BUILT_IN = ["sgd", "adamw", "muon", "lion", "schedulefree_adamw"]
SCHEDULE = optimizers.Schedule(warmup_steps=0, total_steps=10)
DATA = load_synthetic(8, train=256, test=64)


def vit(name: str = "vit_c_1gf") -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create(name, num_classes=10, image_size=8, patch_size=4)


@pytest.fixture(autouse=True)
def registry_as_it_was():
    """A test that imports examples/signum.py leaves the registry (and the module cache) as it found them."""
    import sys

    entries = dict(optimizers._ENTRIES)
    yield
    optimizers._ENTRIES.clear()
    optimizers._ENTRIES.update(entries)
    sys.modules.pop("signum", None)


def one_step(optim: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    optim.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optim.step()


def same_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    return [{k: v for k, v in g.items() if k != "role"} for g in optimizers.decay_groups(model, wd)]


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("model_name", ["vit_c_1gf", "regnety_1gf"])
@pytest.mark.parametrize("name", BUILT_IN)
def test_no_entry_decays_norms_or_biases(name, model_name):
    model = vit(model_name)
    _, no_decay = optimizers.decay_split(model)
    params = dict(model.named_parameters())
    optim = optimizers.build(name, model, lr=1e-3, wd=0.1, schedule=SCHEDULE, values={})
    decayed = {id(p) for g in optim.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert no_decay and not decayed & {id(params[n]) for n in no_decay}
    covered = [id(p) for g in optim.param_groups for p in g["params"]]
    assert sorted(covered) == sorted(id(p) for p in model.parameters())  # every parameter, once
    if optimizers.entry(name).modes:
        optim.train()  # Schedule-Free steps only in train mode (the trainer switches it)
    one_step(optim, model)  # Muon on RegNetY (no hidden linear layer) is AdamW alone
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "library"),
    [
        ("sgd", lambda groups: torch.optim.SGD(groups, lr=0.05, momentum=0.9, nesterov=True)),
        ("adamw", lambda groups: torch.optim.AdamW(groups, lr=0.05, betas=(0.9, 0.999))),
    ],
)
def test_the_papers_optimizers_step_as_torchs_on_the_same_groups(name, library):
    mine, theirs = vit(), vit()
    one_step(optimizers.build(name, mine, lr=0.05, wd=0.1, schedule=SCHEDULE, values={}), mine)
    one_step(library(same_groups(theirs, 0.1)), theirs)
    assert_same_weights(mine, theirs)


def test_lion_steps_as_the_hand_computation():
    """First step from zero momentum: p <- p (1 - lr wd) - lr sign(g) (lion-pytorch's rule)."""
    model, lr, wd = vit(), 0.01, 0.5
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    decay, _ = optimizers.decay_split(model)
    optim = optimizers.build("lion", model, lr=lr, wd=wd, schedule=SCHEDULE, values={})
    one_step(optim, model)
    for n, p in model.named_parameters():
        w = wd if n in decay else 0.0
        expected = before[n] * (1 - lr * w) - lr * torch.sign(p.grad)
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7, msg=n)


def test_muon_takes_only_hidden_matrices_and_steps_as_torchs_muon():
    model = vit()
    optim = optimizers.build("muon", model, lr=0.02, wd=0.1, schedule=SCHEDULE, values={"ns_steps": 3})
    by_role = {role: [p for g in optim.param_groups if g.get("role") == role for p in g["params"]]
               for role in ("muon", "adamw")}  # fmt: skip
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for p in by_role["muon"]}
    assert muon and all(p.ndim == 2 for p in by_role["muon"])
    assert not {n for n in muon if n.startswith(("stem.", "head.")) or n in ("cls_token", "pos_embed")}
    assert {n for n in names.values() if n.endswith(("qkv.weight", "fc1.weight"))} <= muon
    # the library's own optimizers on the same split
    twin = copy.deepcopy(model)
    one_step(optim, model)
    twin_params = dict(twin.named_parameters())
    split = {role: [{**{k: v for k, v in g.items() if k not in ("params", "role")},
                     "params": [twin_params[names[id(p)]] for p in g["params"]]}
                    for g in optim.param_groups if g["role"] == role] for role in ("muon", "adamw")}  # fmt: skip
    for g in split["muon"] + split["adamw"]:
        g.pop("lr", None)
    reference = [
        torch.optim.Muon(split["muon"], lr=0.02, momentum=0.95, ns_steps=3, adjust_lr_fn="match_rms_adamw"),
        torch.optim.AdamW(split["adamw"], lr=0.02, betas=(0.9, 0.999)),
    ]
    torch.manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    torch.nn.functional.cross_entropy(twin(x), y).backward()
    for r in reference:
        r.step()
    assert_same_weights(model, twin)


def test_schedulefree_steps_as_the_library_and_evaluates_at_its_average():
    from schedulefree import AdamWScheduleFree

    mine, theirs = vit(), vit()
    schedule = optimizers.Schedule(warmup_steps=3, total_steps=10)
    optim = optimizers.build("schedulefree_adamw", mine, lr=0.01, wd=0.1, schedule=schedule, values={})
    reference = AdamWScheduleFree(same_groups(theirs, 0.1), lr=0.01, betas=(0.9, 0.999), warmup_steps=3)
    for o, m in ((optim, mine), (reference, theirs)):
        o.train()
        for _ in range(3):
            one_step(o, m)
    assert_same_weights(mine, theirs)
    training = [p.detach().clone() for p in mine.parameters()]
    optim.eval()
    assert any(not torch.equal(a, p) for a, p in zip(training, mine.parameters(), strict=True))
    entry = optimizers.entry("schedulefree_adamw")
    assert entry.own_schedule and entry.modes and entry.recipe == {"ema": False}


def tiny(optim: str, **kw) -> TrainConfig:
    lr = {"sgd": 0.5, "adamw": 1e-3, "muon": 1e-3, "lion": 1e-4, "schedulefree_adamw": 2e-3}.get(optim, 1e-3)
    return TrainConfig(**{**TINY, "optim": optim, "lr": lr, "wd": 0.05, "epochs": 3, **kw})


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", BUILT_IN)
def test_resume_after_an_interrupted_epoch_equals_the_uninterrupted_run(name, tmp_path):
    # Muon's Newton-Schulz iterations run in bfloat16, slow on a CPU (73 s a run with its 5
    # iterations, 14 s with one): one iteration resumes just the same.
    kw = {"optim_args": (("ns_steps", 1),)} if name == "muon" else {}
    full = train(tiny(name, **kw), checkpoint_dir=tmp_path / "full", data=DATA)

    def stop_in_epoch_3(point):
        if point["epoch"] == 2:
            raise Interrupt  # before epoch 2's checkpoint: the run resumes after epoch 1

    with pytest.raises(Interrupt):
        train(tiny(name, **kw), checkpoint_dir=tmp_path / "cut", on_epoch=stop_in_epoch_3, data=DATA)
    resumed = train(tiny(name, **kw), checkpoint_dir=tmp_path / "cut", data=DATA)
    keys = ["epoch", "train_loss", "top1_err", "top1_err_raw", "lr"]
    assert resumed.row["resumed_from_epoch"] == 1
    assert [[p[k] for k in keys] for p in resumed.curve] == [[p[k] for k in keys] for p in full.curve]
    groups = json.loads(full.row["param_groups"])
    assert sum(g["params"] for g in groups) == full.row["params"] and full.row["lr_scaling"] == "linear"


def test_schedulefree_holds_its_lr_and_evaluates_at_its_averaged_weights(monkeypatch):
    from schedulefree import AdamWScheduleFree

    switches = []
    original = AdamWScheduleFree.eval
    monkeypatch.setattr(AdamWScheduleFree, "eval", lambda self: switches.append(1) or original(self))
    result = train(tiny("schedulefree_adamw"), data=DATA)
    assert all(p["lr"] == pytest.approx(2e-3 * 64 / 2048) for p in result.curve)  # no cosine
    assert result.row["top1_err"] == result.row["top1_err_raw"]  # no model EMA by default
    assert len(switches) == 3  # one evaluation per epoch, at the averaged weights; no EMA kept
    switches.clear()
    train(tiny("schedulefree_adamw", ema=True), data=DATA)
    assert len(switches) == 3 * 2 + 3  # raw and EMA evaluations, and an EMA update per epoch (4 steps < 32)


def test_hyperparameters_are_checked_and_enter_the_identity_once_set():
    cfg = tiny("muon", optim_args=(("ns_steps", 3.0),)).resolved()
    assert cfg.optim_args == (("ns_steps", 3),) and cfg.identity()["ns_steps"] == 3
    assert "ns_steps" not in tiny("muon").resolved().identity()
    with pytest.raises(UserError, match="ns_steps must be an integer >= 1"):
        tiny("muon", optim_args=(("ns_steps", 0),)).resolved()
    with pytest.raises(UserError, match=r"'momentum' is not a hyperparameter of adamw .*adamw's: beta2"):
        tiny("adamw", optim_args=(("momentum", 0.5),)).resolved()
    with pytest.raises(UserError, match="unknown optimizer 'adam'; registered: sgd, adamw, muon"):
        tiny("adam").resolved()


SMOKE = plan.choose_scale("smoke", False)


def test_a_sweep_samples_its_optimizers_hyperparameters_as_columns():
    space = parse_space_flags(["ns_steps=int:3,6", "momentum=uniform:0.8,0.99"])
    m = plan.edf_manifest("s", "vit_c_1gf", "muon", SMOKE, trials=6, seed=0, space=space)
    assert m["ns_steps"].between(3, 6).all() and m["momentum"].between(0.8, 0.99).all()
    assert set(space_from_json(m["space"].iloc[0])) == {"lr", "wd", "ns_steps", "momentum"}
    lr, wd = optimizers.entry("muon").interval("ViT_C")
    assert m["lr"].between(*lr).all() and m["wd"].between(*wd).all()  # the entry's default intervals
    assert len(plan.packs(m, lambda row: 4)) == 6  # each sampled value is its own run identity


@pytest.mark.parametrize(
    ("optim", "flag", "message"),
    [
        ("adamw", "momentum=uniform:0.5,0.9", "'momentum' is not a hyperparameter of adamw .*adamw's: beta2"),
        ("muon", "ns_steps=uniform:3,6", "muon ns_steps takes integers"),
        ("lion", "beta1=uniform:0.5,1.5", r"lion beta1 must be a number in \[0, 1\)"),
    ],
)
def test_a_space_names_only_its_optimizers_hyperparameters(optim, flag, message):
    with pytest.raises(UserError, match=message):
        plan.edf_manifest("s", "vit_c_1gf", optim, SMOKE, trials=2, seed=0, space=parse_space_flags([flag]))


def test_the_optimizers_command_lists_every_entry(capsys):
    assert main(["optimizers", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(BUILT_IN) <= set(rows)
    assert rows["muon"]["hyperparameters"]["ns_steps"]["default"] == 5 and not rows["muon"]["population"]
    assert rows["sgd"]["population"] and rows["lion"]["intervals"]["vit"]["lr"] == pytest.approx([2.5e-5, 8e-4])
    assert main(["optimizers", "--import", str(EXAMPLES / "signum.py")]) == 0
    assert "signum: signSGD with momentum" in capsys.readouterr().out


def test_a_file_registered_optimizer_trains_and_refuses_a_second_builder():
    cfg = TrainConfig(**{**TINY, "optim": "signum", "epochs": 1, "imports": (str(EXAMPLES / "signum.py"),)})
    row = train(cfg, data=DATA).row
    assert row["status"] == "ok" and row["optimizer"] == "signum" and row["lr"] == pytest.approx((2.5e-5 * 8e-4) ** 0.5)
    with pytest.raises(ValueError, match="already registered"):
        optimizers.register("signum")(lambda groups, **kw: None)


def three_optimizer_grid(model: str = "vit_c_4gf", family: str = "ViT_C") -> pd.DataFrame:
    """Figure 3 runs of one model under AdamW, SGD and Lion at two lengths (errors by hand)."""
    errs = {("adamw", 50): 30.0, ("sgd", 50): 33.0, ("lion", 50): 29.0, ("adamw", 100): 28.0,
            ("sgd", 100): 29.5, ("lion", 100): 28.5}  # fmt: skip
    rows = [
        {"sweep": "figure3-small", "model": model, "family": family, "optimizer": o, "epochs": e,
         "top1_err": err, "status": "ok", "sampler": "fixed", "preset": "small", "dataset": "fashion-mnist",
         "image_size": 32, "patch_size": 4, "batch_size": 256, "seed": 0, "lr": 1e-3, "wd": 0.1,
         "trial_id": f"{o}-{e}"}
        for (o, e), err in errs.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("model", "family"), [("vit_c_4gf", "ViT_C"), ("mixer_tiny", "Mixer")])
def test_optimizer_gaps_measure_each_optimizer_against_the_best_at_each_point(model, family):
    """A model outside the paper's sizes (no ``size``) has its gaps too."""
    gaps = experiments.optimizer_gaps(three_optimizer_grid(model, family)).set_index(["epochs", "optimizer"])
    assert len(gaps) == 6 and set(gaps["best_optimizer"]) == {"lion", "adamw"}
    assert gaps.loc[(50, "sgd"), "gap"] == pytest.approx(4.0) and gaps.loc[(50, "lion"), "gap"] == 0.0
    assert gaps.loc[(100, "lion"), "gap"] == pytest.approx(0.5) and gaps.loc[(100, "adamw"), "best_err"] == 28.0
    assert (gaps["gap"] >= 0).all()


def test_figure3_draws_one_marker_per_optimizer():
    fig = figures.figure3(three_optimizer_grid())
    lines = [line for ax in fig.get_axes() for line in ax.get_lines() if line.get_label().startswith("ViT_C")]
    markers = {line.get_label(): line.get_marker() for line in lines}
    assert markers == {"ViT_C AdamW": "^", "ViT_C SGD": "v", "ViT_C Lion": "o"}


@pytest.mark.slow
def test_a_file_registered_optimizer_sweeps_through_ray_one_trial_at_a_time(tmp_path, capsys):
    argv = ["sweep", "--model", "vit_c_1gf", "--optim", "signum", "--preset", "smoke", "--trials", "2",
            "--pack", "2", "--import", str(EXAMPLES / "signum.py"), "--results", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--pack 2: signum trials train one at a time" in out
    trials = pd.concat(pd.read_parquet(p) for p in (tmp_path / "vit_c_1gf-signum-smoke" / "trials").glob("*.parquet"))
    assert len(trials) == 2 and (trials["status"] == "ok").all() and (trials["optimizer"] == "signum").all()


def test_the_example_study_plans_one_sweep_per_model_and_optimizer(capsys, tmp_path):
    assert main(["study", str(EXAMPLES / "optimizers.toml"), "--dry-run", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for model in ("vit_p_nano", "vit_c_nano"):
        for optim in ("adamw", "sgd", "muon", "lion"):
            assert f"optimizers-{model}-{optim} " in out
    assert not any(tmp_path.iterdir())


def test_lr_scaling_rules_by_hand():
    adamw = optimizers.entry("adamw")
    assert adamw.scaled_lr(0.2, 128) == pytest.approx(0.2 * 128 / 2048)  # the paper's linear rule
    assert dataclasses.replace(adamw, lr_scaling="sqrt").scaled_lr(0.2, 128) == pytest.approx(0.05)  # 0.2 * 1/4
    assert dataclasses.replace(adamw, lr_scaling="none").scaled_lr(0.2, 128) == 0.2
    with pytest.raises(ValueError, match="lr_scaling must be one of linear, sqrt, none"):
        optimizers.register("cubic", lr_scaling="cube")
    with pytest.raises(ValueError, match=r"hyperparameter name.*epochs.*trial columns"):
        optimizers.register("clash", hyperparameters={"epochs": optimizers.count(1)})
    for derived in ("metric", "metric_score", "protocol"):  # the row's metric and analysis's columns too
        with pytest.raises(ValueError, match=f"hyperparameter name.*{derived}.*trial columns"):
            optimizers.register("clash", hyperparameters={derived: optimizers.count(1)})
    with pytest.raises(ValueError, match="only sgd, adamw have a population path"):
        optimizers.register("fast", vectorized=True)
