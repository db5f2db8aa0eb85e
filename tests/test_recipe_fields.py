"""The recipe fields a space may sample reach the training that uses them, alone and in a
population, and stay out of a run's identity at their defaults."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from stability import recipe
from stability.config import TrainConfig
from stability.population import train_population
from stability.trainer import Run, load_data, train
from tests.conftest import TINY

BASE = TrainConfig(**TINY, optim="sgd", lr=0.5, wd=1e-4, epochs=2, seed=0)


def test_defaults_stay_out_of_the_identity_and_set_fields_enter_it():
    assert not {"warmup_epochs", "label_smoothing", "ema", "momentum", "imports"} & set(BASE.identity())
    tuned = replace(BASE, label_smoothing=0.2, ema=False)
    assert tuned.identity() == {**BASE.identity(), "label_smoothing": 0.2, "ema": False}
    assert replace(BASE, imports=("x.py",)).identity() == BASE.identity()
    # an optimizer hyperparameter enters under its own name, as the recipe field it was before
    assert replace(BASE, optim_args=(("momentum", 0.5),)).identity() == {**BASE.identity(), "momentum": 0.5}


def test_optimizer_fields_reach_the_optimizer():
    cfg = replace(BASE, optim_args=(("momentum", 0.5),)).resolved()
    run = Run(cfg, load_data(cfg), torch.device("cpu"))
    assert run.optimizer.param_groups[0]["momentum"] == 0.5
    cfg = replace(BASE, optim="adamw", lr=1e-3, optim_args=(("beta2", 0.95),)).resolved()
    run = Run(cfg, load_data(cfg), torch.device("cpu"))
    assert run.optimizer.param_groups[0]["betas"] == (0.9, 0.95)


def test_warmup_and_smoothing_reach_the_stream():
    cfg = replace(BASE, warmup_epochs=0.0, label_smoothing=0.0, mixing=False, autoaugment=False).resolved()
    run = Run(cfg, load_data(cfg), torch.device("cpu"))
    assert run.stream.lr_factor(0) == 1.0  # no warm-up: the first step is at the full lr
    x, y = next(run.stream.batches(0))
    _, target = run.stream.prepare(x, y)
    assert torch.equal(target, torch.nn.functional.one_hot(y, 10).float())
    default = Run(BASE.resolved(), load_data(cfg), torch.device("cpu"))
    assert default.stream.lr_factor(0) == pytest.approx(recipe.WARMUP_START)


def test_without_ema_the_reported_error_is_the_raw_models():
    row = train(replace(BASE, ema=False, epochs=1)).row
    assert row["top1_err"] == row["top1_err_raw"] and row["ema"] is False
    members = [replace(BASE, ema=False, epochs=1, lr=lr, trial_id=f"m{i}") for i, lr in enumerate((0.1, 0.5))]
    for result in train_population(members):
        assert result.row["top1_err"] == result.row["top1_err_raw"]


def test_a_population_trains_its_members_with_the_sampled_momentum_as_alone():
    """Members with momentum 0.5 match their separate runs as the default members do."""
    cfgs = [
        replace(BASE, optim_args=(("momentum", 0.5),), epochs=1, lr=lr, trial_id=f"p{i}")
        for i, lr in enumerate((0.2, 0.6))
    ]
    together = [r.row["train_loss"] for r in train_population(cfgs)]
    alone = [train(c).row["train_loss"] for c in cfgs]
    assert together == pytest.approx(alone, rel=1e-4)
    assert together != pytest.approx([train(replace(c, optim_args=())).row["train_loss"] for c in cfgs], rel=1e-4)
