"""Batched augmentation on the training device: crop/flip, per-sample AutoAugment, mixup/CutMix.

Images are float tensors in [0, 1], shape (B, C, H, W). Every random draw comes from the
generator passed in, so a run is reproducible and resumable from a saved generator state.
torchvision is deliberately not used: its AutoAugment applies one sub-policy to a whole batch,
which is not the paper's augmentation, and it does not import beside the CPU torch wheel.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

# AutoAugment's ImageNet policy: 25 sub-policies of two (op, probability, magnitude bin) each.
IMAGENET_POLICY: tuple[tuple[tuple[str, float, int | None], tuple[str, float, int | None]], ...] = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
    (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
    (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("equalize", 0.4, None), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, None)),
    (("posterize", 0.8, 5), ("equalize", 1.0, None)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
    (("equalize", 0.6, None), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)),
    (("rotate", 0.4, 9), ("equalize", 0.6, None)),
    (("equalize", 0.0, None), ("equalize", 0.8, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)),
    (("sharpness", 0.4, 7), ("invert", 0.6, None)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, None)),
    (("color", 0.4, 0), ("equalize", 0.6, None)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
)
BINS = 10


def magnitude(op: str, level: int) -> float:
    """The magnitude of bin ``level`` (0-9), on the usual AutoAugment scales."""
    frac = level / (BINS - 1)
    if op == "rotate":
        return 30.0 * frac
    if op == "shear_x":
        return 0.3 * frac
    if op in ("color", "contrast", "sharpness"):
        return 0.9 * frac
    if op == "solarize":
        return 1.0 - frac  # threshold on [0, 1]
    if op == "posterize":
        return float(8 - round(level / ((BINS - 1) / 4)))  # bits kept
    return 0.0


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (other + factor.view(-1, 1, 1, 1) * (x - other)).clamp_(0, 1)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel histogram equalization on 256 levels (PIL's rule)."""
    b, c, h, w = x.shape
    levels = (x * 255).round().long().view(b * c, h * w)
    # counts in float32 whatever x is: exact up to 2**24 pixels, and bf16 would not be
    ones = torch.ones_like(levels, dtype=torch.float32)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.float32).scatter_add_(1, levels, ones)
    last = hist.gather(1, (levels.max(1, keepdim=True).values))  # count of the brightest level
    step = torch.div(hist.sum(1, keepdim=True) - last, 255, rounding_mode="floor")
    cdf = torch.cumsum(hist, 1) - hist  # pixels strictly below each level
    lut = torch.div(cdf + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1), rounding_mode="floor")
    lut = lut.clamp(0, 255)
    out = lut.gather(1, levels) / 255.0
    out = torch.where(step > 0, out, levels / 255.0)  # flat images are left as they are
    return out.view(b, c, h, w)


def apply_op(op: str, x: torch.Tensor, level: int | None, sign: torch.Tensor) -> torch.Tensor:
    """Apply one AutoAugment op at magnitude bin ``level`` to every image of x; ``sign`` (+-1 per
    image) flips signed ops."""
    m = magnitude(op, level) if level is not None else 0.0
    return transform(op, x, torch.full((x.shape[0],), m, device=x.device), sign)


def transform(op: str, x: torch.Tensor, m: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """One AutoAugment op with a magnitude ``m`` and a sign per image."""
    per_image = m.view(-1, 1, 1, 1)
    if op == "invert":
        return 1.0 - x
    if op == "autocontrast":
        lo = x.amin((2, 3), keepdim=True)
        hi = x.amax((2, 3), keepdim=True)
        scale = torch.where(hi > lo, 1.0 / (hi - lo).clamp(min=1e-8), torch.ones_like(hi))
        return torch.where(hi > lo, (x - lo) * scale, x)
    if op == "equalize":
        return _equalize(x)
    if op == "solarize":
        return torch.where(x >= per_image, 1.0 - x, x)
    if op == "posterize":  # keep m bits of 8: floor to a multiple of 2^(8-m), exact in float
        step = torch.exp2(8 - per_image)
        return torch.floor((x * 255).round() / step) * step / 255.0
    if op in ("color", "contrast", "sharpness"):
        factor = 1.0 + m * sign
        if op == "color":
            return _blend(x, _gray(x).expand_as(x), factor)
        if op == "contrast":
            return _blend(x, _gray(x).mean((1, 2, 3), keepdim=True).expand_as(x), factor)
        kernel = torch.ones(3, 3, device=x.device)  # filled on the device: a copy from the host would synchronise
        kernel[1, 1] = 5.0
        kernel /= 13
        smooth = F.conv2d(x, kernel.expand(x.shape[1], 1, 3, 3).contiguous(), padding=1, groups=x.shape[1])
        smooth[..., 0, :], smooth[..., -1, :] = x[..., 0, :], x[..., -1, :]  # borders unchanged
        smooth[..., :, 0], smooth[..., :, -1] = x[..., :, 0], x[..., :, -1]
        return _blend(x, smooth, factor)
    if op in ("rotate", "shear_x"):
        theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
        if op == "rotate":
            a = torch.deg2rad(m) * sign
            theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
            theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
        else:
            theta[:, 0, 0], theta[:, 1, 1] = 1.0, 1.0
            theta[:, 0, 1] = m * sign
        return _affine(x, theta)
    raise ValueError(f"unknown AutoAugment op {op!r}")


@functools.lru_cache(maxsize=8)
def _slot_tables(policy: tuple, slot: int, device: torch.device) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """For each op of a slot: its probability and magnitude under every sub-policy (0 where the
    sub-policy's op is another). Cached because a host-to-device copy would synchronise each batch."""
    tables = []
    for op in dict.fromkeys(sub[slot][0] for sub in policy):
        rows = [
            (p, magnitude(op, lv) if lv is not None else 0.0) if o == op else (0.0, 0.0)
            for o, p, lv in (sub[slot] for sub in policy)
        ]
        prob, mag = torch.tensor(rows, device=device).unbind(1)
        tables.append((op, prob, mag))
    return tables


def draw_policy(
    b: int, gen: torch.Generator, device: torch.device, policy=IMAGENET_POLICY
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: its sub-policy, a coin per slot (the op runs if coin < its probability) and a
    sign per slot for signed ops."""
    choice = torch.randint(len(policy), (b,), generator=gen, device=device)
    coins = torch.rand(b, 2, generator=gen, device=device)
    signs = torch.where(torch.rand(b, 2, generator=gen, device=device) < 0.5, -1.0, 1.0)
    return choice, coins, signs


def apply_policy(
    x: torch.Tensor, choice: torch.Tensor, coins: torch.Tensor, signs: torch.Tensor, policy=IMAGENET_POLICY
) -> torch.Tensor:
    """Each image's drawn sub-policy, applied op by op to the whole batch.

    Every image takes an op's result only where its sub-policy chose that op and its coin came
    up: more arithmetic than gathering the images of each sub-policy, but no data-dependent
    shapes, so no host synchronisation and a fixed set of kernels per batch. (Gathering
    synchronised 50 times a batch; with it the data path kept 0.51 of the synthetic-data
    throughput on an H100.)
    """
    out = x
    for slot in range(2):
        for op, prob, mag in _slot_tables(tuple(policy), slot, x.device):
            taken = (coins[:, slot] < prob[choice]).view(-1, 1, 1, 1)  # probability 0: never taken
            out = torch.where(taken, transform(op, out, mag[choice], signs[:, slot]), out)
    return out


def autoaugment(x: torch.Tensor, gen: torch.Generator, policy=IMAGENET_POLICY) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image draws its own sub-policy. Returns the augmented batch and every image's sub-policy."""
    choice, coins, signs = draw_policy(x.shape[0], gen, x.device, policy)
    return apply_policy(x, choice, coins, signs, policy), choice


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int) -> torch.Tensor:
    """Random crop after zero-padding by ``pad`` pixels, and a random horizontal flip, per image."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    flip = torch.rand(b, generator=gen, device=x.device) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def mix(
    x: torch.Tensor, target: torch.Tensor, gen: torch.Generator, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Mixup or CutMix (equal chance) of the batch with its reverse; soft targets mix alike.

    ``gen`` is a CPU generator (the per-batch draws are scalars). An alpha of 0 turns that kind
    off: the other then mixes every batch, and with both 0 the batch is left as it is (no draw
    is made, so the generator's sequence is the unmixed run's).

    For CutMix the target weight is the exact pasted area fraction after clipping the box.
    """
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return x, target, {"kind": "none"}
    both = mixup_alpha > 0 and cutmix_alpha > 0
    use_cutmix = bool(torch.rand((), generator=gen) < 0.5) if both else cutmix_alpha > 0
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = _beta(alpha, gen)
    flipped_x, flipped_t = x.flip(0), target.flip(0)
    if not use_cutmix:
        return lam * x + (1 - lam) * flipped_x, lam * target + (1 - lam) * flipped_t, {"kind": "mixup", "lam": lam}
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(h, (), generator=gen))
    cx = int(torch.randint(w, (), generator=gen))
    y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    out = x.clone()
    out[..., y0:y1, x0:x1] = flipped_x[..., y0:y1, x0:x1]
    pasted = (y1 - y0) * (x1 - x0) / (h * w)
    lam = 1.0 - pasted
    return out, lam * target + (1 - lam) * flipped_t, {"kind": "cutmix", "lam": lam, "box": (y0, y1, x0, x1)}


def _beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw; numpy's sampler, seeded from ``gen`` so runs stay reproducible."""
    seed = int(torch.randint(2**62, (), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))
