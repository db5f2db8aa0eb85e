"""Checks that need real CUDA (marker ``gpu``; skipped without it): ``make test-gpu`` on a GPU machine.

Tolerances are for bf16 autocast, whose 8-bit mantissa rounds each product to about 0.4%:
members of a population run the same kernels as a trial alone, but batched, so their sums
round in another order. After one epoch of synthetic data we ask for the training loss to
agree to 2% relative and the top-1 error to 2 points (stop 10 measured members of a vmap
population within about a point of their separate runs on an H100).
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cli import main
from stability import optimizers
from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.population import Population, train_population
from stability.trainer import initial_model, train
from tests.conftest import TINY_DATA

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("shared_ray")]

CUDA = dict(model="vit_c_1gf", dataset="synthetic", image_size=32, patch_size=4, batch_size=128, device="cuda")
DATA = load_synthetic(32, train=2048, test=512)
PAIRS = [(1e-3, 0.05), (4e-3, 0.3), (2.5e-4, 0.01)]


def members(**kw) -> list[TrainConfig]:
    return [
        TrainConfig(**{**CUDA, "optim": "adamw", "epochs": 1, "lr": lr, "wd": wd, "index": i, **kw})
        for i, (lr, wd) in enumerate(PAIRS)
    ]


def assert_members_near(population, separate) -> None:
    for pop, alone in zip(population, separate, strict=True):
        p, a = pop.curve[-1], alone.curve[-1]
        assert p["train_loss"] == pytest.approx(a["train_loss"], rel=2e-2)
        assert abs(p["top1_err"] - a["top1_err"]) <= 2.0
        assert pop.row["device"] != "cpu" and not pop.row["simulated_gpu"]


@pytest.mark.parametrize("compiled", [False, True])
def test_bf16_population_members_near_their_separate_runs(compiled):
    cfgs = members(compile=compiled)
    assert_members_near(train_population(cfgs, data=DATA), [train(c, data=DATA) for c in cfgs])


def test_packed_kernels_equal_vmap_on_cuda():
    cfgs = [c.resolved() for c in members()]
    fast, reference = (Population(cfgs, DATA, torch.device("cuda"), pack_kernels=f) for f in (True, False))
    x = torch.randn(16, 3, 32, 32, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    outs = []
    for pop in (fast, reference):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs.append(pop.forward(pop.params, pop.buffers, x, train=True).float())
    scale = outs[1].abs().max()
    assert (outs[0] - outs[1]).abs().max() <= 2e-2 * scale


def test_compiled_trial_matches_eager():
    cfg = members()[0]
    eager, compiled = train(cfg, data=DATA), train(TrainConfig(**{**cfg.__dict__, "compile": True}), data=DATA)
    assert compiled.curve[-1]["train_loss"] == pytest.approx(eager.curve[-1]["train_loss"], rel=2e-2)


def test_fused_optimizers_take_the_same_step():
    for optim in ("adamw", "sgd"):
        torch.manual_seed(0)
        models = [initial_model(TrainConfig(**{**CUDA, "optim": optim}), DATA, torch.device("cuda")) for _ in "ab"]
        models[1].load_state_dict(models[0].state_dict())
        fused = (True, False)
        schedule = optimizers.Schedule(0, 1)
        opts = [
            optimizers.build(optim, m, lr=1e-3, wd=0.05, schedule=schedule, values={}, fused=f)
            for m, f in zip(models, fused, strict=True)
        ]
        x = DATA.train_x[:64].cuda().float() / 255
        for model, opt in zip(models, opts, strict=True):
            model(x).square().mean().backward()
            opt.step()
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_two_trial_sweep_packs_by_default_on_a_gpu(tmp_path, capsys):
    argv = ["sweep", "--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA, "--epochs", "1", "--trials", "2"]
    assert main([*argv, "--results", str(tmp_path), "--name", "g"]) == 0
    out = capsys.readouterr().out
    assert "up to 2 at a time as one population" in out and "GPUs" in out.splitlines()[0]
    rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "g" / "trials").glob("*.parquet")])
    assert len(rows) == 2 and set(rows["status"]) == {"ok"} and (rows["population"] == 2).all()
    assert (rows["device"] != "cpu").all()
