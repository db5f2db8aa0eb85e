"""Data parallelism for one run: shards of the global batch across workers (PyTorch DDP).

The process group comes from the launcher (Ray Train's TorchTrainer in ``sweeps.workers``);
this module only reads it. Without one, every helper is the identity, so the single-process
trainer runs the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @staticmethod
    def current() -> World:
        if dist.is_available() and dist.is_initialized():
            return World(dist.get_rank(), dist.get_world_size())
        return World()

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous share of the rows of a global batch."""
        if self.size == 1:
            return x
        n = x.shape[0] // self.size
        return x[self.rank * n : (self.rank + 1) * n]

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over workers (a new tensor on every worker)."""
        if self.size == 1:
            return x
        x = x.clone()
        dist.all_reduce(x)
        return x


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the shards of every worker.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this one runs on any backend (gloo on CPU)
    through the autograd-aware all_reduce, and is used where torch's cannot be. Two passes
    (mean, then squared deviations) keep the variance as accurate as a single worker's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        count = x.numel() // x.shape[1] * dist.get_world_size()
        mean = all_reduce(x.sum((0, 2, 3))) / count
        centred = x - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum((0, 2, 3))) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * count / max(1, count - 1), self.momentum)
        scale = self.weight / torch.sqrt(var + self.eps)
        return centred * scale[None, :, None, None] + self.bias[None, :, None, None]


def prepare_model(model: nn.Module, device: torch.device, world: World) -> tuple[nn.Module, nn.Module]:
    """(model, net): the model with BN synchronized across workers, and what the training step
    calls (the model itself, or its DDP wrapper when there are several workers)."""
    if world.size == 1:
        return model, model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model, nn.parallel.DistributedDataParallel(model, device_ids=[device.index])
    swap_batchnorm(model, SyncBatchNorm2d)
    return model, nn.parallel.DistributedDataParallel(model)


def swap_batchnorm(model: nn.Module, cls: type[nn.BatchNorm2d]) -> None:
    """Give every plain BatchNorm2d another forward in place; weights, buffers and keys stay."""
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = cls
