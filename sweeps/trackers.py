"""Watching a sweep: each trial's curve, as it trains, in TensorBoard or MLflow (``--log``).

Written from the trial's own process, one point per epoch, through each library's own writer:
``tensorboardX.SummaryWriter`` event files under ``<sweep>/tensorboard/<trial_id>/`` (one
TensorBoard run per trial: ``tensorboard --logdir results/<sweep>/tensorboard``), and an
``mlflow.MlflowClient`` run per trial in an experiment named after the sweep (by default in an
SQLite tracking store beside the sweep's results, ``<sweep>/mlflow.db``, MLflow's recommended
local backend, its file store being in maintenance; ``--mlflow-uri`` names any tracking URI).
The driver makes the store and the experiment before any trial starts (``prepare``), so that
trials only write runs into it. Ray
Tune's own logger callbacks are not used: a Tune trial here can train a population of several
manifest trials, and its config holds their ids, not their hyperparameters.

A trial that restarts (a retry, a resumed sweep) logs again from the epoch it took up: the
TensorBoard writer purges the later steps of the earlier attempt (``purge_step``), and MLflow
continues the trial's run (found by its ``stability.trial_id`` tag), where the newest value of
a step is the one shown.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from store import schema

KINDS = ("tensorboard", "mlflow")
TRIAL_TAG = "stability.trial_id"
STORE_TAG = "stability.sweep_dir"


@dataclass(frozen=True)
class Trackers:
    """Where a command's trials send their curves: none, TensorBoard, MLflow or both."""

    kinds: tuple[str, ...] = ()
    mlflow_uri: str | None = None

    def open(self, sweep_dir: Path, row: dict) -> TrialLog:
        return TrialLog(self, sweep_dir, row)

    def uri(self, sweep_dir: Path) -> str:
        """The MLflow tracking URI of a sweep's runs."""
        return self.mlflow_uri or f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"

    def prepare(self, sweep_dir: Path) -> None:
        """Before a sweep's trials start: its MLflow store and experiment (made once, by the driver)."""
        if "mlflow" in self.kinds:
            from mlflow import MlflowClient

            Path(sweep_dir).mkdir(parents=True, exist_ok=True)
            experiment_id(MlflowClient(tracking_uri=self.uri(sweep_dir)), Path(sweep_dir).name)


def hyperparameters(row: dict) -> dict:
    """What a trial's run is labelled with: its model, optimizer, schedule, seed and every drawn
    value (lr, wd and each sampled column), as the store holds them."""
    from sweeps.plan import hyperparameter_names

    names = ["model", "optimizer", "trainer", "epochs", "batch_size", "seed", "lr", "wd"]
    names += schema.sampled_columns(row, hyperparameter_names())
    return {k: schema.plain(row[k]) for k in names if k in row and schema.present(row[k])}


def scalars(point: dict) -> dict[str, float]:
    """A curve point's finite numbers, but its epoch (the step they are logged at)."""
    out = {}
    for k, v in point.items():
        if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[k] = float(v)
    return out


class TrialLog:
    """One trial's run in each tracker, opened at its first point."""

    def __init__(self, trackers: Trackers, sweep_dir: Path, row: dict) -> None:
        self.trackers, self.sweep_dir, self.row = trackers, Path(sweep_dir), row
        self.trial_id, self.sweep = row["trial_id"], self.sweep_dir.name
        self.tensorboard = None
        self.mlflow = None  # (client, run id)
        self.active = set(trackers.kinds)

    def log(self, point: dict) -> None:
        step = int(point["epoch"])  # whole: the trainer's epochs, a trainable's reported ones
        values = scalars(point)
        self._each("tensorboard", lambda: self._to_tensorboard(step, values))
        self._each("mlflow", lambda: self._to_mlflow(step, values))

    def close(self, status: str) -> None:
        """The trial ended (``status``: ok, diverged or failed)."""
        if self.tensorboard is not None:
            self._each("tensorboard", lambda: self._close_tensorboard(status))
        if self.mlflow is not None:
            self._each("mlflow", lambda: self._close_mlflow(status))

    def _close_tensorboard(self, status: str) -> None:
        self.tensorboard.add_text("status", status)
        self.tensorboard.close()

    def _close_mlflow(self, status: str) -> None:
        client, run = self.mlflow
        client.set_tag(run, "stability.status", status)
        client.set_terminated(run, "FAILED" if status == "failed" else "FINISHED")

    def _each(self, kind: str, send) -> None:
        """Send to one tracker; a tracker that fails (a key it refuses, a locked database, an
        unreachable server) is said once and left out of this trial, never failing its training."""
        if kind not in self.active:
            return
        try:
            send()
        except Exception as e:
            self.active.discard(kind)
            print(f"warning: --log {kind}: trial {self.trial_id}: {type(e).__name__}: {e}; its curve is no longer "
                  f"sent there (the store has it)", file=sys.stderr, flush=True)  # fmt: skip

    def _to_tensorboard(self, step: int, values: dict[str, float]) -> None:
        writer = self.tensorboard or self._open_tensorboard(step)
        for k, v in values.items():
            writer.add_scalar(k, v, global_step=step)
        writer.flush()

    def _to_mlflow(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        client, run = self.mlflow or self._open_mlflow()
        now = int(time.time() * 1000)
        client.log_batch(run, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def _open_tensorboard(self, step: int):
        from tensorboardX import SummaryWriter

        folder = self.sweep_dir / "tensorboard" / self.trial_id
        # a restarted trial's first step: events of the earlier attempt from there on are dropped
        self.tensorboard = SummaryWriter(logdir=str(folder), purge_step=step)
        self.tensorboard.add_text("hyperparameters", json.dumps(hyperparameters(self.row), sort_keys=True))
        return self.tensorboard

    def _open_mlflow(self):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        client = MlflowClient(tracking_uri=self.trackers.uri(self.sweep_dir))
        experiment = experiment_id(client, self.sweep)
        # the trial of this store: trial ids repeat across results folders that share a tracking server
        tags = {TRIAL_TAG: self.trial_id, STORE_TAG: str(self.sweep_dir.resolve())}
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        found = client.search_runs([experiment], filter_string=query)
        if found:
            run = found[0].info.run_id
            client.update_run(run, status="RUNNING")
        else:
            run = client.create_run(experiment, run_name=self.trial_id, tags=tags).info.run_id
            params = [Param(k, str(v)) for k, v in hyperparameters(self.row).items()]
            client.log_batch(run, params=params)
        self.mlflow = (client, run)
        return self.mlflow


def experiment_id(client, name: str) -> str:
    """The sweep's experiment, made by whichever trial comes first (two may race to create it)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # another trial created it in between: MLflow has no create-if-absent
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def route(report, logs: dict[str, TrialLog], first: str):
    """The per-epoch callback of a pack: each trial's point to its trackers, the rest to ``report``
    (Tune). A population's summary carries its members' points (``MEMBER_POINTS``, taken out here
    whether tracked or not); a single trial's point is its own (``first``'s), passed on untouched."""
    from stability.population import MEMBER_POINTS

    def on_epoch(point: dict) -> None:
        members = point.pop(MEMBER_POINTS) if MEMBER_POINTS in point else None
        for trial_id, own in ({first: point} if members is None else members).items():
            if trial_id in logs:
                logs[trial_id].log(own)
        report(point)

    return on_epoch
