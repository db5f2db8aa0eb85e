"""Augmentation laws: mixing preserves label mass, CutMix ratio equals the pasted area,
AutoAugment draws a sub-policy per image."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from stability import augment, recipe


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.integers(4, 24), batch=st.integers(2, 9))
def test_mix_label_mass_and_cutmix_area(seed, size, batch):
    gen = torch.Generator().manual_seed(seed)
    x = torch.arange(batch, dtype=torch.float).view(-1, 1, 1, 1).expand(batch, 1, size, size).clone()
    target = recipe.smooth_one_hot(torch.arange(batch) % 10, 10)
    mixed, soft, info = augment.mix(x, target, gen)
    assert torch.allclose(soft.sum(1), torch.ones(batch))
    assert 0.0 <= info["lam"] <= 1.0
    if info["kind"] == "cutmix":
        from_other = (mixed != x).float().mean(dim=(1, 2, 3))
        # every image's pixels come from its own image or the reversed batch's one
        pasted = 1.0 - info["lam"]
        for i in range(batch):
            if i != batch - 1 - i:  # the middle image of an odd batch is mixed with itself
                assert from_other[i].item() == pytest.approx(pasted, abs=1e-6)
    else:
        lam = info["lam"]
        assert torch.allclose(mixed, lam * x + (1 - lam) * x.flip(0))


@pytest.mark.parametrize(
    ("mixup", "cutmix", "kinds"), [(0.8, 0.0, {"mixup"}), (0.0, 1.0, {"cutmix"}), (0.0, 0.0, {"none"})]
)
def test_an_alpha_of_zero_turns_that_mixing_off(mixup, cutmix, kinds):
    gen = torch.Generator().manual_seed(0)
    x, target = torch.rand(8, 1, 8, 8), recipe.smooth_one_hot(torch.arange(8), 10)
    seen = set()
    for _ in range(20):
        mixed, soft, info = augment.mix(x, target, gen, mixup, cutmix)
        seen.add(info["kind"])
        if info["kind"] == "none":
            assert mixed is x and soft is target
    assert seen == kinds
    if kinds == {"none"}:  # no draw at all: the generator is where the unmixed run's would be
        assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())
    assert recipe.field_problem("mixup_alpha", 0.0) is None and recipe.field_problem("cutmix_alpha", -0.1)


def test_autoaugment_draws_a_subpolicy_per_image():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16).expand(128, 3, 16, 16).contiguous()
    out, choice = augment.autoaugment(x, gen)
    assert len(torch.unique(choice)) > 10
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    distinct = {tuple(out[i].flatten()[:64].tolist()) for i in range(128)}
    assert len(distinct) > 10  # identical inputs, different transforms within one batch


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 40), channels=st.sampled_from([1, 3]))
def test_batched_autoaugment_equals_each_image_alone(seed, batch, channels):
    """The masked whole-batch path gives every image exactly its own sub-policy's result."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, channels, 16, 16, generator=gen)
    choice, coins, signs = augment.draw_policy(batch, gen, x.device)
    out = augment.apply_policy(x, choice, coins, signs)
    for i in range(batch):
        alone = x[i : i + 1]
        for slot, (op, prob, level) in enumerate(augment.IMAGENET_POLICY[int(choice[i])]):
            if coins[i, slot] < prob:
                alone = augment.apply_op(op, alone, level, signs[i : i + 1, slot])
        assert torch.allclose(out[i : i + 1], alone, atol=1e-6), (i, int(choice[i]))


def test_autoaugment_is_reproducible():
    x = torch.rand(32, 3, 8, 8)
    a, _ = augment.autoaugment(x, torch.Generator().manual_seed(3))
    b, _ = augment.autoaugment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("op", sorted({op for sub in augment.IMAGENET_POLICY for op, _, _ in sub}))
def test_every_policy_op_keeps_range_and_shape(op):
    x = torch.rand(4, 3, 12, 12)
    out = augment.apply_op(op, x, 9 if op != "invert" else None, torch.tensor([1.0, -1.0, 1.0, -1.0]))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1


def test_op_semantics():
    x = torch.rand(2, 1, 8, 8) * 0.5 + 0.25
    sign = torch.ones(2)
    assert torch.allclose(augment.apply_op("invert", x, None, sign), 1 - x)
    ac = augment.apply_op("autocontrast", x, None, sign)
    assert ac.amin((2, 3)).allclose(torch.zeros(2, 1)) and ac.amax((2, 3)).allclose(torch.ones(2, 1))
    big = torch.rand(2, 1, 32, 32) * 0.5 + 0.25  # PIL's rule leaves images under 256 pixels alone
    eq = augment.apply_op("equalize", big, None, sign)
    assert eq.max() > 0.95 and eq.min() < 0.05  # equalization spreads the histogram over [0, 1]
    assert torch.allclose(augment.apply_op("equalize", x, None, sign), (x * 255).round() / 255)
    post = augment.apply_op("posterize", x, 9, sign)  # 4 bits kept
    assert ((post * 255).round().to(torch.uint8) & 0x0F).sum() == 0
    assert torch.equal(augment.apply_op("rotate", x, 0, sign), x)


def test_crop_flip_keeps_shape_and_content():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 10, 10)
    out = augment.crop_flip(x, gen, pad=2)
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    zero = augment.crop_flip(x, torch.Generator().manual_seed(0), pad=0)
    assert all(torch.equal(zero[i], x[i]) or torch.equal(zero[i], x[i].flip(-1)) for i in range(16))
