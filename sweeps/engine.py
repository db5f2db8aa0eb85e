"""Run a manifest's missing trials on Ray Tune and store every result.

The command has joined the cluster and ``place`` has checked it before the driver writes the
manifest; then Tune gets only the trials that have no readable result, grouped into
populations by run identity (``plan.packs``). Each trial decides its device from the GPUs Ray
gave it, trains through ``stability.trainer.train`` (or a population), reports every epoch to
Tune, checkpoints every epoch under the store, and writes its own result files atomically when
it ends; a population that runs out of memory is split in two and trained as halves; a trial
that raises is retried from its checkpoint up to ``max_failures`` times, then recorded as
``failed`` with its error text by the driver, its checkpoint kept: the next run of the sweep
retries it (``Resources.retry_failed``). Every trial checkpoints in its own folder, whatever
pack it trains in, so it continues from its last epoch in any pack.

While the sweep runs, the driver holds the sweep's lock (``sweeps.lock``): trials check it
every epoch and before they write, and a driver whose lock was taken over stops.
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from stability.errors import UserError
from store import Store, schema
from sweeps import cluster, faults, lock
from sweeps.guard import Guard, guarded
from sweeps.plan import default_pack, definition_differences, extends, hyperparameter_names, packs
from sweeps.trackers import Trackers, route


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    data_dir: str | None = None
    pack: int | None = None  # trials per population (stability.population); None: plan.default_pack
    workers: int = 0  # >= 1: each trial runs on that many Ray Train workers (cpus_per_trial is per worker)
    gpus_per_worker: float = 0.0
    accumulate: int = 1  # micro-batches per step (gradient accumulation)
    compile: bool = False  # torch.compile single trials' training steps
    retry_failed: bool = True  # a run re-runs the sweep's ``failed`` trials (--no-retry-failed: keep them)
    trackers: Trackers = field(default_factory=Trackers)  # --log: where each trial's curve goes as it trains

    @property
    def gpus_per_task(self) -> float:
        """The GPUs of one training process: a trial's, or one of its workers'."""
        return self.gpus_per_worker if self.workers else self.gpus_per_trial


@dataclass(frozen=True)
class Placement:
    """What the cluster gives a command's trials, decided once per command by ``place``."""

    at_once: int  # trials that fit the cluster together
    gpu_memory: int | None  # bytes of GPU memory one trial has; None: trials get no GPU


def prepare_manifest(store: Store, sweep: str, manifest: pd.DataFrame) -> pd.DataFrame:
    """Write the manifest if the sweep is new or this command extends it (``plan.extends``);
    refuse a different definition under the same name."""
    store.check_writable()
    old = stored_manifest(store, sweep, manifest)
    if old is not None and not extends(old, manifest):
        return old
    store.write_manifest(sweep, manifest)
    if old is not None:
        print(f"sweep {sweep}: extended from {len(old)} to {len(manifest)} trials; the first {len(old)} draws and "
              "their results are kept")  # fmt: skip
    return manifest


def stored_manifest(store: Store, sweep: str, manifest: pd.DataFrame) -> pd.DataFrame | None:
    """The sweep's stored manifest (None for a new sweep), which must hold ``manifest``'s
    definition or be its beginning (``plan.extends``)."""
    old = store.read_manifest(sweep)
    if old is None or extends(old, manifest):
        return old
    differ = definition_differences(old, manifest)
    if differ:
        fewer = len(manifest) < len(old) and differ == ["number of trials"]
        more = f"; it has {len(old)}: --trials {len(old)} resumes it, more extends it" if fewer else ""
        raise UserError(
            f"sweep {sweep!r} already exists in {store.root} with another definition (it differs in "
            f"{', '.join(differ)}{more}); rerun it with the same flags, or choose a new --name "
            "(a grid: another --results)"
        )
    return old


def without_final_result(trials: pd.DataFrame, manifest: pd.DataFrame, retry_failed: bool) -> pd.DataFrame:
    """Manifest rows that ``trials`` (the stored rows) give no final result."""
    failed = set(trials.loc[trials["status"] == "failed", "trial_id"])
    final = set(trials["trial_id"]) - (failed if retry_failed else set())
    return manifest[~manifest["trial_id"].isin(final)]


def anything_pending(store: Store, sweeps: dict[str, pd.DataFrame], retry_failed: bool) -> bool:
    """Whether a run of ``sweeps`` would train anything; refuses a name holding another
    definition. Reads only: what ``pending_trials`` sets aside is left for the run."""
    pending = False
    for sweep, manifest in sweeps.items():  # every name is checked, pending or not
        stored = stored_manifest(store, sweep, manifest)
        trials = store.read_trials(sweep)[0]
        grown = stored is not None and extends(stored, manifest)
        pending = pending or stored is None or grown or not without_final_result(trials, stored, retry_failed).empty
    return pending


def pending_trials(store: Store, sweep: str, manifest: pd.DataFrame, log=print, retry_failed: bool = True):
    """Manifest rows without a final result: no readable row, or a ``failed`` one (an
    infrastructure fault, retried from its checkpoint unless ``retry_failed`` is off). Diverged
    trials are outcomes and never run again. Unreadable result files are set aside."""
    trials, bad = store.read_trials(sweep)
    for path in bad:
        log(f"unreadable result {path} set aside in {store.quarantine(path)}; its trial will run again")
    failed = set(trials.loc[trials["status"] == "failed", "trial_id"])
    pending = without_final_result(trials, manifest, retry_failed)
    retried = pending[pending["trial_id"].isin(failed)]["trial_id"]
    if len(retried):
        kept = sum(any(d.iterdir()) if (d := store.checkpoint_dir(sweep, i)).is_dir() else False for i in retried)
        log(
            f"sweep {sweep}: retrying {len(retried)} failed trial(s), {kept} from their last checkpoint "
            "(--no-retry-failed keeps them)"
        )
    drop_pack_checkpoints(store, sweep, log)
    return pending


def drop_pack_checkpoints(store: Store, sweep: str, log) -> None:
    """Checkpoints of whole packs (``checkpoints/pack-K-<id>/``), written before every trial
    checkpointed in its own folder, cannot be read per trial: removed, with one line, and their
    trials start over."""
    for folder in sorted((store.sweep_dir(sweep) / "checkpoints").glob("pack-*")):
        shutil.rmtree(folder, ignore_errors=True)
        log(f"sweep {sweep}: removed {folder.name}, a pack checkpoint of an earlier version; its trials start over")


def trial_config(row: dict, sweep: str, resources: Resources, device: str, simulated: bool):
    """The trainer's config of a manifest row (``store.schema.config_fields``) on this process,
    after the row's user modules are imported (they may register its optimizer)."""
    from stability import optimizers
    from stability.config import TrainConfig
    from stability.imports import load_imports

    load_imports(schema.imports_of(row))
    hyper = optimizers.entry(row["optimizer"]).hyperparameters if row["optimizer"] in optimizers.names() else {}
    return TrainConfig(
        **{**schema.config_fields(row, hyper), "sweep": sweep},
        data_dir=resources.data_dir,
        device=device,
        simulated_gpu=simulated,
        threads=max(1, int(resources.cpus_per_trial)),
        accumulate=resources.accumulate,
        compile=resources.compile,
    )


def pack_ids(config: dict) -> list[str]:
    """The manifest trial ids a Tune trial trains: one, or a population of several."""
    return config["pack"].split(",")


def train_pack(
    cfgs: list,
    folders: list[Path],
    sweep_dir: Path,
    resources: Resources,
    on_epoch,
    guard: Guard | None = None,
    inject: faults.Faults = faults.NONE,
) -> list:
    """One config in this process, or on Ray Train workers; several as one population. Each
    trial checkpoints in its own folder (``folders``), in every case; an unreadable checkpoint
    goes to the sweep's ``quarantine/``."""
    quarantine = sweep_dir / "quarantine"
    faults.out_of_memory(inject, len(cfgs))
    if resources.workers:
        from sweeps.workers import train_with_workers

        result = train_with_workers(
            cfgs[0],
            workers=resources.workers,
            cpus_per_worker=resources.cpus_per_trial,
            gpus_per_worker=resources.gpus_per_worker,
            checkpoint_dir=folders[0],
            sweep_dir=sweep_dir,
            max_failures=resources.max_failures,
            guard=guard,
            inject=inject,
        )
        return [result]
    if len(cfgs) == 1:
        from stability.trainer import train

        return [train(cfgs[0], checkpoint_dir=folders[0], on_epoch=on_epoch, quarantine=quarantine)]
    from stability.population import train_population

    return train_population(cfgs, checkpoint_dirs=folders, on_epoch=on_epoch, quarantine=quarantine)


def run_trial(
    config: dict,
    *,
    root: str,
    sweep: str,
    rows: dict,
    resources: Resources,
    guard: Guard | None = None,
    inject: faults.Faults = faults.NONE,
) -> None:
    """The Tune trainable: train one manifest row, or a pack of rows as a population, and store them.

    The device is decided here, from the GPUs Ray gave this process (``cluster.trial_device``).
    Every pack resumes from its checkpoint under the store; each trial's result and curve are
    written by the trial itself, once, when it ends. Trials that already have a result (an
    earlier attempt stored them) are not trained again.
    """
    import ray
    import torch
    from ray import tune

    cluster.hide_gpus_unless_given()
    device, simulated = cluster.trial_device(ray.get_gpu_ids())
    store = Store(root)
    ids = [i for i in pack_ids(config) if not store.has_outcome(sweep, i)]
    node = ray.get_runtime_context().get_node_id()  # the Tune trial's node; Ray Train workers may run elsewhere
    if guard is not None and (why := guard.lost()):
        tune.report({"abandoned": why})  # the driver has lost its sweep: train and write nothing
        return

    def train_and_store(ids: list[str]) -> None:
        """Train ``ids`` together; a population that runs out of memory is split in two, down
        to single trials (a single trial out of memory fails, and Tune retries it)."""
        folders = [store.checkpoint_dir(sweep, i) for i in ids]
        logs = (
            {i: resources.trackers.open(store.sweep_dir(sweep), rows[i]) for i in ids}
            if resources.trackers.kinds
            else {}
        )
        on_epoch = faults.worker_death(inject, ids, store.sweep_dir(sweep), guarded(tune.report, guard))
        on_epoch = route(faults.failure(inject, ids, on_epoch), logs, ids[0])
        try:
            if schema.present(rows[ids[0]].get("trainer")):  # a registered trainable: one trial a pack
                results = [train_trainable(rows[ids[0]], folders[0], device, on_epoch)]
            else:
                cfgs = [trial_config(rows[i], sweep, resources, device, simulated) for i in ids]
                results = train_pack(cfgs, folders, store.sweep_dir(sweep), resources, on_epoch, guard, inject)
        except Exception as e:
            for log in logs.values():
                log.close("failed")
            if len(ids) == 1 or not isinstance(e, torch.OutOfMemoryError):
                raise
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        else:
            for result in results:
                row = rows[result.row["trial_id"]]
                result.row.update(node_id=node, **schema.carried(row))
                if guard is not None:
                    guard.check()  # never write a result into a sweep another driver now runs
                store.write_trial(sweep, result.row, result.curve)
                if row["trial_id"] in logs:
                    logs[row["trial_id"]].close(result.row["status"])
            return
        # Outside the except block, so that the failed population's tensors can be freed.
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = (len(ids) + 1) // 2
        tune.report(
            {
                "split": f"population of {len(ids)} from {ids[0]} ran out of memory ({why}); "
                f"training it as {half} + {len(ids) - half}"
            }
        )
        failure = None
        for part in (ids[:half], ids[half:]):  # a half that fails does not keep the other from training
            try:
                train_and_store(part)
            except Exception as e:
                failure = failure or e.with_traceback(None)  # no frames kept: their tensors can go
        if failure is not None:
            raise failure

    if ids:
        train_and_store(ids)
    tune.report({"finished": True})


def train_trainable(row: dict, folder: Path, device: str, on_epoch):
    """One trial of a registered trainable (``stability.trainables``), after the row's user modules
    (which register it) are imported in this process."""
    from stability import trainables
    from stability.imports import load_imports

    load_imports(schema.imports_of(row))
    return trainables.run(row, folder, device=device, on_point=on_epoch)


def failed_row(row: dict, sweep: str, error: str) -> dict:
    now = datetime.now(UTC).isoformat()
    return {**schema.failed_row(row, error, now, hyperparameter_names()), "sweep": sweep}


def make_callback(store: Store, sweep: str, rows: dict, total: int, done_before: int, lease: lock.Lease | None):
    from ray import tune

    class Progress(tune.Callback):
        """One line per finished trial (read back from the store, the record) with an overall bar;
        one line per population split; trials of a failed pack without a result go to the store
        as ``failed``, unless this driver has lost the sweep to another (then it writes nothing)."""

        def __init__(self, lease: lock.Lease | None) -> None:
            self.done = done_before
            self.start = time.perf_counter()
            self.lease = lease  # an argument, not a closure cell: __getstate__ leaves it out of Tune's pickle

        def __getstate__(self) -> dict:  # Tune pickles its callbacks; a live lease does not pickle
            return {**self.__dict__, "lease": None}

        @property
        def lost(self) -> bool:
            """Read from the lock files now, not from the heartbeat's last look: after a pause,
            Tune may report a trial before the heartbeat has run, and nothing may be written then."""
            if self.lease is None:
                return False
            try:
                self.lease.check()
            except lock.LockLost:
                return True
            return False

        def _print(self, text: str) -> None:
            elapsed = time.perf_counter() - self.start
            # sys.stdout is looked up per line: Tune pickles its callbacks, and streams do not pickle
            print(f"{text}  ({elapsed:.0f}s)", file=sys.stdout, flush=True)

        def _line(self, trial_id: str, text: str) -> None:
            self.done += 1
            width = 24
            filled = round(width * self.done / total)
            bar = "#" * filled + "." * (width - filled)
            self._print(f"[{bar}] {self.done:>4}/{total}  {trial_id}  {text}")

        def _stored(self, trial_id: str) -> None:
            if not store.trial_path(sweep, trial_id).exists():  # never expected: say so rather than stop Tune
                self._line(trial_id, "finished without a stored result; it runs again on the next resume")
                return
            r, row = store.read_trial(sweep, trial_id), rows[trial_id]
            self._line(trial_id, f"{drawn(row)}  {r['status']}  {outcome(r)}")

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "split" in result:
                self._print(f"split: {result['split']}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.lost:
                return
            for trial_id in pack_ids(trial.config):
                self._stored(trial_id)

        def on_trial_error(self, iteration, trials, trial, **info):
            if self.lost:
                return
            error = read_error(trial)
            last = error.strip().splitlines()[-1] if error.strip() else "unknown"
            for trial_id in pack_ids(trial.config):
                if store.has_outcome(sweep, trial_id):  # stored by a half of a split population
                    self._stored(trial_id)
                    continue
                store.write_trial(sweep, failed_row(rows[trial_id], sweep, error), [])
                self._line(trial_id, f"FAILED: {last}")

    return Progress(lease)


def drawn(row: dict) -> str:
    """A planned trial's drawn values in a progress line: lr, wd and every other sampled column."""
    names = [k for k in ("lr", "wd") if schema.present(row.get(k))]
    names += schema.sampled_columns(row, hyperparameter_names())
    return " ".join(f"{k}={row[k]:.3g}" if isinstance(row[k], float) else f"{k}={row[k]}" for k in names)


def outcome(r: dict) -> str:
    """A finished trial's outcome in a progress line, in its metric."""
    metric = schema.metric_of(r)
    if metric == schema.TOP1_ERR:
        return f"err {r['top1_err']:.2f}% (raw {r['top1_err_raw']:.2f}%)"
    return f"{metric.name} {r.get(metric.name, float('nan')):.4g}"


def read_error(trial) -> str:
    """The traceback Tune wrote for a failed trial, read from the driver's staging copy
    (``Trial.error_file``): when this callback runs, the copy in the trial's storage, which
    ``Trial.get_error`` reads (as the import of a finished experiment does), is not written yet."""
    path = trial.error_file
    return Path(path).read_text(errors="replace") if path and Path(path).exists() else "trial failed"


# A Ray Train trial's Tune process only waits on its workers, which hold the CPUs and GPUs.
DRIVER_CPUS = 0.01


def trial_driver_resources(resources: Resources) -> dict:
    if resources.workers:
        return {"cpu": DRIVER_CPUS, "gpu": 0}
    return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}


def preflight(
    scale, resources: Resources, remote: bool = False, imports: tuple[str, ...] = (), trainers: list[str] = ()
) -> None:
    """The data check, before any sweep of a command touches the store (``engine.place`` checks
    the cluster). ``remote``: checked by a task on the cluster, where trials read the data,
    since the driver (a laptop, a login node) need not have it; the task imports the user's
    modules first, as a trial does, so a registered dataset is checked where it will load.
    ``scale`` None: a trainable's sweep (``trainers``), which brings its own data: only that the
    cluster's processes register it is checked, on the cluster."""
    from stability import trainables
    from stability.data import check_available
    from stability.imports import load_imports

    if not remote:
        if scale is not None:
            check_available(scale.dataset, resources.data_dir, scale.image_size)
        return
    import ray

    def check() -> str | None:
        try:
            load_imports(imports)
            if scale is not None:
                check_available(scale.dataset, resources.data_dir, scale.image_size)
        except UserError as e:
            return str(e)
        missing = [t for t in trainers if t not in trainables.names()]
        return f"trainable(s) {', '.join(missing)} not registered by --import {' '.join(imports)}" if missing else None

    problem = ray.get(ray.remote(check).options(num_cpus=0).remote())
    if problem:
        raise UserError(f"on the cluster: {problem}")


def place(resources: Resources, store: Store, remote: bool) -> Placement:
    """Check that a trial fits the cluster and probe where trials run; a UserError if not.

    ``remote``: the cluster was joined with ``--address``, so its nodes may not share the
    driver's filesystem: every node must see the results root.
    """
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
    gpus = resources.gpus_per_task
    views = cluster.probe_nodes(cluster.store_anchor(store.root), gpus) if remote or gpus > 0 else []
    if remote:
        cluster.check_store_seen(views, store.root)
    memory = cluster.gpu_memory_per_trial(views, gpus) if gpus > 0 else None
    return Placement(cluster.trials_at_once(per_trial), memory)


def pack_size(resources: Resources, placement: Placement):
    """Trials per population for a pending row: ``--pack``, or what fits the trial's GPU memory."""

    def size_of(row: dict) -> int:
        trainable = schema.present(row.get("trainer"))
        if trainable or resources.workers or resources.accumulate > 1 or not vectorized(row["optimizer"]):
            return 1
        return resources.pack or default_pack(placement.gpu_memory, row)

    return size_of


def vectorized(optim: str) -> bool:
    """Whether ``stability.population`` trains several trials of this optimizer as one; any other
    optimizer's trials train one at a time."""
    from stability import optimizers

    return optim in optimizers.names() and optimizers.entry(optim).vectorized


def make_stopper(lease: lock.Lease | None):
    from ray import tune

    class StopWhenLost(tune.Stopper):
        """Stops every trial once this driver has lost its sweep's lock to another driver."""

        def __init__(self, lease: lock.Lease | None) -> None:
            self.lease = lease

        def __getstate__(self) -> dict:  # Tune pickles its stopper; a live lease does not pickle
            return {"lease": None}

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.lease is not None and self.lease.lost() is not None

    return StopWhenLost(lease)


def run(
    store: Store,
    sweep: str,
    manifest: pd.DataFrame,
    resources: Resources,
    placement: Placement,
    lease: lock.Lease | None = None,
    command: str | None = None,
) -> pd.DataFrame:
    """Run every pending trial of the sweep on the joined cluster; returns the rows that were pending.

    ``lease``: the driver's locks, checked before the sweep starts and after it ends (a
    ``lock.LockLost`` then), and by every trial; ``command``: the command line that ran it,
    remembered for ``status``."""
    from ray import tune

    if lease is not None:
        lease.check()
    manifest = prepare_manifest(store, sweep, manifest)
    if command:
        store.write_command(sweep, command)
    pending = pending_trials(store, sweep, manifest, retry_failed=resources.retry_failed)
    done_before = len(manifest) - len(pending)
    if pending.empty:
        print(f"sweep {sweep}: all {len(manifest)} trials already have results; nothing to run")
        return pending
    groups = packs(pending, pack_size(resources, placement))
    unpacked = sorted({o for o in pending["optimizer"] if not vectorized(o)})
    if resources.pack and resources.pack > 1 and unpacked:
        print(f"--pack {resources.pack}: {', '.join(unpacked)} trials train one at a time (no population path)")
    largest = max(len(g) for g in groups)
    together = f", up to {largest} at a time as one population" if largest > 1 else ""
    print(f"sweep {sweep}: {len(pending)} of {len(manifest)} trials to run{together}", flush=True)
    rows = {r["trial_id"]: r for r in manifest.to_dict("records")}
    folder = store.sweep_dir(sweep)
    # Absolute: a Tune trial runs in a working directory of its own, where a relative results root
    # (the default, ``results``) would name no lock at all and every trial would stand down.
    guard = None if lease is None else Guard(os.path.abspath(folder), os.path.abspath(lease.paths[folder]), lease.token)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            root=str(store.root.resolve()),
            sweep=sweep,
            rows=rows,
            resources=resources,
            guard=guard,
            inject=faults.Faults.from_environment(),  # read here, in the driver: the trials' workers may be older
        ),
        trial_driver_resources(resources),
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"pack": tune.grid_search([",".join(g) for g in groups])},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True, max_concurrent_trials=placement.at_once),
        run_config=tune.RunConfig(
            name=f"tune-{int(time.time())}",
            storage_path=str((store.sweep_dir(sweep) / ".tune").resolve()),
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
            verbose=0,
            stop=make_stopper(lease),
            callbacks=[make_callback(store, sweep, rows, len(manifest), done_before, lease)],
        ),
    )
    tuner.fit()
    if lease is not None:
        lease.check()
    return pending
