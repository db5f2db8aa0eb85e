"""The laws of the recipe: schedule, weight decay, EMA, loss targets."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import models
from stability import optimizers, recipe


def test_lr_scales_linearly_with_batch():
    assert recipe.scaled_lr(1.3, 2048) == pytest.approx(1.3)
    assert recipe.scaled_lr(1.3, 256) == pytest.approx(1.3 / 8)


def test_lr_schedule_landmarks():
    lr, spe, epochs = 2.0, 100, 50
    at = lambda s: recipe.lr_at(s, base_lr=lr, steps_per_epoch=spe, epochs=epochs)  # noqa: E731
    warm = 5 * spe
    assert at(0) == pytest.approx(0.1 * lr)
    assert at(warm // 2) == pytest.approx(lr * (0.1 + 0.9 * 0.5))
    assert at(warm) == pytest.approx(lr)
    last = epochs * spe - 1
    mid = warm + (last - warm) / 2
    assert at(int(mid)) == pytest.approx((lr + 0.005 * lr) / 2, rel=1e-3)
    assert at(last) == pytest.approx(0.005 * lr)


@settings(max_examples=60, deadline=None)
@given(lr=st.floats(1e-5, 10), spe=st.integers(1, 200), epochs=st.integers(1, 400))
def test_lr_schedule_bounds_and_shape(lr, spe, epochs):
    total = spe * epochs
    values = [
        recipe.lr_at(s, base_lr=lr, steps_per_epoch=spe, epochs=epochs) for s in range(0, total, max(1, total // 97))
    ]
    assert all(0.005 * lr * (1 - 1e-9) <= v <= lr * (1 + 1e-9) for v in values)
    warm = round(recipe.warmup_epochs(epochs) * spe)
    peak = max(range(len(values)), key=values.__getitem__)
    rising, falling = values[: peak + 1], values[peak:]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(rising))
    assert all(a >= b - 1e-12 for a, b in itertools.pairwise(falling))
    assert (
        recipe.lr_at(total - 1, base_lr=lr, steps_per_epoch=spe, epochs=epochs) == pytest.approx(0.005 * lr)
        or warm >= total - 1
    )


def test_warmup_is_five_epochs_from_fifty():
    assert recipe.warmup_epochs(50) == 5 and recipe.warmup_epochs(400) == 5
    assert recipe.warmup_epochs(10) == pytest.approx(1.0)


def test_weight_decay_split_vit():
    model = models.create("vit_c_1gf", image_size=32, patch_size=4, num_classes=10)
    decay, no_decay = optimizers.decay_split(model)
    blocks = range(len(model.blocks))
    expected_decay = {
        "cls_token",
        "pos_embed",
        "stem.body.0.weight",
        "stem.body.3.weight",
        "stem.proj.weight",
        "head.weight",
    }
    expected_decay |= {
        f"blocks.{i}.{m}.weight" for i in blocks for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    }
    expected_none = {
        "stem.body.1.weight",
        "stem.body.1.bias",
        "stem.body.4.weight",
        "stem.body.4.bias",
        "stem.proj.bias",
        "norm.weight",
        "norm.bias",
        "head.bias",
    }
    expected_none |= {
        f"blocks.{i}.{m}"
        for i in blocks
        for m in (
            "norm1.weight",
            "norm1.bias",
            "norm2.weight",
            "norm2.bias",
            "attn.qkv.bias",
            "attn.proj.bias",
            "mlp.fc1.bias",
            "mlp.fc2.bias",
        )
    }
    assert set(decay) == expected_decay
    assert set(no_decay) == expected_none


def test_weight_decay_split_regnety():
    model = models.create("regnety_1gf", image_size=32, num_classes=10)
    decay, no_decay = optimizers.decay_split(model)
    names = dict(model.named_parameters())
    convs = {n for n in names if n.endswith("conv.weight")}
    se = {n for n in names if ".se." in n}
    assert set(decay) == convs | {n for n in se if n.endswith("weight")} | {"head.weight"}
    bn = {n for n in names if ".bn." in n}
    assert set(no_decay) == bn | {n for n in se if n.endswith("bias")} | {"head.bias"}
    assert "blocks.0.a.bn.weight" in no_decay and "blocks.0.se.reduce.bias" in no_decay


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_optimizer_groups_and_hyperparameters(optim):
    model = models.create("vit_p_1gf", image_size=16, patch_size=4, num_classes=10)
    opt = optimizers.build(optim, model, lr=0.5, wd=0.01, schedule=optimizers.Schedule(0, 1), values={})
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    if optim == "sgd":
        assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"]
    else:
        assert opt.defaults["betas"] == (0.9, 0.999)


def test_ema_coefficient():
    a = recipe.ema_alpha(batch_size=2048, epochs=100, train_size=recipe.IMAGENET_TRAIN_SIZE, in_warmup=False)
    assert a == pytest.approx(1e-5 * 2048 / 100 * 32)
    assert recipe.ema_alpha(batch_size=2048, epochs=100, train_size=1000, in_warmup=True) == 1.0
    assert recipe.ema_alpha(batch_size=2048, epochs=1, train_size=1000, in_warmup=False) == 1.0  # capped
    half = recipe.ema_alpha(batch_size=256, epochs=100, train_size=recipe.IMAGENET_TRAIN_SIZE // 2, in_warmup=False)
    assert half == pytest.approx(2 * 1e-5 * 256 / 100 * 32, rel=1e-5)
    short = recipe.ema_alpha(
        batch_size=256, epochs=100, train_size=recipe.IMAGENET_TRAIN_SIZE, in_warmup=False, period=8
    )
    assert short == pytest.approx(1e-5 * 256 / 100 * 8)  # an epoch of 8 iterations: 8-iteration updates


def test_ema_copy_and_average():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = recipe.ModelEMA(model)
    old = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(8, 3))  # moves BN statistics
    ema.update(model, 0.25)
    for e, o, m in zip(ema.module.parameters(), old, model.parameters(), strict=True):
        assert torch.allclose(e, 0.75 * o + 0.25 * m)
    assert int(ema.module[1].num_batches_tracked) == 1
    ema.update(model, 1.0)
    assert all(
        torch.equal(e, m) for e, m in zip(ema.module.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_smoothed_targets_and_loss():
    t = recipe.smooth_one_hot(torch.tensor([2, 0]), 5)
    assert torch.allclose(t.sum(1), torch.ones(2))
    assert t[0, 2] == pytest.approx(0.9 + 0.02) and t[0, 0] == pytest.approx(0.02)
    logits = torch.zeros(2, 5)
    assert recipe.soft_cross_entropy(logits, t).item() == pytest.approx(math.log(5))
