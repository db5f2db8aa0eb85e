"""What a sweep is: presets for scale, the manifest of planned trials, and its identity check."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

import models
from stability import optimizers, trainables
from stability.data import dataset_names, is_streamed
from stability.errors import UserError
from store import check_name, schema
from store.space import space_to_json
from sweeps.space import Space, check_trainable_space, complete_space, draw


def hyperparameter_names() -> list[str]:
    """Every registered optimizer's and trainable's hyperparameters: the store's columns that may
    hold sampled values beyond the recipe's (``schema.sampled_columns``)."""
    return sorted({*optimizers.hyperparameter_names(), *trainables.hyperparameter_names()} - {"lr", "wd"})


# Scale presets. Every field can be overridden by its own flag.
PRESETS: dict[str, dict] = {
    # ImageNet at the paper's scale; the lr is scaled from batch 2048 to the batch used.
    "paper": {"dataset": "imagenet", "image_size": 224, "patch_size": 16, "epochs": 50, "batch_size": 2048},
    # Fashion-MNIST at 32 px: an EDF sweep that fits a GPU in minutes.
    "small": {"dataset": "fashion-mnist", "image_size": 32, "patch_size": 4, "epochs": 10, "batch_size": 256},
    # A CPU-sized budget: the whole pipeline on scikit-learn's 8x8 digits, 2x2 tokens.
    "smoke": {"dataset": "digits", "image_size": 8, "patch_size": 4, "epochs": 1, "batch_size": 32},
    # The paper's study on 2 CPU cores: the nano zoo on a fixed 5k/2k subset of Fashion-MNIST.
    "laptop": {"dataset": "fashion-mnist-5k", "image_size": 16, "patch_size": 4, "epochs": 10, "batch_size": 128},
}
PRESET_NOTES = {
    "paper": "ImageNet, 224 px, 50 epochs, batch 2048 (lr scaled to the batch used)",
    "small": "Fashion-MNIST, 32 px / patch 4, 10 epochs, batch 256",
    "smoke": "digits (8x8, bundled with scikit-learn), 8 px / patch 4, 1 epoch, batch 32: a CPU-sized check",
    "laptop": "Fashion-MNIST (fixed 5k/2k subset), 16 px / patch 4, 10 epochs, batch 128; adapted to 5k "
    "images: no AutoAugment, no mixup/CutMix; lr/wd intervals centred on the nano zoo's measured optima",
}
# Recipe fields a preset sets in every trial it plans (a space that samples one overrides it),
# where the paper's ImageNet regularization was measured to prevent learning at that scale
# (docs/laptop.md).
PRESET_RECIPE: dict[str, dict] = {"laptop": {"autoaugment": False, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}}
# A preset's own (lr, wd) optima per model and optimizer (lr normalized to batch 2048), measured
# at its scale by a coarse grid (``analysis.centring.grid_optimum``, docs/laptop.md): Figures 2-3
# train at them, and its EDF sweeps draw from intervals of Table 4's widths centred on them
# (``preset_interval``).
PRESET_OPTIMUM: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "laptop": {
        "vit_p_nano": {"adamw": (0.049, 0.067), "sgd": (0.80, 1.3e-5)},
        "vit_c_nano": {"adamw": (0.038, 0.2), "sgd": (1.9, 4.3e-6)},
        "regnety_nano": {"adamw": (0.13, 0.1), "sgd": (0.53, 8e-6)},
    }
}
# Trials per EDF sweep (`stability sweep` and Figures 4-5) where the paper's 64 would not fit a
# preset's machine: the laptop's 3 x 32 trials per figure take 75 minutes on 2 cores (docs/laptop.md).
PRESET_TRIALS = {"laptop": 32}
# The models a preset's grids train by default (the paper's zoo elsewhere).
PRESET_MODELS = {"laptop": ["vit_p_nano", "vit_c_nano", "regnety_nano"]}


def preset_trials(preset: str, given: int | None) -> int:
    """Trials per EDF sweep: as given, else the preset's number, else the paper's 64."""
    return PRESET_TRIALS.get(preset, 64) if given is None else given


# What defines a run apart from its per-member values in a manifest of only the default space:
# trials equal in these can share a population (``schema.run_identity`` adds sampled recipe fields).
RUN_IDENTITY = schema.run_identity([])


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
    if gpu_memory is None or is_streamed(row["dataset"]):
        return 1
    cost = models.complexity(
        row["model"], num_classes=10, image_size=int(row["image_size"]), patch_size=int(row["patch_size"])
    )
    member = TRAIN_BYTES_PER_ACT * cost["acts"] * int(row["batch_size"]) + STATE_BYTES_PER_PARAM * cost["params"]
    return max(1, min(POPULATION_MAX, int(POPULATION_SHARE * gpu_memory // member)))


def packs(pending: pd.DataFrame, size_of) -> list[list[str]]:
    """Pending trial ids grouped into populations: only trials equal in every field of their run
    identity (``schema.run_identity``: all but lr and wd) share one, consecutive in manifest
    order, ``size_of(row)`` at most per group.

    A grid's rows differ in model, optimizer or epochs, so each trains alone; an EDF sweep's
    rows differ only in (lr, wd) and pack, unless it samples another field, which separates
    them. The same pending rows always give the same packs, which is what lets a pack resume
    from its checkpoint after a crash.
    """
    out: list[list[str]] = []
    identity = schema.run_identity(pending.columns, hyperparameter_names())
    for _, group in pending.groupby(identity, sort=False, dropna=False):
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
    if scale.dataset not in dataset_names():
        raise UserError(f"unknown dataset {scale.dataset!r}; choose from {', '.join(dataset_names())}")
    for name in ("image_size", "patch_size", "epochs", "batch_size"):
        if getattr(scale, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(scale, name)}")
    if scale.image_size % scale.patch_size:
        raise UserError(f"--image-size {scale.image_size} is not divisible by --patch-size {scale.patch_size}")
    return scale


def preset_optimum(preset: str, model: str, optim: str) -> tuple[float, float] | None:
    """The preset's measured (lr, wd) optimum of the model, or None where it has none."""
    return PRESET_OPTIMUM.get(preset, {}).get(model, {}).get(optim)


def preset_interval(preset: str, model: str, optim: str) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Log-uniform intervals as wide as Table 4's of the model's family and optimizer (lr 32x;
    wd 40x for ViTs under AdamW, 30x under SGD, 32x and 26.7x for CNNs), with the preset's
    optimum at their geometric centre; None where it has none (Table 4's own intervals apply)."""
    best, table = preset_optimum(preset, model, optim), optimizers.entry(optim).interval(models.family(model))
    if best is None or table is None:
        return None
    return tuple((v / math.sqrt(hi / lo), v * math.sqrt(hi / lo)) for v, (lo, hi) in zip(best, table, strict=True))


def check_model(name: str, scale: Scale) -> None:
    if name not in models.names():
        raise UserError(f"unknown model {name!r}; see `stability models`")
    try:
        models.complexity(name, image_size=scale.image_size, patch_size=scale.patch_size)
    except ValueError as e:
        raise UserError(f"{name}: {e}") from None


def check_optimizer(optim: str) -> None:
    if optim not in optimizers.names():
        raise UserError(
            f"unknown optimizer {optim!r}; registered: {', '.join(optimizers.names())} (see `stability optimizers`)"
        )


def trial_id(model: str, optim: str, epochs: int, index: int) -> str:
    """A trial's id, also its file names in the store: one safe path component (a registered
    model's name could hold anything)."""
    return check_name(f"{model}-{optim}-e{epochs}-{index:03d}", "trial id")


def edf_manifest(
    sweep: str,
    model: str,
    optim: str,
    scale: Scale,
    *,
    trials: int,
    seed: int,
    sampler: str = "random",
    space: Space | None = None,
    imports: list[str] | None = None,
) -> pd.DataFrame:
    """An EDF sweep: ``trials`` points of the space drawn once (lr and wd: Table 4's
    log-uniform intervals of the model's family unless the space gives them). Every sampled
    field is a column; the space itself is stored in ``space`` (JSON) for analysis to rebuild."""
    check_optimizer(optim)
    check_model(model, scale)
    default = preset_interval(scale.preset, model, optim)
    full = complete_space(dict(space or {}), model, models.family(model), optim, default)
    points = draw(full, trials, seed, sampler)
    stored = space_to_json(full)
    rows = []
    for i, p in enumerate(points):
        epochs = int(p["epochs"]) if "epochs" in p else None
        row = manifest_row(sweep, i, model, optim, p["lr"], p["wd"], scale, seed, sampler, epochs, imports)
        sampled = {k: v for k, v in p.items() if k not in ("lr", "wd", "epochs")}  # batch_size and recipe fields
        rows.append({**row, **sampled, "space": stored})
    frame = pd.DataFrame(rows)
    frame["batch_size"] = frame["batch_size"].astype("int64")  # a choice may be written 32.0
    return frame


def check_trainer(name: str) -> trainables.Entry:
    if name not in trainables.names():
        known = ", ".join(trainables.names()) or "none (register one in a file given with --import)"
        raise UserError(f"unknown trainable {name!r}; registered: {known}; see docs/experiments.md")
    return trainables.entry(name)


def trainable_manifest(
    sweep: str,
    trainer: str,
    *,
    trials: int,
    seed: int,
    epochs: int | None = None,
    sampler: str = "random",
    space: Space | None = None,
    imports: list[str] | None = None,
) -> pd.DataFrame:
    """An EDF sweep of a registered trainable: ``trials`` points of ``space`` (over its own
    hyperparameters, and epochs) drawn once, as ``edf_manifest`` draws them. Its rows name the
    trainable (``trainer``), its metric, and its labels in the model, optimizer and dataset
    columns; the data and image columns the built-in trainer's rows fill stay empty."""
    spec = check_trainer(trainer)
    if not space:
        raise UserError(f"a sweep of trainable {trainer!r} needs a space: --space NAME=DIST over its hyperparameters")
    check_trainable_space(space, trainer)
    points = draw(dict(space), trials, seed, sampler)
    stored = space_to_json(space)
    length = spec.epochs if epochs is None else epochs
    if length < 1:
        raise UserError(f"--epochs must be at least 1, got {length}")
    rows = []
    for i, p in enumerate(points):
        e = int(p.get("epochs", length))
        rows.append({
            "sweep": check_name(sweep, "sweep name"), "index": i, "trial_id": trial_id(trainer, spec.optimizer, e, i),
            "model": trainer, "family": "trainable", "optimizer": spec.optimizer,
            "lr": float(p.get("lr", math.nan)), "wd": float(p.get("wd", math.nan)), "epochs": e,
            "dataset": spec.dataset, "image_size": None, "patch_size": None, "batch_size": None, "seed": seed,
            "sampler": sampler, "preset": None, "imports": json.dumps(list(imports)) if imports else None,
            "trainer": trainer, **spec.metric.columns(),
            **{k: v for k, v in p.items() if k not in ("lr", "wd", "epochs")}, "space": stored,
        })  # fmt: skip
    return pd.DataFrame(rows)


def scale_of(row: dict) -> Scale:
    """The scale a manifest row was planned at."""
    return Scale(**{f.name: row[f.name] for f in fields(Scale)})


def noise_manifest(sweep: str, best: dict, seeds: int) -> pd.DataFrame:
    """The best trial of ``sweep`` (a manifest row) re-trained under ``seeds`` other seeds."""
    if seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {seeds}")
    name = f"{sweep}-noise"
    if schema.present(best.get("trainer")):
        return _trainable_noise(name, sweep, best, seeds)
    scale, imports = scale_of(best), schema.imports_of(best)
    rows = []
    for i in range(seeds):
        seed = int(best["seed"]) + 1 + i
        row = manifest_row(
            name, i, best["model"], best["optimizer"], best["lr"], best["wd"], scale, seed, "noise", imports=imports
        )
        recipe = {k: best[k] for k in schema.sampled_columns(best, hyperparameter_names()) if schema.present(best[k])}
        rows.append({**row, **recipe, "trial_id": f"{row['trial_id']}-seed{seed}", "noise_of": sweep})
    return pd.DataFrame(rows)


def _trainable_noise(name: str, sweep: str, best: dict, seeds: int) -> pd.DataFrame:
    """A trainable's best trial, as planned, under ``seeds`` other seeds."""
    planned = {k: best[k] for k in [*schema.PLAN, *schema.sampled_columns(best, hyperparameter_names())] if k in best}
    rows = []
    for i in range(seeds):
        seed = int(best["seed"]) + 1 + i
        tid = trial_id(best["model"], best["optimizer"], int(best["epochs"]), i)
        rows.append({**planned, "sweep": name, "index": i, "trial_id": f"{tid}-seed{seed}", "seed": seed,
                     "sampler": "noise", "noise_of": sweep})  # fmt: skip
    return pd.DataFrame(rows)


def manifest_row(
    sweep, index, model, optim, lr, wd, scale: Scale, seed, sampler="fixed", epochs=None, imports=None
) -> dict:
    """A planned trial in the schema's columns (``store.schema.PLAN``), plus the recipe fields
    its preset sets in every trial (``PRESET_RECIPE``)."""
    check_name(sweep, "sweep name")
    epochs = epochs or scale.epochs
    values = {
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
        "imports": json.dumps(list(imports)) if imports else None,
    }
    return {**{k: values[k] for k in schema.PLAN if k in values}, **PRESET_RECIPE.get(scale.preset, {})}


def definition_differences(old: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """The columns in which two manifests plan different trials (float columns compared to 12
    significant digits): every identity column and every sampled recipe column; empty if the
    same. A column one of them lacks differs (a grid planned before its warm-up was set)."""
    either = set(old.columns) | set(new.columns)
    columns = schema.IDENTITY + schema.sampled_columns(either, hyperparameter_names())
    columns += [c for c in ("trainer", *schema.METRIC_COLUMNS) if c in either]  # a trainable's, and what it measures
    if len(old) != len(new):
        return ["number of trials"]
    a, b = old.reset_index(drop=True), new.reset_index(drop=True)
    differ = []
    for col in columns:
        if col not in a or col not in b:
            differ.append(col)
        elif pd.api.types.is_float_dtype(a[col]) and pd.api.types.is_float_dtype(b[col]):
            # NaN equals NaN here: a trainable's unsampled lr, wd; inf equals inf: a diverged value
            if not np.isclose(a[col], b[col], rtol=1e-12, atol=0, equal_nan=True).all():
                differ.append(col)
        elif not ((a[col].astype(str) == b[col].astype(str)) | (a[col].isna() & b[col].isna())).all():
            differ.append(col)  # a missing value (a trainable's image size) reads back as None or NaN
    return differ


def extends(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """``new`` plans ``old``'s trials and more (``--trials`` raised on a stored sweep): the same
    definition over old's rows. A seeded random or Sobol sampler draws one point after another,
    so the first N of M draws are the N draws, and the stored trials and their results stay."""
    return len(new) > len(old) and not definition_differences(old, new.iloc[: len(old)])


def same_definition(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Two manifests plan the same trials (``definition_differences`` is empty)."""
    return not definition_differences(old, new)
