"""One trial on several workers: Ray Train's TorchTrainer runs the shared trainer data-parallel.

Ray Train starts the workers together in one placement group (all of them or none), sets up
the process group (NCCL on GPUs, gloo on CPUs and on simulated GPUs), and restarts the group from the last
checkpoint when a worker dies. Each worker runs ``stability.trainer.train`` on its shard of
every global batch (``stability.distributed``); worker 0 saves the checkpoints and hands the
result back through one file, so the caller stores one result and one curve per trial.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from stability.config import TrainConfig
from stability.errors import UserError
from stability.trainer import TrainResult
from store.files import write_atomic
from sweeps.faults import Faults
from sweeps.guard import Guard, guarded

RESULT = "result.json"


def worker_loop(config: dict) -> None:
    """What each Ray Train worker runs."""
    import ray.train

    from stability.trainer import train
    from sweeps.cluster import hide_gpus_unless_given, trial_device
    from sweeps.faults import NONE, worker_death

    hide_gpus_unless_given()
    device, simulated = trial_device(ray.get_gpu_ids())
    cfg = replace(TrainConfig(**config["cfg"]), device=device, simulated_gpu=simulated)
    folder = Path(config["checkpoint_dir"])
    rank = ray.train.get_context().get_world_rank()
    sweep_dir = Path(config["sweep_dir"])
    checked = guarded(lambda point: None, config.get("guard"))  # every worker stops if the driver lost the sweep
    inject = config.get("inject") or NONE
    on_epoch = worker_death(inject, [cfg.trial_id], sweep_dir, checked) if rank == 0 else checked
    result = train(cfg, checkpoint_dir=folder, on_epoch=on_epoch, quarantine=sweep_dir / "quarantine")
    if rank == 0:
        payload = json.dumps({"row": result.row, "curve": result.curve})
        write_atomic(folder / RESULT, lambda tmp: tmp.write_text(payload))


def train_with_workers(
    cfg: TrainConfig,
    *,
    workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    checkpoint_dir: Path,
    sweep_dir: Path,
    max_failures: int = 2,
    guard: Guard | None = None,
    inject: Faults | None = None,
) -> TrainResult:
    """Train one config on ``workers`` workers of the running Ray cluster; resumes from the checkpoint."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from sweeps.cluster import simulated_gpus

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    (checkpoint_dir / RESULT).unlink(missing_ok=True)
    gpu = gpus_per_worker > 0
    per_worker = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpu else {})}
    trainer = TorchTrainer(
        worker_loop,
        train_loop_config={
            "cfg": asdict(cfg),
            "checkpoint_dir": str(checkpoint_dir.resolve()),
            "sweep_dir": str(sweep_dir.resolve()),
            "guard": guard,
            "inject": inject,  # sweeps.faults.Faults of the driver, for the tests
        },
        # Named, not left to Ray Train, which picks NCCL for any worker holding a GPU resource:
        # simulated GPUs train on CPUs, where only gloo exists.
        torch_config=TorchConfig(backend="nccl" if gpu and not simulated_gpus() else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu, resources_per_worker=per_worker),
        run_config=RunConfig(
            name=f"train-{cfg.trial_id}",
            storage_path=str((sweep_dir / ".train").resolve()),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    trainer.fit()
    payload = json.loads((checkpoint_dir / RESULT).read_text())
    return TrainResult(payload["row"], payload["curve"])


def check_capacity(workers: int, cpus_per_worker: float, gpus_per_worker: float) -> None:
    """Refuse, in one line, a trial that the whole cluster could never place (Ray would wait forever)."""
    import ray

    total = ray.cluster_resources()
    need = {"CPU": workers * cpus_per_worker, "GPU": workers * gpus_per_worker}
    have = {k: total.get(k, 0.0) for k in need}
    if any(have[k] < need[k] for k in need):
        split = f" ({workers} workers x {gpus_per_worker:g} GPUs, {cpus_per_worker:g} CPUs)" if workers > 1 else ""
        raise UserError(
            f"one trial needs {need['GPU']:g} GPUs and {need['CPU']:g} CPUs{split}, but the Ray cluster has "
            f"{have['GPU']:g} GPUs and {have['CPU']:g} CPUs in all"
        )
