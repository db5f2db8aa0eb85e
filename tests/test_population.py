"""The population trainer: K members trained together equal K separate runs (fp32, CPU)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.errors import UserError
from stability.population import train_population
from stability.trainer import train
from tests.conftest import TINY

SMALL = load_synthetic(8, train=256, test=64)
PAIRS = [(1e-3, 0.05), (4e-3, 0.3), (2.5e-4, 0.01)]


def members(optim: str, pairs=PAIRS, **kw) -> list[TrainConfig]:
    return [
        TrainConfig(**{**TINY, "optim": optim, "epochs": 3, "lr": lr, "wd": wd, "index": i, **kw})
        for i, (lr, wd) in enumerate(pairs)
    ]


def assert_close_curves(population, separate, rel=1e-5):
    for pop, alone in zip(population, separate, strict=True):
        assert len(pop.curve) == len(alone.curve)
        for p, a in zip(pop.curve, alone.curve, strict=True):
            assert p["epoch"] == a["epoch"]
            assert p["train_loss"] == pytest.approx(a["train_loss"], rel=rel)
            assert p["lr"] == pytest.approx(a["lr"], rel=1e-12)
            # errors are counts over 64 test images: one flipped argmax would move them by 1.56
            assert p["top1_err"] == pytest.approx(a["top1_err"], abs=1e-9)
            assert p["top1_err_raw"] == pytest.approx(a["top1_err_raw"], abs=1e-9)
        assert pop.row["status"] == alone.row["status"]
        assert pop.row["trial_id"] == alone.row["trial_id"]


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_population_equals_separate_runs(optim):
    """vit_c_1gf has BatchNorm in its stem: each member's running statistics stay its own."""
    torch.set_default_dtype(torch.float32)
    cfgs = members(optim)
    population = train_population(cfgs, data=SMALL)
    separate = [train(c, data=SMALL) for c in cfgs]
    assert_close_curves(population, separate)
    # the members really differ: a population that trained one member K times would fail here
    losses = {round(r.curve[-1]["train_loss"], 6) for r in population}
    assert len(losses) == len(cfgs)
    assert all(r.row["population"] == len(cfgs) for r in population)


def test_a_diverging_member_leaves_the_others_untouched():
    cfgs = members("sgd", pairs=[(1e-3, 0.05), (1e6, 0.05)], epochs=2)
    population = train_population(cfgs, data=SMALL)
    separate = [train(c, data=SMALL) for c in cfgs]
    assert population[1].row["status"] == "diverged" == separate[1].row["status"]
    assert population[1].row["diverged_epoch"] == separate[1].row["diverged_epoch"]
    assert not math.isfinite(population[1].curve[-1]["train_loss"])
    assert_close_curves(population[:1], separate[:1])


class Interrupt(Exception):
    pass


def stop_at(epoch: int):
    def stop(summary):
        if summary["epoch"] == epoch:
            raise Interrupt

    return stop


def folders(root, cfgs) -> list:
    return [root / f"trial-{c.index}" for c in cfgs]


KEYS = ["epoch", "train_loss", "top1_err", "top1_err_raw", "lr"]


@pytest.mark.slow
def test_population_resumes_to_the_uninterrupted_result(tmp_path):
    cfgs = members("adamw", epochs=3)
    full = train_population(cfgs, checkpoint_dirs=folders(tmp_path / "full", cfgs), data=SMALL)
    with pytest.raises(Interrupt):
        train_population(cfgs, checkpoint_dirs=folders(tmp_path / "cut", cfgs), on_epoch=stop_at(2), data=SMALL)
    assert all((f / "last.pt").exists() for f in folders(tmp_path / "cut", cfgs))  # one checkpoint per member
    resumed = train_population(cfgs, checkpoint_dirs=folders(tmp_path / "cut", cfgs), data=SMALL)
    assert all(r.row["resumed_from_epoch"] == 1 for r in resumed)
    for a, b in zip(resumed, full, strict=True):
        assert [[p[k] for k in KEYS] for p in a.curve] == [[p[k] for k in KEYS] for p in b.curve]


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_a_member_continues_in_another_pack_or_alone(tmp_path, optim):
    """Checkpointed in a pack of 3 after epoch 1; resumed as one trial alone and a pack of 2
    (an out-of-memory split, or another --pack): each continues from epoch 1 and ends where
    its separate uninterrupted run ends."""
    cfgs = members(optim, epochs=3)
    dirs = folders(tmp_path, cfgs)
    with pytest.raises(Interrupt):
        train_population(cfgs, checkpoint_dirs=dirs, on_epoch=stop_at(2), data=SMALL)
    alone = train(cfgs[0], checkpoint_dir=dirs[0], data=SMALL)
    pair = train_population(cfgs[1:], checkpoint_dirs=dirs[1:], data=SMALL)
    separate = [train(c, data=SMALL) for c in cfgs]
    assert [r.row["resumed_from_epoch"] for r in [alone, *pair]] == [1, 1, 1]
    assert_close_curves([alone, *pair], separate)


def test_a_member_that_diverged_in_a_pack_stays_diverged_when_resumed_alone(tmp_path):
    cfgs = members("sgd", pairs=[(1e-3, 0.05), (1e6, 0.05)], epochs=3)
    dirs = folders(tmp_path, cfgs)
    with pytest.raises(Interrupt):
        train_population(cfgs, checkpoint_dirs=dirs, on_epoch=stop_at(3), data=SMALL)
    alone = train(cfgs[1], checkpoint_dir=dirs[1], data=SMALL)
    separate = train(cfgs[1], data=SMALL)
    assert alone.row["status"] == "diverged" == separate.row["status"]
    assert alone.row["diverged_epoch"] == separate.row["diverged_epoch"]
    assert [p["epoch"] for p in alone.curve] == [p["epoch"] for p in separate.curve]


def test_a_checkpoint_in_the_earlier_positional_layout_resumes_in_a_population(tmp_path):
    """Checkpoints written before per-name optimizer states hold torch's own state dict; a
    member resumes from one as from its own."""
    from stability.checkpoint import save_checkpoint
    from stability.trainer import Run, resolve_device

    cfgs = members("adamw", pairs=PAIRS[:2], epochs=3)
    dirs = folders(tmp_path, cfgs)
    for cfg, folder in zip(cfgs, dirs, strict=True):
        run = Run(cfg.resolved(), SMALL, resolve_device("cpu"))
        run.train_epoch()
        run.epoch = 1
        state = run.state()
        save_checkpoint({**state, "optimizer": run.optimizer.state_dict()}, folder)  # the earlier layout
    resumed = train_population(cfgs, checkpoint_dirs=dirs, data=SMALL)
    assert [r.row["resumed_from_epoch"] for r in resumed] == [1, 1]
    assert [r.curve[-1]["train_loss"] for r in resumed] == pytest.approx(
        [train(c, data=SMALL).curve[-1]["train_loss"] for c in cfgs], rel=1e-5
    )


def test_members_at_different_epochs_train_as_one_population_per_epoch(tmp_path):
    cfgs = members("adamw", epochs=3)
    dirs = folders(tmp_path, cfgs)
    with pytest.raises(Interrupt):  # member 0 reaches epoch 2 alone
        train(cfgs[0], checkpoint_dir=dirs[0], on_epoch=stop_at(3), data=SMALL)
    resumed = train_population(cfgs, checkpoint_dirs=dirs, data=SMALL)
    assert [r.row["resumed_from_epoch"] for r in resumed] == [2, 0, 0]
    assert [r.row["population"] for r in resumed] == [1, 2, 2]
    assert_close_curves(resumed, [train(c, data=SMALL) for c in cfgs])


@pytest.mark.slow
def test_compiled_population_matches_eager(capsys):
    """torch.compile of the packed kernels reorders float32 rounding: losses agree to 1e-4."""
    from torch._dynamo.utils import counters

    cfgs = members("adamw", pairs=PAIRS[:2], epochs=1)
    eager = train_population(cfgs, data=SMALL)
    counters.clear()
    compiled = train_population([replace(c, compile=True) for c in cfgs], data=SMALL)
    assert "torch.compile failed" not in capsys.readouterr().err and counters["stats"]["unique_graphs"] >= 1
    for a, b in zip(compiled, eager, strict=True):
        assert a.curve[0]["train_loss"] == pytest.approx(b.curve[0]["train_loss"], rel=1e-4)
        # a near-tie between two logits may flip under other rounding: allow two of the 64 images
        assert a.curve[0]["top1_err"] == pytest.approx(b.curve[0]["top1_err"], abs=2 * 100 / 64 + 1e-9)
        assert a.row["trial_id"] == b.row["trial_id"]


def test_members_must_differ_only_in_lr_and_wd():
    cfgs = members("adamw")
    with pytest.raises(UserError, match="only lr and wd"):
        train_population([cfgs[0], TrainConfig(**{**TINY, "optim": "adamw", "epochs": 4})], data=SMALL)
    with pytest.raises(UserError, match="distinct trial ids"):
        train_population([cfgs[0], cfgs[0]], data=SMALL)
