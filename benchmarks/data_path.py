"""The data path: real data with the full augmentation against synthetic tensors without it.

Both sides run the trainer's own training epoch (``stability.trainer.Run``) with the same
model, batch and device, so the ratio is the share of throughput the data path keeps.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from stability.config import TrainConfig
from stability.data import load_small, load_synthetic
from stability.trainer import Run


def epoch_seconds(run, device: torch.device) -> float:
    """Seconds of one training epoch (``Run`` or ``Population``), after a warm-up epoch."""
    run.train_epoch()  # warm-up epoch: allocator, kernels, caches
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run.train_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def epoch_throughput(cfg: TrainConfig, data, device: torch.device) -> float:
    run = Run(cfg.resolved(), data, device)
    return run.steps_per_epoch * run.batch / epoch_seconds(run, device)


def run(
    model: str,
    *,
    dataset: str,
    image_size: int,
    batch_size: int,
    device: torch.device,
    data_dir: str | None = None,
    limit: int = 4096,
) -> dict:
    real = load_small(dataset, image_size, data_dir)
    real.train_x, real.train_y = real.train_x[:limit], real.train_y[:limit]
    synthetic = load_synthetic(image_size, classes=real.num_classes, train=real.train_size, test=64)
    synthetic.train_x = synthetic.train_x[:, : real.channels]
    synthetic.test_x = synthetic.test_x[:, : real.channels]
    cfg = TrainConfig(
        model, "adamw", epochs=10, dataset=dataset, image_size=image_size, batch_size=batch_size, device=device.type
    )
    full = epoch_throughput(cfg, real, device)
    bare = epoch_throughput(replace(cfg, autoaugment=False, mixing=False), synthetic, device)
    return {
        "model": model,
        "dataset": dataset,
        "image_size": image_size,
        "batch_size": batch_size,
        "device": str(device),
        "real_augmented_images_per_s": full,
        "synthetic_images_per_s": bare,
        "ratio": full / bare,
    }
