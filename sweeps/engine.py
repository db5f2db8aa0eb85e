"""Run a manifest's missing trials on Ray Tune and store every result.

The driver writes the manifest before any trial starts, then hands Tune only the trials that
have no readable result. Each trial trains through ``stability.trainer.train``, reports every
epoch to Tune, checkpoints every epoch under the store, and writes its own result files
atomically when it ends; a trial that raises is retried from its checkpoint up to
``max_failures`` times, then recorded as ``failed`` with its error text by the driver.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from stability.errors import UserError
from sweeps.plan import MANIFEST_IDENTITY, default_pack, same_definition
from sweeps.store import Store

RAY_QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage reports: the cluster may be closed to the network
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # our store is the record; skip Tune's CSV/JSON/TB files
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_RESULT_BUFFER_LENGTH": "0",
    "RAY_DEDUP_LOGS": "0",
}


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    address: str | None = None
    data_dir: str | None = None
    pack: int | None = None  # trials per population (stability.population); None: plan.default_pack
    workers: int = 0  # >= 1: each trial runs on that many Ray Train workers (cpus_per_trial is per worker)
    gpus_per_worker: float = 0.0
    accumulate: int = 1  # micro-batches per step (gradient accumulation)
    compile: bool = False  # torch.compile single trials' training steps


def prepare_manifest(store: Store, sweep: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """Write the manifest if the sweep is new; refuse a different definition under the same name."""
    store.check_writable()
    old = store.read_manifest(sweep)
    if old is None:
        store.write_manifest(sweep, manifest)
        return manifest
    if not same_definition(old, manifest):
        raise UserError(
            f"sweep {sweep!r} already exists in {store.root} with another definition; "
            "rerun it with the same flags or choose a new --name"
        )
    return old


def pending_trials(store: Store, sweep: str, manifest: pd.DataFrame, log=print) -> pd.DataFrame:
    """Manifest rows without a readable result; unreadable result files are set aside."""
    done, bad = store.finished(sweep)
    for path in bad:
        log(f"unreadable result {path} set aside in {store.quarantine(path)}; its trial will run again")
    return manifest[~manifest["trial_id"].isin(done)]


def check_address(address: str) -> None:
    """Fail fast on an unreachable cluster instead of waiting out Ray's connect timeout."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except (OSError, ValueError):
        raise UserError(f"cannot reach a Ray cluster at {address!r} (expected HOST:PORT of a running head)") from None


# Ray's single-machine mode: without it, Ray resolves 127.0.0.1 back to the machine's
# routable address and its gRPC servers listen on every interface.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def configure_ray_env(local: bool) -> None:
    """Environment Ray reads when it is first imported (and its processes inherit)."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if local:
        os.environ.update(LOOPBACK_ENV)


def start_ray(resources: Resources):
    configure_ray_env(local=not resources.address)
    import ray  # first imported here by the CLI, after the variables above are set

    common = {"logging_level": logging.ERROR, "log_to_driver": False, "ignore_reinit_error": True}
    if resources.address:
        return ray.init(address=resources.address, **common)
    return ray.init(
        include_dashboard=False,
        _node_ip_address="127.0.0.1",  # listen on loopback only
        **common,
    )


def trial_config(row: dict, sweep: str, resources: Resources):
    from stability.trainer import TrainConfig

    return TrainConfig(
        model=row["model"],
        optim=row["optimizer"],
        lr=float(row["lr"]),
        wd=float(row["wd"]),
        epochs=int(row["epochs"]),
        dataset=row["dataset"],
        data_dir=resources.data_dir,
        batch_size=int(row["batch_size"]),
        image_size=int(row["image_size"]),
        patch_size=int(row["patch_size"]),
        seed=int(row["seed"]),
        device="cuda" if resources.gpus_per_trial > 0 or resources.gpus_per_worker > 0 else "cpu",
        threads=max(1, int(resources.cpus_per_trial)),
        accumulate=resources.accumulate,
        compile=resources.compile,
        sweep=sweep,
        trial_id=row["trial_id"],
        index=int(row["index"]),
    )


def pack_ids(config: dict) -> list[str]:
    """The manifest trial ids a Tune trial trains: one, or a population of several."""
    return config["pack"].split(",")


def pack_checkpoint(store: Store, sweep: str, ids: list[str]) -> Path:
    key = ids[0] if len(ids) == 1 else f"pack-{len(ids)}-{ids[0]}"
    return store.checkpoint_dir(sweep, key)


def train_pack(cfgs: list, folder: Path, sweep_dir: Path, resources: Resources, on_epoch) -> list:
    """One config in this process, or on Ray Train workers; several as one population."""
    if resources.workers:
        from sweeps.workers import train_with_workers

        result = train_with_workers(
            cfgs[0],
            workers=resources.workers,
            cpus_per_worker=resources.cpus_per_trial,
            gpus_per_worker=resources.gpus_per_worker,
            checkpoint_dir=folder,
            sweep_dir=sweep_dir,
            max_failures=resources.max_failures,
        )
        return [result]
    if len(cfgs) == 1:
        from stability.trainer import train

        return [train(cfgs[0], checkpoint_dir=folder, on_epoch=on_epoch)]
    from stability.population import train_population

    return train_population(cfgs, checkpoint_dir=folder, on_epoch=on_epoch)


def run_trial(config: dict, *, root: str, sweep: str, rows: dict, resources: Resources) -> None:
    """The Tune trainable: train one manifest row, or a pack of rows as a population, and store them.

    Either resumes from its checkpoint under the store. Each trial's result and curve are
    written by the trial itself, once, when it ends.
    """
    import ray
    from ray import tune

    ids = pack_ids(config)
    store = Store(root)
    cfgs = [trial_config(rows[i], sweep, resources) for i in ids]
    on_epoch = inject_worker_death(ids, store.sweep_dir(sweep), tune.report)
    folder = pack_checkpoint(store, sweep, ids)
    results = train_pack(cfgs, folder, store.sweep_dir(sweep), resources, on_epoch)
    node = ray.get_runtime_context().get_node_id()  # the Tune trial's node; Ray Train workers may run elsewhere
    summary = []
    for result in results:
        row = rows[result.row["trial_id"]]
        result.row.update(node_id=node, sampler=row["sampler"], preset=row["preset"])
        store.write_trial(sweep, result.row, result.curve)
        summary.append({k: result.row[k] for k in ("trial_id", "status", "top1_err", "top1_err_raw")})
    shutil.rmtree(folder, ignore_errors=True)
    tune.report({"finished": True, "members": json.dumps(summary), "wall_s": results[0].row["wall_s"]})


FAULT_ENV = "STABILITY_INJECT_WORKER_DEATH"


def inject_worker_death(trial_ids: list[str], sweep_dir: Path, report):
    """Fault injection for the reliability tests: with STABILITY_INJECT_WORKER_DEATH=ID@E, the
    worker running trial ID (alone or in a pack) SIGKILLs itself once, after training epoch E
    and before saving its checkpoint, so the retry must resume from epoch E - 1's checkpoint."""
    trial_id, _, at = os.environ.get(FAULT_ENV, "").rpartition("@")
    if trial_id not in trial_ids:
        return report
    epoch = int(at)
    marker = sweep_dir / f".injected-{trial_id}"

    def maybe_die(point: dict) -> None:
        report(point)
        if point["epoch"] == epoch and not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)

    return maybe_die


def failed_row(row: dict, sweep: str, error: str) -> dict:
    now = datetime.now(timezone.utc).isoformat()
    return {
        **{k: row[k] for k in [*MANIFEST_IDENTITY, "family"]},
        "sweep": sweep,
        "sampler": row["sampler"],
        "preset": row["preset"],
        "status": "failed",
        "top1_err": 100.0,
        "top1_err_raw": 100.0,
        "train_loss": float("nan"),
        "diverged_epoch": None,
        "completed_epochs": None,
        "wall_s": float("nan"),
        "started_at": now,
        "finished_at": now,
        "error": error[-4000:],
    }


def make_callback(store: Store, sweep: str, rows: dict, total: int, done_before: int):
    from ray import tune

    class Progress(tune.Callback):
        """One line per finished trial with an overall bar; failed trials go to the store."""

        def __init__(self) -> None:
            self.done = done_before
            self.start = time.perf_counter()

        def _line(self, trial_id: str, text: str) -> None:
            self.done += 1
            width = 24
            filled = round(width * self.done / total)
            bar = "#" * filled + "." * (width - filled)
            elapsed = time.perf_counter() - self.start
            # sys.stdout is looked up per line: Tune pickles its callbacks, and streams do not pickle
            print(f"[{bar}] {self.done:>4}/{total}  {trial_id}  {text}  ({elapsed:.0f}s)", file=sys.stdout, flush=True)

        def on_trial_complete(self, iteration, trials, trial, **info):
            members = json.loads((trial.last_result or {}).get("members", "[]"))
            for r in members:
                row = rows[r["trial_id"]]
                self._line(
                    row["trial_id"],
                    f"lr={row['lr']:.3g} wd={row['wd']:.3g}  {r['status']}  "
                    f"err {r['top1_err']:.2f}% (raw {r['top1_err_raw']:.2f}%)",
                )

        def on_trial_error(self, iteration, trials, trial, **info):
            error = read_error(trial)
            last = error.strip().splitlines()[-1] if error.strip() else "unknown"
            for trial_id in pack_ids(trial.config):
                store.write_trial(sweep, failed_row(rows[trial_id], sweep, error), [])
                self._line(trial_id, f"FAILED: {last}")

    return Progress()


def read_error(trial) -> str:
    path = getattr(trial, "error_file", None)
    if path and Path(path).exists():
        return Path(path).read_text(errors="replace")
    return str(getattr(trial, "error_msg", "") or "trial failed")


def packs(trial_ids: list[str], size: int) -> list[str]:
    """Consecutive groups of ``size`` trials, each as a comma-joined Tune config value.

    Trials of one manifest differ only in (lr, wd), so any group can train as a population.
    A pack resumes from its checkpoint only if the same trials are pending again, which holds
    after a crash: a pack's results are written together when it ends.
    """
    size = max(1, size)
    return [",".join(trial_ids[i : i + size]) for i in range(0, len(trial_ids), size)]


# A Ray Train trial's Tune process only waits on its workers, which hold the CPUs and GPUs.
DRIVER_CPUS = 0.01


def trial_driver_resources(resources: Resources) -> dict:
    if resources.workers:
        return {"cpu": DRIVER_CPUS, "gpu": 0}
    return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}


def check_capacity(resources: Resources) -> int:
    """How many trials the cluster can run at once; a UserError if not even one fits."""
    import ray

    from sweeps.workers import check_capacity as check

    if resources.workers:
        check(resources.workers, resources.cpus_per_trial, resources.gpus_per_worker)
        per_trial = {
            "CPU": resources.workers * resources.cpus_per_trial + DRIVER_CPUS,
            "GPU": resources.workers * resources.gpus_per_worker,
        }
    else:
        check(1, resources.cpus_per_trial, resources.gpus_per_trial)
        per_trial = {"CPU": resources.cpus_per_trial, "GPU": resources.gpus_per_trial}
    total = ray.cluster_resources()
    return max(1, int(min(total.get(k, 0.0) / v for k, v in per_trial.items() if v > 0)))


def run(store: Store, sweep: str, manifest: pd.DataFrame, resources: Resources) -> pd.DataFrame:
    """Run every pending trial of the sweep; returns the rows that were pending."""
    if resources.address:
        check_address(resources.address)  # before the store is touched
    manifest = prepare_manifest(store, sweep, manifest)
    pending = pending_trials(store, sweep, manifest)
    done_before = len(manifest) - len(pending)
    if pending.empty:
        print(f"sweep {sweep}: all {len(manifest)} trials already have results; nothing to run")
        return pending
    gpu = resources.gpus_per_trial > 0 or resources.gpus_per_worker > 0
    pack = (
        1
        if resources.workers or resources.accumulate > 1
        else resources.pack or default_pack(gpu, manifest.iloc[0].to_dict())
    )
    together = f", {pack} at a time as one population per GPU" if pack > 1 else ""
    print(f"sweep {sweep}: {len(pending)} of {len(manifest)} trials to run{together}", flush=True)
    start_ray(resources)
    import ray
    from ray import tune

    try:
        at_once = check_capacity(resources)
        rows = {r["trial_id"]: r for r in manifest.to_dict("records")}
        trainable = tune.with_resources(
            tune.with_parameters(
                run_trial, root=str(store.root.resolve()), sweep=sweep, rows=rows, resources=resources
            ),
            trial_driver_resources(resources),
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"pack": tune.grid_search(packs(list(pending["trial_id"]), pack))},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True, max_concurrent_trials=at_once),
            run_config=tune.RunConfig(
                name=f"tune-{int(time.time())}",
                storage_path=str((store.sweep_dir(sweep) / ".tune").resolve()),
                failure_config=tune.FailureConfig(max_failures=resources.max_failures),
                verbose=0,
                callbacks=[make_callback(store, sweep, rows, len(manifest), done_before)],
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()
    return pending
