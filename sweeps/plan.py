"""What a sweep is: presets for scale, the manifest of planned trials, and its identity check."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import pandas as pd

import models
from analysis.paper import interval
from stability.data import DATASETS
from stability.errors import UserError
from stability.population import PER_MEMBER
from sweeps.space import draw_pairs

# Scale presets. Every field can be overridden by its own flag.
PRESETS: dict[str, dict] = {
    # ImageNet at the paper's scale; the lr is scaled from batch 2048 to the batch used.
    "paper": {"dataset": "imagenet", "image_size": 224, "patch_size": 16, "epochs": 50, "batch_size": 2048},
    # Fashion-MNIST at 32 px: an EDF sweep that fits a GPU in minutes.
    "small": {"dataset": "fashion-mnist", "image_size": 32, "patch_size": 4, "epochs": 10, "batch_size": 256},
    # A CPU-sized budget: the whole pipeline on scikit-learn's 8x8 digits, 2x2 tokens.
    "smoke": {"dataset": "digits", "image_size": 8, "patch_size": 4, "epochs": 1, "batch_size": 32},
}
PRESET_NOTES = {
    "paper": "ImageNet, 224 px, 50 epochs, batch 2048 (lr scaled to the batch used)",
    "small": "Fashion-MNIST, 32 px / patch 4, 10 epochs, batch 256",
    "smoke": "digits (8x8, bundled with scikit-learn), 8 px / patch 4, 1 epoch, batch 32: a CPU-sized check",
}
MANIFEST_IDENTITY = [
    "index",
    "trial_id",
    "model",
    "optimizer",
    "lr",
    "wd",
    "epochs",
    "dataset",
    "image_size",
    "patch_size",
    "batch_size",
    "seed",
]
# Manifest columns that every trial row repeats, so that analysis needs only the trial rows:
# how the trial was drawn, at which preset, the sweep's sampled space (JSON), and for seed-noise
# trials the sweep whose best they re-train.
CARRIED = ["sampler", "preset", "space", "noise_of"]
# What defines a run apart from its per-member values: trials equal in these can share a population.
RUN_IDENTITY = [c for c in MANIFEST_IDENTITY if c not in ("index", "trial_id", *PER_MEMBER)]


@dataclass(frozen=True)
class Scale:
    """The data and schedule every trial of a sweep shares."""

    dataset: str
    image_size: int
    patch_size: int
    epochs: int
    batch_size: int
    preset: str = ""


# Populations on a GPU (stability.population), from measurements on one H100 (README, "Speed"):
# vit_c_1gf at 32 px, batch 256, bf16: 16 members trained 2.5x the images/s of one trial and
# peaked at 30.3 GiB, 5.6 bytes per counted activation per image.
POPULATION_MAX = 16
POPULATION_SHARE = 0.5  # of a trial's GPU memory one population may plan for (40 GiB of an 80 GB card)
TRAIN_BYTES_PER_ACT = 5.6
STATE_BYTES_PER_PARAM = 28  # weights, gradient, two moments, EMA, per-member lr and wd, in fp32


def default_pack(gpu_memory: int | None, row: dict) -> int:
    """Trials per population for a manifest row: several where one trial cannot fill its GPU
    (small images), as many as fit half of ``gpu_memory`` (the bytes one trial's GPU share
    has); one without a GPU (``None``: measured slower there) and at ImageNet scale. A
    population that still runs out of memory is split by the engine."""
    if gpu_memory is None or row["dataset"] == "imagenet":
        return 1
    cost = models.complexity(
        row["model"], num_classes=10, image_size=int(row["image_size"]), patch_size=int(row["patch_size"])
    )
    member = TRAIN_BYTES_PER_ACT * cost["acts"] * int(row["batch_size"]) + STATE_BYTES_PER_PARAM * cost["params"]
    return max(1, min(POPULATION_MAX, int(POPULATION_SHARE * gpu_memory // member)))


def packs(pending: pd.DataFrame, size_of) -> list[list[str]]:
    """Pending trial ids grouped into populations: only trials equal in every ``RUN_IDENTITY``
    field share one, consecutive in manifest order, ``size_of(row)`` at most per group.

    A grid's rows differ in model, optimizer or epochs, so each trains alone; an EDF sweep's
    rows differ only in (lr, wd) and pack. The same pending rows always give the same packs,
    which is what lets a pack resume from its checkpoint after a crash.
    """
    out: list[list[str]] = []
    for _, group in pending.groupby(RUN_IDENTITY, sort=False, dropna=False):
        ids = list(group["trial_id"])
        size = max(1, size_of(group.iloc[0].to_dict()))
        out += [ids[i : i + size] for i in range(0, len(ids), size)]
    return out


def choose_scale(preset: str | None, has_gpu: bool, **overrides) -> Scale:
    """The named preset (or small on a GPU, smoke without one), with explicit flags on top."""
    name = preset or ("small" if has_gpu else "smoke")
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    values = {**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}, "preset": name}
    scale = Scale(**{f.name: values[f.name] for f in fields(Scale)})
    if scale.dataset not in DATASETS:
        raise UserError(f"unknown dataset {scale.dataset!r}; choose from {', '.join(DATASETS)}")
    for name in ("image_size", "patch_size", "epochs", "batch_size"):
        if getattr(scale, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(scale, name)}")
    if scale.image_size % scale.patch_size:
        raise UserError(f"--image-size {scale.image_size} is not divisible by --patch-size {scale.patch_size}")
    return scale


def check_model(name: str, scale: Scale) -> None:
    if name not in models.names():
        raise UserError(f"unknown model {name!r}; see `stability models`")
    try:
        models.complexity(name, image_size=scale.image_size, patch_size=scale.patch_size)
    except ValueError as e:
        raise UserError(f"{name}: {e}") from None


def trial_id(model: str, optim: str, epochs: int, index: int) -> str:
    return f"{model}-{optim}-e{epochs}-{index:03d}"


def edf_manifest(
    sweep: str,
    model: str,
    optim: str,
    scale: Scale,
    *,
    trials: int,
    seed: int,
    sampler: str = "random",
    lr_range: tuple[float, float] | None = None,
    wd_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """An EDF sweep: ``trials`` (lr, wd) pairs drawn once, log-uniform in the model's intervals."""
    if optim not in ("adamw", "sgd"):
        raise UserError(f"unknown optimizer {optim!r}; choose adamw or sgd")
    check_model(model, scale)
    lr_default, wd_default = interval(model, optim)
    lr_range, wd_range = lr_range or lr_default, wd_range or wd_default
    pairs = draw_pairs(lr_range, wd_range, trials, seed, sampler)
    space = json.dumps({"lr": ["log", *lr_range], "wd": ["log", *wd_range]})  # what analysis.importance rebuilds
    rows = [
        {**manifest_row(sweep, i, model, optim, lr, wd, scale, seed, sampler), "space": space}
        for i, (lr, wd) in enumerate(pairs)
    ]
    return pd.DataFrame(rows)


def scale_of(row: dict) -> Scale:
    """The scale a manifest row was planned at."""
    return Scale(**{f.name: row[f.name] for f in fields(Scale)})


def noise_manifest(sweep: str, best: dict, seeds: int) -> pd.DataFrame:
    """The best trial of ``sweep`` (a manifest row) re-trained under ``seeds`` other seeds."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    name = f"{sweep}-noise"
    scale = scale_of(best)
    rows = []
    for i in range(seeds):
        seed = int(best["seed"]) + 1 + i
        row = manifest_row(name, i, best["model"], best["optimizer"], best["lr"], best["wd"], scale, seed, "noise")
        rows.append({**row, "trial_id": f"{row['trial_id']}-seed{seed}", "noise_of": sweep})
    return pd.DataFrame(rows)


def manifest_row(sweep, index, model, optim, lr, wd, scale: Scale, seed, sampler="fixed", epochs=None) -> dict:
    epochs = epochs or scale.epochs
    return {
        "sweep": sweep,
        "index": index,
        "trial_id": trial_id(model, optim, epochs, index),
        "model": model,
        "family": models.family(model),
        "optimizer": optim,
        "lr": float(lr),
        "wd": float(wd),
        "epochs": int(epochs),
        "dataset": scale.dataset,
        "image_size": scale.image_size,
        "patch_size": scale.patch_size,
        "batch_size": scale.batch_size,
        "seed": seed,
        "sampler": sampler,
        "preset": scale.preset,
    }


def same_definition(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Two manifests plan the same trials (float columns compared to 12 significant digits)."""
    if len(old) != len(new) or not set(MANIFEST_IDENTITY) <= set(old.columns):
        return False
    a = old[MANIFEST_IDENTITY].reset_index(drop=True)
    b = new[MANIFEST_IDENTITY].reset_index(drop=True)
    for col in MANIFEST_IDENTITY:
        if pd.api.types.is_float_dtype(a[col]):
            if not ((a[col] - b[col]).abs() <= 1e-12 * b[col].abs().clip(lower=1e-300)).all():
                return False
        elif not (a[col].astype(str) == b[col].astype(str)).all():
            return False
    return True
