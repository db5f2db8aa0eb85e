"""Packed ViT kernels against the vmap path they replace: logits, gradients and BN statistics."""

from __future__ import annotations

import pytest
import torch

from stability import packed
from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.population import Population
from stability.trainer import initial_model
from tests.conftest import TINY

MEMBERS = 3


def twin_populations(model: str, image_size: int, patch_size: int) -> tuple[Population, Population]:
    """The same members, whose weights and BN statistics differ from one member to the next."""
    data = load_synthetic(image_size, train=64, test=16)
    shape = {"model": model, "image_size": image_size, "patch_size": patch_size}
    cfgs = [
        TrainConfig(**{**TINY, **shape, "optim": "adamw", "lr": 1e-3 * (i + 1), "index": i}).resolved()
        for i in range(MEMBERS)
    ]
    pops = [Population(cfgs, data, torch.device("cpu"), pack_kernels=flag) for flag in (True, False)]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(pops[0].flat.shape, generator=gen) * 0.05
    shifts = {n: torch.rand(b.shape, generator=gen) for n, b in pops[0].buffers.items() if b.is_floating_point()}
    for pop in pops:
        with torch.no_grad():
            pop.flat.add_(noise)
            for name, shift in shifts.items():
                pop.buffers[name].add_(shift)
    return pops[0], pops[1]


def forward_backward(pop: Population, x: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    pop.flat_grad.zero_()
    out = pop.forward(pop.params, pop.buffers, x, train=train)
    # a different loss per member, so that a gradient sent to the wrong member shows
    (out.square().sum((1, 2)) * torch.arange(1.0, MEMBERS + 1)).sum().backward()
    return out.detach(), pop.flat_grad.clone()


@pytest.mark.parametrize(
    ("model", "image_size", "patch_size"),
    [
        ("vit_c_1gf", 8, 4),  # conv stem with BatchNorm
        ("vit_p_1gf", 8, 4),  # patchify stem
        ("vit_pbn_4gf", 8, 4),  # patchify stem with BatchNorm and ReLU
        ("vit_cln_4gf", 8, 4),  # conv stem with channel LayerNorm
        ("vit_s2_4gf", 32, 16),  # a whole Table 3 stem: mixed kernels and strides, a stride-1 conv
    ],
)
def test_packed_kernels_equal_vmap(model, image_size, patch_size):
    fast, reference = twin_populations(model, image_size, patch_size)
    assert fast.packed and not reference.packed
    x = torch.randn(5, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    for train in (True, False):
        out, grad = forward_backward(fast, x, train)
        ref_out, ref_grad = forward_backward(reference, x, train)
        assert out.shape == (MEMBERS, 5, 10)
        torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
        # fp32 sums in another order: compare each parameter's gradient as a whole, with a floor
        # for gradients that are rounding noise (a conv bias before train-mode BN has none)
        ref_grads, floor = reference.views(ref_grad), 1e-7 * ref_grad.norm()
        assert floor > 0
        for name, g in fast.views(grad).items():
            assert (g - ref_grads[name]).norm() <= 1e-5 * ref_grads[name].norm() + floor, name
        for name, buf in reference.buffers.items():
            torch.testing.assert_close(fast.buffers[name], buf, rtol=1e-6, atol=1e-7, msg=name)
    # the members really differ, so a packed kernel that mixed them up would have failed above
    assert not torch.allclose(out[0], out[1])


@pytest.mark.parametrize("model", ["vit_c_1gf", "vit_pbn_4gf"])
def test_members_compute_the_single_model_under_bf16_autocast(model):
    """The trainer's own precision: each member runs the single model's kernels, bf16 BatchNorm
    included, so it lands far inside bf16 rounding (7.8e-3) of the model trained alone. On the
    machine this was written on, the logits were bit-identical and gradients within 1e-7."""
    data = load_synthetic(8, train=64, test=16)
    cfgs = [TrainConfig(**{**TINY, "model": model, "optim": "adamw", "index": i}).resolved() for i in range(2)]
    pop = Population(cfgs, data, torch.device("cpu"))
    single = initial_model(cfgs[0], data, torch.device("cpu")).train()
    with torch.no_grad():  # a non-zero head, so that the logits and all gradients are non-trivial
        head = torch.randn(single.head.weight.shape, generator=torch.Generator().manual_seed(3)) * 0.1
        single.head.weight.copy_(head)
        pop.params["head.weight"].copy_(head.expand(2, -1, -1))
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    pop.flat_grad.zero_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        alone, members = single(x), pop.forward(pop.params, pop.buffers, x, train=True)
    assert members.dtype == alone.dtype == torch.bfloat16
    alone.float().square().sum().backward()
    members.float().square().sum().backward()
    grads = pop.views(pop.flat_grad)
    floor = 1e-6 * pop.flat_grad.norm()  # for gradients that are rounding noise (a bias before BN)
    for k in range(2):
        assert (members[k].float() - alone.float()).norm() <= 1e-3 * alone.float().norm()
        for name, p in single.named_parameters():
            assert (grads[name][k] - p.grad).norm() <= 1e-3 * p.grad.norm() + floor, name


def test_only_vits_are_packed():
    cfg = TrainConfig(**{**TINY, "optim": "sgd", "model": "regnety_1gf", "image_size": 16}).resolved()
    assert not packed.supports(initial_model(cfg, load_synthetic(16, train=8, test=8), torch.device("cpu")))
    with pytest.raises(ValueError, match="cannot be packed"):
        packed.PackedViT(initial_model(cfg, load_synthetic(16, train=8, test=8), torch.device("cpu")), 2)
