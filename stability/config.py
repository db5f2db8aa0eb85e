"""A run's configuration: every field of one training run, checked and filled in.

``TrainConfig`` is what a sweep's trial, ``stability train`` and a population member all
describe a run with; its ``identity`` names the result (checkpoints and trial ids hang on it),
so a field added here stays out of the identity until it is set.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields, replace

import models
from stability import optimizers, recipe
from stability.data import dataset_names
from stability.errors import UserError
from stability.imports import load_imports
from stability.paper import optimum
from store import schema


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``lr`` is normalized to batch 2048 (Table 4) where the optimizer scales it
    linearly; None takes Table 4's optimum (another optimizer: the centre of its default interval).

    The recipe fields that default to None (warm-up, label smoothing, mixing alphas, EMA) take
    the recipe's value (``recipe.DEFAULTS``, or the optimizer's own) and stay out of the run's
    identity until set; so do the optimizer's hyperparameters (``optim_args``, name-value pairs,
    each in the identity under its own name once set), so that runs from before they existed keep
    their identity and checkpoints.
    """

    model: str
    optim: str
    lr: float | None = None
    wd: float | None = None
    epochs: int = 50
    dataset: str = "synthetic"
    data_dir: str | None = None
    batch_size: int = 256
    image_size: int = 32
    patch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    autoaugment: bool = True
    mixing: bool = True
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    mixup_alpha: float | None = None
    cutmix_alpha: float | None = None
    ema: bool | None = None  # evaluate (and report as top1_err) the model EMA; False: the raw model
    optim_args: tuple[tuple[str, float | int | bool], ...] = ()  # the optimizer's hyperparameters set
    imports: tuple[str, ...] = ()  # user modules (files or dotted names) that register the model or data
    loader_workers: int = 8
    threads: int | None = None
    accumulate: int = 1  # gradient accumulation: micro-batches per step on each worker
    compile: bool = False  # torch.compile the training forward (eager if compilation fails)
    simulated_gpu: bool = False  # Ray gave this run a logical GPU that it trains on the CPU (tests only)
    sweep: str = "train"
    trial_id: str = ""
    index: int = 0

    def setting(self, name: str):
        """A recipe field's value in this run: the config's, else the recipe's default."""
        value = getattr(self, name)
        if value is not None:
            return value
        if name == "warmup_epochs":
            return recipe.warmup_epochs(self.epochs)
        own = optimizers.entry(self.optim).recipe if self.optim in optimizers.names() else {}
        return own.get(name, recipe.DEFAULTS[name])

    def hyperparameters(self) -> dict:
        """The optimizer's hyperparameters in this run: the ones set, over the entry's defaults."""
        return {**optimizers.entry(self.optim).defaults(), **dict(self.optim_args)}

    def resolved(self) -> TrainConfig:
        """Import the user's modules; fill in the Table 4 optimum, the patch size and a trial id;
        check every field."""
        load_imports(self.imports)
        if self.model not in models.names():
            raise UserError(f"unknown model {self.model!r}; see `stability models`")
        if self.optim not in optimizers.names():
            raise UserError(f"unknown optimizer {self.optim!r}; registered: {', '.join(optimizers.names())}")
        if self.dataset not in dataset_names():
            raise UserError(f"unknown dataset {self.dataset!r}; choose from {', '.join(dataset_names())}")
        family = models.family(self.model)
        default = default_lr_wd(self.model, family, self.optim)
        if default is None and (self.lr is None or self.wd is None):
            raise UserError(
                f"{self.model} (family {family}) has no Table 4 optimum or {self.optim} interval: "
                "give its --lr and --wd"
            )
        lr0, wd0 = default or (self.lr, self.wd)
        cfg = replace(
            self,
            lr=self.lr if self.lr is not None else lr0,
            wd=self.wd if self.wd is not None else wd0,
            patch_size=self.patch_size or models.default_patch_size(self.image_size),
            optim_args=checked_optim_args(self.optim, self.optim_args),
        )
        for name in ("image_size", "accumulate"):
            if not getattr(cfg, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
        for name in recipe.FIELD_RULES:
            value = getattr(cfg, name)
            problem = None if value is None else recipe.field_problem(name, value)
            if problem:
                raise UserError(problem)
        return cfg if cfg.trial_id else replace(cfg, trial_id=default_trial_id(cfg))

    def identity(self) -> dict:
        """The fields that define the result (not where or how fast it runs); a recipe field
        left at its default (None) is not part of it."""
        where = {"data_dir", "device", "loader_workers", "threads", "compile", "simulated_gpu", "imports"}
        skip = where | {"trial_id", "sweep", "index"}
        unset = {k for k in schema.RECIPE if getattr(self, k) is None}
        fields = {k: v for k, v in asdict(self).items() if k not in skip | unset | {"optim_args"}}
        return {**fields, **dict(self.optim_args)}


def default_lr_wd(model: str, family: str, optim: str) -> tuple[float, float] | None:
    """Table 4's optimum for the paper's optimizers; for another, the geometric centre of its
    default intervals for the family; None where neither is known."""
    best = optimum(model, family, optim) if optim in ("adamw", "sgd") else None
    interval = optimizers.entry(optim).interval(family)
    if best is None and interval is not None:
        best = tuple(math.sqrt(lo * hi) for lo, hi in interval)
    return best


def checked_optim_args(optim: str, given) -> tuple:
    """The optimizer's hyperparameters set in a run, checked and typed, sorted by name."""
    hyper = optimizers.entry(optim).hyperparameters
    out = []
    for name, value in dict(given).items():
        if name in {f.name for f in fields(TrainConfig)}:
            raise UserError(f"{optim}: hyperparameter {name!r} has the name of a run field; rename it")
        if name in hyper and hyper[name].kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        problem = optimizers.problem(optim, name, value)
        if problem:
            raise UserError(problem)
        out.append((name, hyper[name].kind(value)))
    return tuple(sorted(out))


def default_trial_id(cfg: TrainConfig) -> str:
    digest = hashlib.sha1(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.model}-{cfg.optim}-{digest}"
