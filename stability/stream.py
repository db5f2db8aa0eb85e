"""The data side of a run: seeded batch order, augmentation, the schedule's clock and the test split."""

from __future__ import annotations

import torch

from stability import augment, optimizers, recipe
from stability.config import TrainConfig
from stability.data import FolderData, TensorData
from stability.distributed import World
from stability.errors import UserError


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
