"""The one definition of a trial row (DESIGN section 6): its columns, their types, and how a
row maps to the trainer's config and back.

A manifest row is the planned part; a trial row is the planned part plus the outcome. The
sweep planner, the trial process, the driver's failure record and both readers of the store
use these definitions, so a new sampled field is added here (and as a ``TrainConfig`` field)
and nowhere else.
"""

from __future__ import annotations

import json
import math

# What defines a trial, in the manifest's column order (compared by ``same_definition``).
IDENTITY = [
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
# The fields in which members of one population may differ: each member holds its own value.
PER_MEMBER = ("lr", "wd")
# Recipe hyperparameters beyond the identity's that a search space may sample. Each is a
# column only where a sweep samples it, so sweeps and checkpoints from before these existed
# keep their identity. Type: how a value is read back from a row.
RECIPE: dict[str, type] = {
    "warmup_epochs": float,
    "label_smoothing": float,
    "mixup_alpha": float,
    "cutmix_alpha": float,
    "momentum": float,
    "beta2": float,
    "autoaugment": bool,
    "ema": bool,
}
# Every sweepable field, with its type: the identity's numeric ones and the recipe's.
SWEEPABLE: dict[str, type] = {"lr": float, "wd": float, "epochs": int, "batch_size": int, **RECIPE}
# Planned columns every trial row repeats from its manifest row, so that analysis needs only
# trial rows: how it was drawn, at which preset, the sweep's space (JSON), the sweep whose best a
# seed-noise trial re-trains, and the user modules (JSON list) imported before the model is built.
CARRIED = ["sampler", "preset", "space", "noise_of", "imports"]
PLAN = ["sweep", *IDENTITY[:4], "family", *IDENTITY[4:], *CARRIED]
# The outcome of a trial, written when it ends.
OUTCOME = [
    "stem",
    "status",
    "top1_err",
    "top1_err_raw",
    "train_loss",
    "diverged_epoch",
    "completed_epochs",
    "wall_s",
    "device",
    "simulated_gpu",
    "flops",
    "params",
    "acts",
    "complexity_source",
    "started_at",
    "finished_at",
    "version",
    "error",
    "resumed_from_epoch",
    "workers",
    "accumulate",
    "node_id",
]
# Columns whose values may be missing, typed so that every file of a store has one schema.
NULLABLE = {
    "diverged_epoch": "Int64",
    "completed_epochs": "Int64",
    "error": "string",
    "patch_size": "Int64",
    "noise_of": "string",
    "imports": "string",
}
CURVE = ["epoch", "lr", "train_loss", "top1_err", "top1_err_raw", "wall_s"]
# Names that differ between a row and the trainer's config.
CONFIG_NAME = {"optimizer": "optim"}


def recipe_columns(columns) -> list[str]:
    """The sampled recipe columns among ``columns``, in the schema's order."""
    return [c for c in RECIPE if c in set(columns)]


def run_identity(columns) -> list[str]:
    """What makes trials trainable together apart from their per-member values: every identity
    field but the per-member ones, and every sampled recipe field."""
    fixed = [c for c in IDENTITY if c not in ("index", "trial_id", *PER_MEMBER)]
    return fixed + recipe_columns(columns)


def present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def config_fields(row: dict) -> dict:
    """The trainer's config fields of a planned row: identity and sampled recipe fields, typed."""
    out = {CONFIG_NAME.get(k, k): row[k] for k in ("model", "optimizer", "dataset", "trial_id", "sweep")}
    for k in ("lr", "wd"):
        out[k] = float(row[k])
    for k in ("epochs", "image_size", "patch_size", "batch_size", "seed", "index"):
        out[k] = int(row[k])
    for k, kind in RECIPE.items():
        if k in row and present(row[k]):
            out[k] = kind(row[k])
    out["imports"] = tuple(imports_of(row))
    return out


def plan_of_config(cfg: dict, family: str) -> dict:
    """The planned columns of a trial row, as the trainer knows them from its config (a sweep's
    trial then copies the manifest's carried columns over them: ``carried``)."""
    back = {v: k for k, v in CONFIG_NAME.items()}
    named = {back.get(k, k): v for k, v in cfg.items()}
    row = {k: named.get(k) for k in PLAN if k in named}
    row["family"] = family
    row["imports"] = json.dumps(list(cfg.get("imports") or ())) if cfg.get("imports") else None
    row.update({k: named[k] for k in RECIPE if named.get(k) is not None})
    return row


def carried(row: dict) -> dict:
    """The planned columns a trial row copies from its manifest row beyond the config's."""
    return {k: row[k] for k in CARRIED if k in row}


def failed_row(row: dict, error: str, now: str) -> dict:
    """The record of a trial that raised on every attempt: its plan and a failed outcome."""
    planned = {k: row[k] for k in [*PLAN, *recipe_columns(row)] if k in row}
    return {
        **planned,
        "status": "failed",
        "top1_err": 100.0,
        "top1_err_raw": 100.0,
        "train_loss": float("nan"),
        "diverged_epoch": None,
        "completed_epochs": None,
        "wall_s": float("nan"),
        "started_at": now,
        "finished_at": now,
        "error": error[-4000:],
    }


def imports_of(row: dict) -> list[str]:
    """The user modules a row's model needs (a JSON list in the ``imports`` column)."""
    text = row.get("imports")
    return json.loads(text) if isinstance(text, str) and text else []
