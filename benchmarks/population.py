"""Training throughput of a population of K trials beside one trial, on the same device and data.

All sides run the trainers' own epochs (``Run.train_epoch`` and ``Population.train_epoch``)
with the full augmentation, so each ratio is what packing K trials into one batched model
gains over training them one after another, per image of every trial. A ViT population is
measured twice: under ``torch.func.vmap`` and as packed kernels (``stability.packed``).
"""

from __future__ import annotations

import torch

from benchmarks.data_path import epoch_seconds
from stability import packed
from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.population import Population
from stability.trainer import Run


def run(model: str, *, image_size: int, batch_size: int, pack: int, device: torch.device, train: int = 8192) -> dict:
    data = load_synthetic(image_size, train=train, test=64)
    base = TrainConfig(
        model, "adamw", epochs=10, dataset="synthetic", image_size=image_size, batch_size=batch_size, device=device.type
    ).resolved()
    cfgs = [
        TrainConfig(**{**base.__dict__, "lr": base.lr * (1 + i / pack), "trial_id": f"m{i}", "index": i})
        for i in range(pack)
    ]
    single = Run(base, data, device)
    images = single.steps_per_epoch * single.batch
    one = images / epoch_seconds(single, device)
    kinds = ("vmap", "packed") if packed.supports(single.model) else ("vmap",)  # CNNs: vmap only
    del single
    result = {
        "model": model,
        "image_size": image_size,
        "batch_size": batch_size,
        "pack": pack,
        "device": str(device),
        "single_images_per_s": one,
    }
    for kernels in kinds:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        population = Population(cfgs, data, device, pack_kernels=kernels == "packed")
        ips = pack * images / epoch_seconds(population, device)
        del population
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        result[kernels] = {"images_per_s": ips, "ratio": ips / one, "peak_gib": peak}
    return result
