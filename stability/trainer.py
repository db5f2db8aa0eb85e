"""The one shared trainer: a TrainConfig in, a result row and a per-epoch curve out.

Every sweep trial runs through ``train``. Randomness comes from two generators seeded from
the config (one on the CPU for order and mixing, one on the device for augmentation); both
are checkpointed at every epoch end with the model, EMA and optimizer, so an interrupted run
resumes to the same result as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

import models
from analysis.paper import optimum
from stability import augment, recipe
from stability.data import DATASETS, FolderData, TensorData, load_folder, load_small
from stability.errors import UserError

VERSION = "0.1.0"
CHECKPOINT = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``lr`` is normalized to batch 2048 (Table 4); None takes Table 4's optimum."""

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
    workers: int = 8
    threads: int | None = None
    sweep: str = "train"
    trial_id: str = ""
    index: int = 0

    def resolved(self) -> TrainConfig:
        """Fill in the Table 4 optimum, the patch size and a trial id; check every field."""
        if self.model not in models.names():
            raise UserError(f"unknown model {self.model!r}; see `stability models`")
        if self.optim not in ("adamw", "sgd"):
            raise UserError(f"unknown optimizer {self.optim!r}; choose adamw or sgd")
        if self.dataset not in DATASETS:
            raise UserError(f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)}")
        lr0, wd0 = optimum(self.model, self.optim)
        cfg = replace(
            self,
            lr=self.lr if self.lr is not None else lr0,
            wd=self.wd if self.wd is not None else wd0,
            patch_size=self.patch_size or models.default_patch_size(self.image_size),
        )
        for name in ("lr", "epochs", "batch_size", "image_size"):
            if not getattr(cfg, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
        if cfg.wd < 0 or not math.isfinite(cfg.wd) or not math.isfinite(cfg.lr):
            raise UserError(f"--wd must be a finite number >= 0 and --lr finite, got lr={cfg.lr} wd={cfg.wd}")
        return cfg if cfg.trial_id else replace(cfg, trial_id=default_trial_id(cfg))

    def identity(self) -> dict:
        """The fields that define the result (not where or how fast it runs)."""
        skip = {"data_dir", "device", "workers", "threads", "trial_id", "sweep", "index"}
        return {k: v for k, v in asdict(self).items() if k not in skip}


def default_trial_id(cfg: TrainConfig) -> str:
    digest = hashlib.sha1(json.dumps(cfg.identity(), sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.model}-{cfg.optim}-{digest}"


@dataclass
class TrainResult:
    row: dict
    curve: list[dict] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is visible")
    if name not in ("cpu", "cuda"):
        raise UserError(f"unknown device {name!r}; choose auto, cpu or cuda")
    return torch.device(name)


def load_data(cfg: TrainConfig) -> TensorData | FolderData:
    if cfg.dataset == "imagenet":
        return load_folder(cfg.data_dir, cfg.image_size, cfg.seed, cfg.workers)
    return load_small(cfg.dataset, cfg.image_size, cfg.data_dir)


class Run:
    """The state of one training run, with the steps of the recipe as methods."""

    def __init__(self, cfg: TrainConfig, data: TensorData | FolderData, device: torch.device) -> None:
        self.cfg, self.data, self.device = cfg, data, device
        if isinstance(data, TensorData):
            self.data = data.to(device)
        mean, std = (
            self.data.mean_std()
            if isinstance(data, TensorData)
            else (torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225]))
        )
        self.mean, self.std = mean.view(1, -1, 1, 1).to(device), std.view(1, -1, 1, 1).to(device)
        self.batch = min(cfg.batch_size, data.train_size)
        self.steps_per_epoch = data.train_size // self.batch
        self.warm_steps = round(recipe.warmup_epochs(cfg.epochs) * self.steps_per_epoch)
        self.ema_period = min(recipe.EMA_PERIOD, self.steps_per_epoch)
        torch.manual_seed(cfg.seed)
        self.model = models.create(
            cfg.model,
            num_classes=data.num_classes,
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            in_chans=data.channels,
        ).to(device)
        self.base_lr = recipe.scaled_lr(cfg.lr, self.batch)
        self.optimizer = recipe.make_optimizer(self.model, cfg.optim, self.base_lr, cfg.wd)
        self.ema = recipe.ModelEMA(self.model)
        self.gen_cpu = torch.Generator().manual_seed(cfg.seed)
        self.gen_dev = torch.Generator(device=device).manual_seed(cfg.seed + 1)
        self.epoch = 0
        self.curve: list[dict] = []
        self.wall = 0.0

    # --- checkpoints -------------------------------------------------------------------------

    def state(self) -> dict:
        return {
            "identity": json.dumps(self.cfg.identity(), sort_keys=True),
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "gen_cpu": self.gen_cpu.get_state(),
            "gen_dev": self.gen_dev.get_state(),
            "curve": self.curve,
            "wall": self.wall,
        }

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{CHECKPOINT}.{os.getpid()}.tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, folder / CHECKPOINT)

    def restore(self, folder: Path) -> bool:
        """Resume from the folder's checkpoint if it belongs to this config; False if none."""
        path = folder / CHECKPOINT
        if not path.exists():
            return False
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state["identity"] != json.dumps(self.cfg.identity(), sort_keys=True):
            return False
        self.model.load_state_dict(state["model"])
        self.ema.module.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        # Generator states are CPU byte tensors, for CUDA generators too (map_location moved them)
        self.gen_cpu.set_state(state["gen_cpu"].cpu())
        self.gen_dev.set_state(state["gen_dev"].cpu())
        self.epoch, self.curve, self.wall = state["epoch"], list(state["curve"]), state["wall"]
        return True

    # --- one epoch ---------------------------------------------------------------------------

    def batches(self):
        """uint8 image batches on the device with their labels, in this epoch's seeded order."""
        order = torch.randperm(self.data.train_size, generator=self.gen_cpu)[: self.steps_per_epoch * self.batch]
        if isinstance(self.data, FolderData):
            self.data.train.epoch = self.epoch
            for x, y in self.data.loader("train", self.batch, order):
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
        x = (x - self.mean) / self.std
        target = recipe.smooth_one_hot(y, self.data.num_classes)
        if self.cfg.mixing:
            x, target, _ = augment.mix(x, target, self.gen_cpu)
        return x, target

    def train_epoch(self) -> float:
        """One pass over the training set; returns the mean loss (non-finite if it diverged)."""
        self.model.train()
        losses = torch.zeros((), device=self.device)
        amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        for i, (x, y) in enumerate(self.batches()):
            step = self.epoch * self.steps_per_epoch + i
            lr = recipe.lr_at(step, base_lr=self.base_lr, steps_per_epoch=self.steps_per_epoch, epochs=self.cfg.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            x, target = self.prepare(x, y)
            with amp:
                loss = recipe.soft_cross_entropy(self.model(x), target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses += loss.detach()
            if (step + 1) % self.ema_period == 0:
                if not torch.isfinite(losses):
                    return float("nan")
                alpha = recipe.ema_alpha(
                    batch_size=self.batch,
                    epochs=self.cfg.epochs,
                    train_size=self.data.train_size,
                    in_warmup=step < self.warm_steps,
                    period=self.ema_period,
                )
                self.ema.update(self.model, alpha)
        return float(losses) / self.steps_per_epoch

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module) -> float:
        """Top-1 error (percent) on the test split."""
        model.eval()
        wrong = torch.zeros((), device=self.device, dtype=torch.long)
        total = 0
        amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")
        for x, y in self.test_batches():
            with amp:
                pred = model((x.float() / 255 - self.mean) / self.std).argmax(-1)
            wrong += (pred != y).sum()
            total += y.numel()
        return 100.0 * float(wrong) / total

    def test_batches(self, size: int = 1024):
        if isinstance(self.data, FolderData):
            for x, y in self.data.loader("test", size):
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        for i in range(0, self.data.test_x.shape[0], size):
            yield self.data.test_x[i : i + size], self.data.test_y[i : i + size]


def train(
    cfg: TrainConfig,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    data: TensorData | FolderData | None = None,
) -> TrainResult:
    """Run (or resume) one training run; divergence ends it as ``diverged`` with error 100."""
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = datetime.now(timezone.utc)
    run = Run(cfg, data if data is not None else load_data(cfg), device)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    if folder is not None:
        run.restore(folder)
    resumed_from = run.epoch
    status, diverged_epoch = "ok", None
    while run.epoch < cfg.epochs:
        t0 = time.perf_counter()
        train_loss = run.train_epoch()
        train_seconds = time.perf_counter() - t0
        run.epoch += 1
        diverged = not math.isfinite(train_loss)
        point = {
            "epoch": run.epoch,
            "lr": run.optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "top1_err": 100.0 if diverged else run.evaluate(run.ema.module),
            "top1_err_raw": 100.0 if diverged else run.evaluate(run.model),
        }
        run.wall += time.perf_counter() - t0
        point.update(wall_s=run.wall, images_per_s=run.steps_per_epoch * run.batch / train_seconds)
        run.curve.append(point)
        if on_epoch is not None:
            on_epoch(point)
        if diverged:
            status, diverged_epoch = "diverged", run.epoch
            break
        if folder is not None:
            run.save(folder)
    row = result_row(cfg, run, status, diverged_epoch, started, device)
    row["resumed_from_epoch"] = resumed_from
    return TrainResult(row, run.curve)


def result_row(cfg: TrainConfig, run: Run, status: str, diverged_epoch: int | None, started, device) -> dict:
    """The trial row of DESIGN section 6."""
    last = run.curve[-1] if run.curve else {}
    cost = models.complexity(
        cfg.model,
        num_classes=run.data.num_classes,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        in_chans=run.data.channels,
    )
    diverged = status == "diverged"
    return {
        "sweep": cfg.sweep,
        "trial_id": cfg.trial_id,
        "index": cfg.index,
        "model": cfg.model,
        "family": models.family(cfg.model),
        "stem": models.stem(cfg.model),
        "optimizer": cfg.optim,
        "lr": cfg.lr,
        "wd": cfg.wd,
        "epochs": cfg.epochs,
        "batch_size": run.batch,
        "dataset": cfg.dataset,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "seed": cfg.seed,
        "status": status,
        "top1_err": 100.0 if diverged else last.get("top1_err", 100.0),
        "top1_err_raw": 100.0 if diverged else last.get("top1_err_raw", 100.0),
        "train_loss": last.get("train_loss", float("nan")),
        "diverged_epoch": diverged_epoch,
        "completed_epochs": len(run.curve) - (1 if diverged else 0),
        "wall_s": run.wall,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        **cost,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "version": VERSION,
        "error": None,
    }
