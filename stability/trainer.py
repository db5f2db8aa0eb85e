"""The one shared trainer: a TrainConfig in, a result row and a per-epoch curve out.

Every sweep trial runs through ``train``. Randomness comes from two generators seeded from
the config (one on the CPU for order and mixing, one on the device for augmentation); both
are checkpointed at every epoch end with the model, EMA and optimizer, so an interrupted run
resumes to the same result as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

import models
from stability import optimizers, recipe
from stability.checkpoint import (
    load_checkpoint,
    optimizer_index_names,
    optimizer_state_dict,
    save_checkpoint,
    trial_state,
)
from stability.config import TrainConfig
from stability.data import FolderData, TensorData, load_dataset
from stability.distributed import World, prepare_model
from stability.errors import UserError
from stability.stream import Stream
from store import schema

try:  # the installed package's version (pyproject's), recorded in every trial row
    VERSION = importlib.metadata.version("edf-sweep-engine")
except importlib.metadata.PackageNotFoundError:  # a source tree run without installing it
    VERSION = "unknown"


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


def initial_model(cfg: TrainConfig, data: TensorData | FolderData, device: torch.device) -> torch.nn.Module:
    """The model at its seeded initialization: the same weights for every trial of a sweep."""
    torch.manual_seed(cfg.seed)
    return models.create(cfg.model, **model_dims(cfg, data)).to(device)


def model_dims(cfg: TrainConfig, data: TensorData | FolderData) -> dict:
    """What a model is built for: the data's classes and channels at the run's image and patch size."""
    return dict(
        num_classes=data.num_classes, image_size=cfg.image_size, patch_size=cfg.patch_size, in_chans=data.channels
    )


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
        fused = device.type == "cuda"
        self.optimizer = optimizers.build(
            cfg.optim,
            self.model,
            lr=self.base_lr,
            wd=cfg.wd,
            schedule=schedule,
            values=dict(cfg.optim_args),
            fused=fused,
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
            model.eval()
            wrong = torch.zeros((), device=self.device, dtype=torch.long)
            total = torch.zeros((), device=self.device, dtype=torch.long)
            for x, y in self.stream.test_batches():  # this worker's share
                with self.stream.autocast():
                    pred = model(x).argmax(-1)
                wrong += (pred != y).sum()
                total += y.numel()
            return 100.0 * float(self.world.sum(wrong)) / float(self.world.sum(total))


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
    cost = models.complexity(cfg.model, **model_dims(cfg, data))
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
        "num_classes": data.num_classes,
        **cost,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "version": VERSION,
        "error": None,
        "lr_scaling": optimizers.entry(cfg.optim).lr_scaling,
    }
