"""Sweep wall time: the same N trials x E epochs one at a time, packed, and as populations.

One at a time: each trial has the whole device (one GPU, or every core). Concurrent (GPU
only): ``pack`` trials share the GPU as Ray fractional GPUs, each in its own process.
Population: ``pack`` trials train as one batched model in one process
(``stability.population``). Every side runs through the sweep engine on Ray Tune, in a fresh
results root, so each wall time includes what a user waits for: Ray start (unless this process
has already joined a Ray, which the sides then share), data loading, training, evaluation and
the result files.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace

from store import Store
from sweeps import cluster, engine, plan


def timed_sweep(manifest, resources: engine.Resources) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        with cluster.connect(None):
            placement = engine.place(resources, Store(root), remote=False)
            engine.run(Store(root), "bench", manifest, resources, placement)
        return time.perf_counter() - start


def run(
    model: str, *, trials: int, epochs: int, scale: plan.Scale, gpu: bool, pack: int, data_dir: str | None = None
) -> dict:
    manifest = plan.edf_manifest("bench", model, "adamw", replace(scale, epochs=epochs), trials=trials, seed=0)
    whole = engine.Resources(
        cpus_per_trial=1 if gpu else os.cpu_count() or 1, gpus_per_trial=1.0 if gpu else 0.0, data_dir=data_dir, pack=1
    )
    sides = {"one_at_a_time": whole, "population": replace(whole, pack=pack)}
    if gpu:
        sides["concurrent"] = replace(whole, gpus_per_trial=1.0 / pack)
    seconds = {name: timed_sweep(manifest, resources) for name, resources in sides.items()}
    out = {"model": model, "trials": trials, "epochs": epochs, "pack": pack, "dataset": scale.dataset}
    out.update({f"{name}_s": s for name, s in seconds.items()})
    out.update(
        {f"{name}_ratio": seconds["one_at_a_time"] / s for name, s in seconds.items() if name != "one_at_a_time"}
    )
    return out
