"""End to end: a driver paused past the stale age (a suspended laptop) loses its sweep to the
driver that took it over, finishes no trial after it wakes, stops with one error line naming the
new driver, and the sweep finishes once."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sweeps import lock
from tests.conftest import wait_for

STALE_S, HEARTBEAT_S = 4.0, 0.5


def sweep_cmd(results: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli",
        "sweep",
        "--model",
        "vit_c_1gf",
        "--optim",
        "adamw",
        "--dataset",
        "synthetic",
        "--image-size",
        "8",
        "--patch-size",
        "4",
        "--batch-size",
        "64",
        "--trials",
        "4",
        "--epochs",
        "3",
        "--name",
        "s",
        "--results",
        str(results),
    ]


def start_driver(results: Path, logs: Path, name: str) -> subprocess.Popen:
    """A driver in its own session (so that its Ray goes with it), its output in files: a pipe
    nobody reads while the other driver runs would fill up and block it."""
    env = {**os.environ, lock.STALE_ENV: str(STALE_S), lock.HEARTBEAT_ENV: str(HEARTBEAT_S)}
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        return subprocess.Popen(sweep_cmd(results), stdout=out, stderr=err, env=env, start_new_session=True)


def taken_over(sweep: Path, a: int, b: int) -> bool:
    """B has linked the generation after A's and marked A's file, which stays as a tombstone."""
    history = lock.walk(sweep)
    return [entry.record.get("pid") for entry in history] == [a, b] and history[0].marked


PROGRESS = re.compile(r"^\[[#.]+\]\s+\d+/\d+ ", re.MULTILINE)  # the line a driver prints per finished trial


def tail(logs: Path, name: str) -> str:
    return (logs / f"{name}.err").read_text()[-3000:]


@pytest.mark.slow
def test_a_paused_driver_whose_sweep_was_taken_over_stops_and_the_sweep_finishes_once(tmp_path):
    results, logs = tmp_path / "results", tmp_path / "logs"
    logs.mkdir()
    sweep = results / "s"
    drivers: list[subprocess.Popen] = []
    try:
        a = start_driver(results, logs, "a")
        drivers.append(a)
        wait_for(
            lambda: any((sweep / "checkpoints").glob("*/last.pt")) or a.poll() is not None,
            300,
            "a checkpoint of driver A",
        )
        assert a.poll() is None, tail(logs, "a")
        os.kill(a.pid, signal.SIGSTOP)  # the driver only: its trials keep running, its heartbeat does not
        wait_for(lambda: all(time.time() - e.mtime > STALE_S for e in lock.scan(sweep)), 60, "A's lock to go stale")
        b = start_driver(results, logs, "b")
        drivers.append(b)
        wait_for(lambda: taken_over(sweep, a.pid, b.pid) or b.poll() is not None, 300, "driver B's take-over")
        assert b.poll() is None, tail(logs, "b")
        resumed_at = (logs / "a.out").stat().st_size  # what A printed before it woke
        os.kill(a.pid, signal.SIGCONT)
        a_status = a.wait(timeout=300)
        b_status = b.wait(timeout=600)
    finally:
        for proc in drivers:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    last = (logs / "a.err").read_text().strip().splitlines()[-1:] or [""]
    assert a_status == 1, tail(logs, "a")
    assert last[0].startswith("error:") and f"pid {b.pid}," in last[0], tail(logs, "a")
    with open(logs / "a.out", "rb") as out:
        out.seek(resumed_at)
        after = out.read().decode(errors="replace")
    assert not PROGRESS.search(after), f"driver A finished a trial after it woke:\n{after[-3000:]}"
    assert b_status == 0, tail(logs, "b")
    assert PROGRESS.search((logs / "b.out").read_text())  # B's finished trials: the pattern does match
    manifest = pd.read_parquet(sweep / "manifest.parquet")
    assert sorted(p.stem for p in (sweep / "trials").glob("*.parquet")) == sorted(manifest["trial_id"])
    rows = pd.concat([pd.read_parquet(p) for p in (sweep / "trials").glob("*.parquet")])
    assert set(rows["status"]) == {"ok"}
    curves = sorted((sweep / "curves").glob("*.parquet"))
    assert sorted(p.stem for p in curves) == sorted(manifest["trial_id"])
    for curve in curves:
        assert list(pd.read_parquet(curve)["epoch"]) == [1, 2, 3], curve.name
    assert lock.scan(sweep) == []  # B released its lock; A left nothing behind
