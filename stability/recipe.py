"""The paper's training recipe (docs/design.md, "The training recipe"): schedule, EMA, loss; its optimizers and their
weight-decay policy are entries of ``stability.optimizers``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

REFERENCE_BATCH = 2048
WARMUP_EPOCHS = 5.0
WARMUP_START = 0.1  # warm-up starts at 0.1 x lr
FINAL_LR = 0.005  # the cosine ends at 0.005 x lr at the last iteration
EMA_PERIOD = 32
EMA_ALPHA = 1e-5
IMAGENET_TRAIN_SIZE = 1_281_167
LABEL_SMOOTHING = 0.1
MIXUP_ALPHA, CUTMIX_ALPHA = 0.8, 1.0
# The recipe's value of each field a run may set or a space may sample, where the config leaves
# it unset (None). Warm-up's default depends on the schedule's length (``warmup_epochs``); an
# optimizer may change a default (``optimizers.Entry.recipe``), and brings its own hyperparameters.
DEFAULTS = {"label_smoothing": LABEL_SMOOTHING, "mixup_alpha": MIXUP_ALPHA, "cutmix_alpha": CUTMIX_ALPHA, "ema": True}


def scaled_lr(lr: float, batch_size: int) -> float:
    """Table 4's lrs are normalized to batch 2048 and scale linearly with the batch used."""
    return lr * batch_size / REFERENCE_BATCH


def finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What each sweepable field may be: checked for a run's value and for both ends of a space.
FIELD_RULES = {
    "lr": ("a number > 0", lambda v: finite_number(v) and v > 0),
    "wd": ("a number >= 0", lambda v: finite_number(v) and v >= 0),
    "epochs": ("an integer >= 1", lambda v: finite_number(v) and v >= 1 and float(v).is_integer()),
    "batch_size": ("an integer >= 1", lambda v: finite_number(v) and v >= 1 and float(v).is_integer()),
    "warmup_epochs": ("a number >= 0", lambda v: finite_number(v) and v >= 0),
    "label_smoothing": ("a number in [0, 1)", lambda v: finite_number(v) and 0 <= v < 1),
    "mixup_alpha": ("a number >= 0 (0: no mixup)", lambda v: finite_number(v) and v >= 0),
    "cutmix_alpha": ("a number >= 0 (0: no CutMix)", lambda v: finite_number(v) and v >= 0),
    "autoaugment": ("true or false", lambda v: isinstance(v, bool)),
    "ema": ("true or false", lambda v: isinstance(v, bool)),
}


def field_problem(name: str, value) -> str | None:
    """Why ``value`` cannot be the recipe field ``name``, or None if it can."""
    if name not in FIELD_RULES:
        return f"{name!r} is not a recipe field; sweepable: {', '.join(FIELD_RULES)}"
    what, ok = FIELD_RULES[name]
    return None if ok(value) else f"{name} must be {what}, got {value!r}"


def warmup_epochs(epochs: int, given: float | None = None) -> float:
    """5 epochs, as in the paper; shortened to a tenth of the run for runs under 50 epochs.
    ``given``: a run's own warm-up length, capped at the run's length."""
    return min(given, epochs) if given is not None else min(WARMUP_EPOCHS, 0.1 * epochs)


def lr_at(step: int, *, base_lr: float, steps_per_epoch: int, epochs: int, warmup: float | None = None) -> float:
    """Per-iteration lr: linear warm-up from 0.1 x lr to lr, then a half cosine to 0.005 x lr.

    The cosine reaches its floor exactly at the last iteration (step = epochs*steps_per_epoch - 1).
    """
    warm = round(warmup_epochs(epochs, warmup) * steps_per_epoch)
    last = epochs * steps_per_epoch - 1
    if step < warm:
        return base_lr * (WARMUP_START + (1 - WARMUP_START) * step / warm)
    progress = (step - warm) / max(1, last - warm)
    floor = FINAL_LR * base_lr
    return floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def ema_alpha(*, batch_size: int, epochs: int, train_size: int, in_warmup: bool, period: int = EMA_PERIOD) -> float:
    """The EMA coefficient: a = min(1, 1e-5 x batch / epochs x 32); 1 (a copy) during warm-up.

    The reference's 1e-5 is tuned to ImageNet's 1.28 M images, where the EMA averages over
    about the last 1/12.8 of training. It is scaled by 1.28 M / train_size so that the EMA
    covers the same fraction of training on any dataset; on ImageNet the factor is 1. An
    epoch shorter than 32 iterations updates every ``period`` (< 32) iterations instead, with
    the coefficient scaled alike.
    """
    if in_warmup:
        return 1.0
    per_image = EMA_ALPHA * IMAGENET_TRAIN_SIZE / train_size
    return min(1.0, per_image * batch_size / epochs * period)


class ModelEMA:
    """An exponential moving average of a model's floating-point state (weights and BN stats).

    Written by hand rather than with ``torch.optim.swa_utils.AveragedModel`` because the
    recipe switches between a plain copy (warm-up) and a fixed-rate average, updated every
    32 iterations, and keeps BN buffers averaged too.
    """

    def __init__(self, model: nn.Module) -> None:
        import copy

        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, alpha: float) -> None:
        src = model.state_dict()
        floats_dst, floats_src = [], []
        for name, value in self.module.state_dict().items():
            if value.is_floating_point():
                floats_dst.append(value)
                floats_src.append(src[name].detach())
            else:
                value.copy_(src[name])
        if alpha >= 1.0:
            torch._foreach_copy_(floats_dst, floats_src)
        else:
            torch._foreach_lerp_(floats_dst, floats_src, alpha)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft targets (smoothed and mixed one-hot rows)."""
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = LABEL_SMOOTHING) -> torch.Tensor:
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels[:, None], 1.0 - smoothing + off)
