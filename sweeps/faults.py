"""Fault injection for the reliability tests, switched on by environment variables of the driver.

The driver reads the variables once per sweep (``Faults.from_environment``) and hands the plan
to every trial with its parameters: a Ray whose workers were started before the variables were
set (one Ray shared by many commands, as in the test suite) still injects what this sweep asks.
Its own module so that the engine and the Ray Train workers both reach it without importing
each other. Nothing here runs unless a test sets one of the variables.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WORKER_DEATH_ENV = "STABILITY_INJECT_WORKER_DEATH"
OOM_ENV = "STABILITY_INJECT_OOM_ABOVE"
FAIL_ENV = "STABILITY_INJECT_FAILURE"


@dataclass(frozen=True)
class Faults:
    """What to inject: ``worker_death`` "ID@E", ``failure`` "ID@E[,ID@E...]", ``oom_above`` N."""

    worker_death: str = ""
    failure: str = ""
    oom_above: int | None = None

    @classmethod
    def from_environment(cls) -> Faults:
        above = os.environ.get(OOM_ENV)
        return cls(
            os.environ.get(WORKER_DEATH_ENV, ""), os.environ.get(FAIL_ENV, ""), None if above is None else int(above)
        )


NONE = Faults()


def worker_death(
    faults: Faults, trial_ids: list[str], sweep_dir: Path, report: Callable[[dict], None]
) -> Callable[[dict], None]:
    """With worker_death ID@E, the worker running trial ID (alone or in a pack) SIGKILLs itself
    once, after training epoch E and before saving its checkpoint, so the retry must resume from
    epoch E - 1's checkpoint."""
    trial_id, _, at = faults.worker_death.rpartition("@")
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


def failure(faults: Faults, trial_ids: list[str], report: Callable[[dict], None]) -> Callable[[dict], None]:
    """With failure ID@E[,ID@E...], trial ID raises after saving epoch E's checkpoint, on every
    attempt of this sweep's run: a fault that outlasts ``--max-failures``, so the trial is
    recorded ``failed`` and a later run (without the variable) retries it."""
    plans = dict(item.rpartition("@")[::2] for item in faults.failure.split(",") if "@" in item)
    mine = {i: int(plans[i]) for i in trial_ids if i in plans}
    if not mine:
        return report

    def maybe_fail(point: dict) -> None:
        report(point)
        for trial_id, epoch in mine.items():
            if point["epoch"] == epoch + 1:  # epoch E's checkpoint is on disk by now
                raise RuntimeError(f"injected failure of {trial_id} in epoch {epoch + 1}")

    return maybe_fail


def out_of_memory(faults: Faults, size: int) -> None:
    """With oom_above N, a population of more than N members raises what a GPU says when it is
    too big."""
    if faults.oom_above is not None and size > faults.oom_above:
        import torch

        raise torch.OutOfMemoryError(f"CUDA out of memory (injected: a population of {size} > {faults.oom_above})")
