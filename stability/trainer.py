"""The one shared trainer: a TrainConfig in, a result row and a per-epoch curve out.

Every sweep trial runs through ``train``. Randomness comes from two generators seeded from
the config (one on the CPU for order and mixing, one on the device for augmentation); both
are checkpointed at every epoch end with the model, EMA and optimizer, so an interrupted run
resumes to the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

import models
from stability import augment, optimizers, recipe
from stability.data import FolderData, TensorData, dataset_names, load_dataset
from stability.distributed import World, prepare_model
from stability.errors import UserError
from stability.paper import optimum
from store import schema, set_aside
from store.files import fsync_file


def package_version() -> str:
    """The installed package's version (pyproject's), recorded in every trial row."""
    try:
        return importlib.metadata.version("edf-sweep-engine")
    except importlib.metadata.PackageNotFoundError:  # a source tree run without installing it
        return "unknown"


VERSION = package_version()
CHECKPOINT = "last.pt"
CHECKPOINT_FORMAT = 2  # per-trial, optimizer state by parameter name (``trial_state``)


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


def load_imports(imports) -> None:
    """Import each user module (registering its models and datasets) in this process: by path
    where the file is here, else the copy Ray shipped to this node."""
    for spec in imports:
        try:
            models.import_in_worker(spec)
        except Exception as e:
            raise UserError(f"--import {spec}: {type(e).__name__}: {e}") from None


def default_trial_id(cfg: TrainConfig) -> str:
    digest = hashlib.sha1(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.model}-{cfg.optim}-{digest}"


@dataclass
class TrainResult:
    row: dict
    curve: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """The device with its index: "cuda" means the current one, which Ray Train sets to each
    worker's own GPU, and DDP must be told that index."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is visible")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device("cuda", torch.cuda.current_device()) if name == "cuda" else torch.device("cpu")


def load_data(cfg: TrainConfig) -> TensorData | FolderData:
    return load_dataset(cfg.dataset, cfg.data_dir, cfg.image_size, seed=cfg.seed, workers=cfg.loader_workers)


class Stream:
    """The data side of a run: seeded batch order, augmentation and the test split.

    Kept apart from the model so that one stream can feed one model (``Run``) or a
    population of models trained on the same batches (``stability.population``).
    """

    def __init__(
        self, cfg: TrainConfig, data: TensorData | FolderData, device: torch.device, world: World | None = None
    ) -> None:
        self.cfg, self.device, self.world = cfg, device, world or World()
        self.data = data.to(device) if isinstance(data, TensorData) else data
        # Small data: every worker draws the global batch's augmentation from the same generators
        # and keeps its shard, so N workers compute exactly one worker's batches. Folder data:
        # each worker loads only its shard and augments it with a generator of its own.
        self.loader_shards = isinstance(data, FolderData)
        mean, std = (
            self.data.mean_std()
            if isinstance(data, TensorData)
            else (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
        )
        self.mean, self.std = mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)
        self.batch = min(cfg.batch_size, data.train_size)
        self.steps_per_epoch = data.train_size // self.batch
        self.warm_steps = round(recipe.warmup_epochs(cfg.epochs, cfg.warmup_epochs) * self.steps_per_epoch)
        self.ema_period = min(recipe.EMA_PERIOD, self.steps_per_epoch)
        self.own_schedule = optimizers.entry(cfg.optim).own_schedule
        self.gen_cpu = torch.Generator().manual_seed(cfg.seed)
        rank_offset = 1000 * self.world.rank if self.loader_shards else 0
        self.gen_dev = torch.Generator(device=device).manual_seed(cfg.seed + 1 + rank_offset)
        if self.batch % (self.world.size * cfg.accumulate):
            raise UserError(
                f"batch {self.batch} does not split into {self.world.size} workers x {cfg.accumulate} micro-batches"
            )

    def state(self) -> dict:
        return {"gen_cpu": self.gen_cpu.get_state(), "gen_dev": self.gen_dev.get_state()}

    def load_state(self, state: dict) -> None:
        # Generator states are CPU byte tensors, for CUDA generators too (map_location moved them)
        self.gen_cpu.set_state(state["gen_cpu"].cpu())
        self.gen_dev.set_state(state["gen_dev"].cpu())

    def lr_factor(self, step: int) -> float:
        """The schedule's multiplier of the base lr at a global step (the schedule is linear in lr);
        1 throughout for an optimizer that brings its own schedule."""
        if self.own_schedule:
            return 1.0
        return recipe.lr_at(
            step,
            base_lr=1.0,
            steps_per_epoch=self.steps_per_epoch,
            epochs=self.cfg.epochs,
            warmup=self.cfg.warmup_epochs,
        )

    def ema_alpha(self, step: int) -> float | None:
        """The EMA coefficient if the EMA updates after this step, else None."""
        if (step + 1) % self.ema_period:
            return None
        return recipe.ema_alpha(
            batch_size=self.batch,
            epochs=self.cfg.epochs,
            train_size=self.data.train_size,
            in_warmup=step < self.warm_steps,
            period=self.ema_period,
        )

    def batches(self, epoch: int):
        """uint8 image batches on the device with their labels, in this epoch's seeded order."""
        order = torch.randperm(self.data.train_size, generator=self.gen_cpu)[: self.steps_per_epoch * self.batch]
        if isinstance(self.data, FolderData):
            self.data.train.epoch = epoch
            local = self.batch // self.world.size
            order = order.view(-1, self.world.size, local)[:, self.world.rank].reshape(-1)
            for x, y in self.data.loader("train", local, order):
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        order = order.to(self.device)
        for i in range(self.steps_per_epoch):
            idx = order[i * self.batch : (i + 1) * self.batch]
            yield self.data.train_x[idx], self.data.train_y[idx]

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a uint8 batch and build its soft targets (label smoothing, mixup/CutMix)."""
        x = x.float() / 255
        if isinstance(self.data, TensorData):
            x = augment.crop_flip(x, self.gen_dev, pad=max(1, self.cfg.image_size // 8))
        if self.cfg.autoaugment:
            x, _ = augment.autoaugment(x, self.gen_dev)
        x = self.normalize(x)
        target = recipe.smooth_one_hot(y, self.data.num_classes, self.cfg.setting("label_smoothing"))
        if self.cfg.mixing:
            x, target, _ = augment.mix(
                x, target, self.gen_cpu, self.cfg.setting("mixup_alpha"), self.cfg.setting("cutmix_alpha")
            )
        return x, target

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This worker's rows of a prepared batch."""
        return x if self.loader_shards else self.world.shard(x)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def test_batches(self, size: int = 1024):
        """This worker's share of the test split as normalized float batches with their labels.

        Batch j belongs to worker j mod N, so a streamed test set decodes each image once in all.
        """
        folder = isinstance(self.data, FolderData)
        n = len(self.data.test) if folder else self.data.test_x.shape[0]
        starts = range(self.world.rank * size, n, self.world.size * size)
        if folder:
            order = torch.tensor([j for i in starts for j in range(i, min(i + size, n))], dtype=torch.long)
            for x, y in self.data.loader("test", size, order):
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                yield self.normalize(x.float() / 255), y
            return
        for i in starts:
            yield self.normalize(self.data.test_x[i : i + size].float() / 255), self.data.test_y[i : i + size]

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")


def initial_model(cfg: TrainConfig, data: TensorData | FolderData, device: torch.device) -> torch.nn.Module:
    """The model at its seeded initialization: the same weights for every trial of a sweep."""
    torch.manual_seed(cfg.seed)
    return models.create(
        cfg.model,
        num_classes=data.num_classes,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        in_chans=data.channels,
    ).to(device)


class CompiledOrEager:
    """``torch.compile`` with a fallback: compilation is an optimisation, so a model it cannot
    compile trains eager (saying so once) instead of failing the run. Compilation happens at
    the first call, before any backward, so falling back there loses nothing."""

    def __init__(self, net: Callable[..., torch.Tensor]) -> None:
        self.net, self.compiled = net, torch.compile(net)

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # any compiler failure: the eager model computes the same function
                print(f"torch.compile failed ({type(e).__name__}: {e}); training eager", file=sys.stderr, flush=True)
                self.compiled = None
        return self.net(*args, **kwargs)


class Run:
    """The state of one training run, with the steps of the recipe as methods."""

    def __init__(self, cfg: TrainConfig, data: TensorData | FolderData, device: torch.device) -> None:
        self.cfg, self.device, self.world = cfg, device, World.current()
        self.stream = Stream(cfg, data, device, self.world)
        self.data, self.batch, self.steps_per_epoch = self.stream.data, self.stream.batch, self.stream.steps_per_epoch
        self.model, self.net = prepare_model(initial_model(cfg, data, device), device, self.world)
        self.forward = CompiledOrEager(self.net) if cfg.compile else self.net
        self.entry = optimizers.entry(cfg.optim)
        self.base_lr = self.entry.scaled_lr(cfg.lr, self.batch)
        schedule = optimizers.Schedule(self.stream.warm_steps, cfg.epochs * self.steps_per_epoch)
        # fused (where the optimizer takes it): one kernel per step on CUDA; the same update rule
        self.optimizer = optimizers.build(
            cfg.optim,
            self.model,
            lr=self.base_lr,
            wd=cfg.wd,
            schedule=schedule,
            values=dict(cfg.optim_args),
            fused=device.type == "cuda",
        )
        self.train_mode()
        self.ema = recipe.ModelEMA(self.model)
        self.epoch = 0
        self.curve: list[dict] = []
        self.wall = 0.0
        self.status, self.diverged_epoch = "ok", None

    # --- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict:
        """The run's checkpoint, in the one per-trial layout (``trial_state``) that a population
        member's checkpoint shares, so a trial resumes alone or in any population."""
        names = optimizer_index_names(self.optimizer, self.model)
        saved = self.optimizer.state_dict()
        return trial_state(
            identity=json.dumps(self.cfg.identity(), sort_keys=True),
            epoch=self.epoch,
            model=self.model.state_dict(),
            ema=self.ema.module.state_dict(),
            optimizer={names[i]: s for i, s in saved["state"].items()},
            optimizer_groups=[{k: v for k, v in g.items() if k != "params"} for g in saved["param_groups"]],
            stream=self.stream.state(),
            curve=self.curve,
            wall=self.wall,
        )

    def save(self, folder: Path) -> None:
        save_checkpoint(self.state(), folder)

    def restore(self, folder: Path, quarantine: Path | None = None) -> bool:
        """Resume from the folder's checkpoint if it belongs to this config; False if none. A
        checkpoint a population wrote for a member that diverged resumes as diverged."""
        state = load_checkpoint(folder, json.dumps(self.cfg.identity(), sort_keys=True), quarantine=quarantine)
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(
            optimizer_state_dict(self.optimizer, self.model, state["optimizer"], state.get("optimizer_groups"))
        )
        self.stream.load_state(state)
        self.epoch, self.curve, self.wall = state["epoch"], list(state["curve"]), state["wall"]
        self.status, self.diverged_epoch = state.get("status", "ok"), state.get("diverged_epoch")
        return True

    # --- the optimizer's modes (Schedule-Free evaluates at other weights than it trains) -----------

    def train_mode(self) -> None:
        if self.entry.modes:
            self.optimizer.train()

    @contextlib.contextmanager
    def eval_weights(self):
        """The model at the weights the optimizer evaluates with, for evaluation and the EMA;
        back to its training weights after."""
        if self.entry.modes:
            self.optimizer.eval()
        try:
            yield
        finally:
            self.train_mode()

    # --- one epoch ---------------------------------------------------------------------------

    def train_epoch(self) -> float:
        """One pass over the training set; returns the mean loss (non-finite if it diverged)."""
        self.model.train()
        losses = torch.zeros((), device=self.device)
        for i, (x, y) in enumerate(self.stream.batches(self.epoch)):
            step = self.epoch * self.steps_per_epoch + i
            lr = self.base_lr * self.stream.lr_factor(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, target = self.stream.prepare(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            losses += self.gradients(self.stream.local(x), self.stream.local(target))
            self.optimizer.step()
            alpha = self.stream.ema_alpha(step)
            if alpha is not None:
                if not torch.isfinite(self.world.sum(losses)):  # every worker takes the same branch
                    return float("nan")
                if self.cfg.setting("ema"):  # an EMA that nothing evaluates is not kept
                    with self.eval_weights():
                        self.ema.update(self.model, alpha)
        return float(self.world.sum(losses)) / self.world.size / self.steps_per_epoch

    def gradients(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Accumulate this worker's gradient of the batch loss over ``accumulate`` equal micro-batches.

        The mean over equal micro-batches of their mean losses is the batch's mean loss, so the
        gradient is the unaccumulated one (BatchNorm aside: it normalizes each micro-batch).
        DDP averages the workers' gradients once, in the last micro-batch's backward.
        """
        k, total = self.cfg.accumulate, torch.zeros((), device=self.device)
        for j, (xm, tm) in enumerate(zip(x.chunk(k), target.chunk(k), strict=True)):
            last = j == k - 1
            sync = contextlib.nullcontext() if last or self.net is self.model else self.net.no_sync()
            with sync:
                with self.stream.autocast():
                    loss = recipe.soft_cross_entropy(self.forward(xm), tm)
                (loss / k if k > 1 else loss).backward()
            total += loss.detach() / k
        return total

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> float:
        """Top-1 error (percent) on the test split (the model's evaluation weights: ``eval_weights``)."""
        with self.eval_weights():
            return self._evaluate(model)

    def _evaluate(self, model: torch.nn.Module) -> float:
        model.eval()
        wrong = torch.zeros((), device=self.device, dtype=torch.long)
        total = torch.zeros((), device=self.device, dtype=torch.long)
        for x, y in self.stream.test_batches():  # this worker's share
            with self.stream.autocast():
                pred = model(x).argmax(-1)
            wrong += (pred != y).sum()
            total += y.numel()
        return 100.0 * float(self.world.sum(wrong)) / float(self.world.sum(total))


def trial_state(*, identity: str, epoch: int, model: dict, ema: dict, optimizer: dict, stream: dict, curve: list,
                wall: float, status: str = "ok", diverged_epoch: int | None = None,
                optimizer_groups: list[dict] | None = None) -> dict:  # fmt: skip
    """One trial's checkpoint: weights and EMA as state dicts, the optimizer's state per parameter
    *name* (not torch's positional index, which depends on how groups were built), its groups'
    settings (where an optimizer keeps state there: Schedule-Free's step count and mode), the
    data stream's generators, and the curve so far. A single run and each population member
    write this same layout, so a trial continues from its last epoch whatever pack it resumes in."""
    return {
        "format": CHECKPOINT_FORMAT,
        "identity": identity,
        "epoch": epoch,
        "model": model,
        "ema": ema,
        "optimizer": optimizer,
        "optimizer_groups": optimizer_groups,
        **stream,
        "curve": curve,
        "wall": wall,
        "status": status,
        "diverged_epoch": diverged_epoch,
    }


def optimizer_index_names(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[int, str]:
    """torch's state-dict index of each parameter (its position across the groups) -> its name."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {i: name_of[id(p)] for i, p in enumerate(params)}


def optimizer_state_dict(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, by_name: dict, groups: list[dict] | None = None
) -> dict:
    """The optimizer's state dict with its per-parameter state taken from a checkpoint keyed by
    name, and its groups' saved settings where the checkpoint has them; torch's own
    ``load_state_dict`` then places each value (device, dtype, CPU steps)."""
    current = optimizer.state_dict()
    if "param_groups" in by_name:  # a checkpoint written before per-name states: torch's own layout
        return by_name
    index = {n: i for i, n in optimizer_index_names(optimizer, model).items()}
    param_groups = current["param_groups"]
    if groups is not None and len(groups) == len(param_groups):
        param_groups = [
            {**g, **{k: v for k, v in saved.items() if k not in DEVICE_SETTINGS}}
            for saved, g in zip(groups, param_groups, strict=True)
        ]
    return {"state": {index[n]: s for n, s in by_name.items()}, "param_groups": param_groups}


# Group settings that say how a step runs on this device, not what the optimizer has learned: a
# checkpoint from a GPU resumes on a CPU with the CPU's.
DEVICE_SETTINGS = {"params", "fused", "foreach", "capturable", "differentiable"}


def save_checkpoint(state: dict, folder: Path) -> None:
    """Write atomically and durably: fsynced under a temporary name, then renamed into place, so
    a crash mid-write leaves the previous checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    fsync_file(tmp)
    os.replace(tmp, folder / CHECKPOINT)


def load_checkpoint(folder: Path, identity: str, *, quarantine: Path | None = None) -> dict | None:
    """The folder's checkpoint (on the CPU; loading copies it where it belongs) if it belongs to
    ``identity``; None if there is none or it is another run's. One that cannot be read is set
    aside in ``quarantine`` (default: ``quarantine/`` beside the folder) with one line, and the
    trial restarts from epoch 0: a torn or corrupt file must never fail a trial for good."""
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "identity" not in state or "epoch" not in state:
            raise ValueError("not a checkpoint")
    except OSError:
        raise  # a transient read error (NFS): the attempt fails, and its retry reads the file again
    except Exception as e:  # what a torn or overwritten file raises varies (EOF, the zip reader, the unpickler)
        aside = set_aside(path, quarantine or folder.parent / "quarantine")
        print(
            f"unreadable checkpoint {path} ({type(e).__name__}) set aside in {aside}; "
            f"{folder.name} restarts from epoch 0",
            file=sys.stderr,
            flush=True,
        )
        return None
    return state if state["identity"] == identity else None


def train(
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    data: TensorData | FolderData | None = None,
    quarantine: str | os.PathLike | None = None,
) -> TrainResult:
    """Run (or resume) one training run; divergence ends it as ``diverged`` with error 100.

    ``quarantine``: where an unreadable checkpoint is set aside (the store passes its sweep's
    ``quarantine/``; default: beside the checkpoint folder)."""
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = datetime.now(UTC)
    run = Run(cfg, data if data is not None else load_data(cfg), device)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    if folder is not None:
        run.restore(folder, Path(quarantine) if quarantine else None)
    resumed_from = run.epoch
    status, diverged_epoch = run.status, run.diverged_epoch
    while run.epoch < cfg.epochs and status == "ok":
        t0 = time.perf_counter()
        train_loss = run.train_epoch()
        train_seconds = time.perf_counter() - t0
        run.epoch += 1
        diverged = not math.isfinite(train_loss)
        raw = 100.0 if diverged else run.evaluate(run.model)
        point = {
            "epoch": run.epoch,
            "lr": run.optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "top1_err": 100.0 if diverged else (run.evaluate(run.ema.module) if cfg.setting("ema") else raw),
            "top1_err_raw": raw,
        }
        run.wall += time.perf_counter() - t0
        point.update(wall_s=run.wall, images_per_s=run.steps_per_epoch * run.batch / train_seconds)
        run.curve.append(point)
        if on_epoch is not None:
            on_epoch(point)
        if diverged:
            status, diverged_epoch = "diverged", run.epoch
            break
        if folder is not None and run.world.rank == 0:
            run.save(folder)
    row = result_row(
        cfg,
        curve=run.curve,
        data=run.data,
        batch=run.batch,
        wall=run.wall,
        status=status,
        diverged_epoch=diverged_epoch,
        started=started,
        device=device,
    )
    row.update(resumed_from_epoch=resumed_from, workers=run.world.size, accumulate=cfg.accumulate)
    row["param_groups"] = json.dumps(optimizers.group_summary(run.optimizer, cfg.optim))
    return TrainResult(row, run.curve)


def result_row(
    cfg: TrainConfig,
    *,
    curve: list[dict],
    data: TensorData | FolderData,
    batch: int,
    wall: float,
    status: str,
    diverged_epoch: int | None,
    started: datetime,
    device: torch.device,
) -> dict:
    """The trial row (docs/design.md, "The trial row") (columns: ``store.schema``)."""
    last = curve[-1] if curve else {}
    cost = models.complexity(
        cfg.model,
        num_classes=data.num_classes,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        in_chans=data.channels,
    )
    diverged = status == "diverged"
    return {
        **schema.plan_of_config(asdict(cfg), models.family(cfg.model)),
        "stem": models.stem(cfg.model),
        "batch_size": batch,
        "status": status,
        "top1_err": 100.0 if diverged else last.get("top1_err", 100.0),
        "top1_err_raw": 100.0 if diverged else last.get("top1_err_raw", 100.0),
        "train_loss": last.get("train_loss", float("nan")),
        "diverged_epoch": diverged_epoch,
        "completed_epochs": len(curve) - (1 if diverged else 0),
        "wall_s": wall,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "simulated_gpu": cfg.simulated_gpu,
        **cost,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "version": VERSION,
        "error": None,
        "lr_scaling": optimizers.entry(cfg.optim).lr_scaling,
    }
