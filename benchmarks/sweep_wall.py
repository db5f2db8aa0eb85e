"""Sweep wall time: the same N trials x E epochs packed on the device against one at a time.

Packed: several trials share the device at once (fractional GPUs, or one CPU core each).
One at a time: each trial has the whole device (one GPU, or every core). Both sides run
through the sweep engine on Ray Tune, each in a fresh results root.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import replace

from sweeps import engine, plan
from sweeps.store import Store


def timed_sweep(manifest, resources: engine.Resources) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        engine.run(Store(root), "bench", manifest, resources)
        return time.perf_counter() - start


def run(model: str, *, trials: int, epochs: int, scale: plan.Scale, gpu: bool, pack: int) -> dict:
    manifest = plan.edf_manifest("bench", model, "adamw", replace(scale, epochs=epochs), trials=trials, seed=0)
    if gpu:
        packed = engine.Resources(cpus_per_trial=1, gpus_per_trial=1.0 / pack)
        alone = engine.Resources(cpus_per_trial=1, gpus_per_trial=1.0)
    else:
        cores = os.cpu_count() or 1
        packed = engine.Resources(cpus_per_trial=max(1, cores // pack))
        alone = engine.Resources(cpus_per_trial=cores)
    packed_s = timed_sweep(manifest, packed)
    alone_s = timed_sweep(manifest, alone)
    return {
        "model": model,
        "trials": trials,
        "epochs": epochs,
        "pack": pack,
        "packed_s": packed_s,
        "one_at_a_time_s": alone_s,
        "ratio": alone_s / packed_s,
    }
