"""The GPU path on a simulated GPU cluster: a Ray head on 127.0.0.1 declaring 2 logical GPUs.

Decisions come from the cluster, not from the driver (which has no GPU): the preset, the GPUs
per trial, the pack size. Trials given a GPU train on the CPU under STABILITY_SIMULATED_GPUS=1,
set in the cluster's environment only. Also here: one driver per sweep, and a refused request
that leaves the store as it was.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from cli import main
from stability.errors import UserError
from sweeps import lock
from sweeps.cluster import SIMULATED_GPUS_ENV
from tests.conftest import TINY_DATA, running, simulated_gpu_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.usefixtures("no_ray")]

TINY = ["--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA, "--epochs", "1"]


@pytest.fixture(scope="module")
def gpu_head():
    with simulated_gpu_cluster({"num_cpus": 2, "num_gpus": 2}) as cluster:
        yield cluster


def rows_of(results: Path, sweep: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in (results / sweep / "trials").glob("*.parquet")], ignore_index=True)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_driver_without_gpu_gets_the_gpu_protocol_and_a_second_driver_is_refused(gpu_head, tmp_path, capsys):
    """The driver process has no GPU and no simulation switch; the cluster's 2 GPUs decide.
    While it runs, a second driver on the same sweep is refused, naming the first."""
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != SIMULATED_GPUS_ENV}
    argv = ["sweep", *TINY, "--trials", "4", "--epochs", "2", "--name", "gpu", "--results", str(results)]
    with running([sys.executable, "-m", "cli", *argv, "--address", gpu_head.address], env) as first:
        held, planned = results / "gpu" / lock.LOCK, results / "gpu" / "manifest.parquet"
        wait_for(lambda: planned.exists() or first.poll() is not None, 120, "the first driver's manifest")
        assert held.exists() and planned.exists(), "the first driver never started its sweep"
        manifest = planned.read_bytes()
        assert main([*argv, "--address", gpu_head.address]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: sweep 'gpu' is being run by another driver"), err
        assert f"pid {first.pid}," in err[0] and f"host {socket.gethostname()}," in err[0]
        assert planned.read_bytes() == manifest
        out, _ = first.communicate(timeout=420)
    assert first.returncode == 0, out[-3000:]
    lines = out.splitlines()
    assert lines[0] == f"cluster {gpu_head.address}: 1 node, 2 GPUs, 2 CPUs"
    assert lines[1].startswith("protocol: small (the cluster has GPUs)")
    assert "GPU memory per trial: 80.0 GiB" in out  # no CUDA behind the simulated GPUs: the default
    assert "4 of 4 trials to run, up to 4 at a time as one population" in out  # packed by default
    rows = rows_of(results, "gpu")
    assert len(rows) == 4 and set(rows["status"]) == {"ok"}
    assert (rows["population"] == 4).all() and set(rows["preset"]) == {"small"}
    assert set(rows["device"]) == {"cpu"} and rows["simulated_gpu"].all()
    assert not held.exists()  # released


@pytest.mark.parametrize("figure, trials", [(2, 2), (3, 4)])
def test_grids_of_figures_2_and_3_run_every_point_alone(gpu_head, tmp_path, capsys, figure, trials):
    results = tmp_path / "results"
    argv = ["grid", "--figure", str(figure), "--preset", "smoke", "--models", "vit_c_1gf", "--epochs", "1,2"]
    assert main([*argv, *TINY_DATA, "--results", str(results), "--address", gpu_head.address]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"cluster {gpu_head.address}: 1 node, 2 GPUs, 2 CPUs"
    assert "as one population" not in out
    sweep = f"figure{figure}-smoke"
    manifest = pd.read_parquet(results / sweep / "manifest.parquet")
    rows = rows_of(results, sweep)
    assert len(manifest) == trials and sorted(rows["trial_id"]) == sorted(manifest["trial_id"])
    assert set(rows["status"]) == {"ok"} and "population" not in rows  # each trained alone
    assert rows["simulated_gpu"].all()


def test_a_dead_drivers_lock_is_taken_over(gpu_head, tmp_path, capsys):
    results = tmp_path / "results"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = results / "taken"
    folder.mkdir(parents=True)
    dead = {"host": socket.gethostname(), "pid": int(gone.stdout), "since": "then", "heartbeat": time.time()}
    (folder / lock.LOCK).write_text(json.dumps(dead))
    argv = ["sweep", *TINY, "--trials", "1", "--name", "taken", "--results", str(results)]
    assert main([*argv, "--address", gpu_head.address]) == 0, capsys.readouterr()
    assert len(rows_of(results, "taken")) == 1 and not (folder / lock.LOCK).exists()


def test_gpus_asked_of_a_cluster_without_gpus_is_one_error_line(tmp_path, capsys):
    results = tmp_path / "results"
    (results / "kept").mkdir(parents=True)
    (results / "kept" / "file").write_text("x")
    before = snapshot(results)
    assert main(["sweep", *TINY, "--trials", "1", "--gpus-per-trial", "1", "--results", str(results)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: one trial needs 1 GPUs"), err
    assert "0 GPUs" in err[0]
    assert snapshot(results) == before


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--gpus-per-trial", "4"], "one trial needs 4 GPUs and 1 CPUs, but the Ray cluster has 2 GPUs"),
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/fmnist"], "error: on the cluster: "),
        (["--workers", "3"], "one trial needs 3 GPUs"),
    ],
)
def test_a_request_the_cluster_refuses_writes_nothing(gpu_head, tmp_path, capsys, flags, message):
    results = tmp_path / "results"
    (results / "kept").mkdir(parents=True)
    (results / "kept" / "file").write_text("x")
    before = snapshot(results)
    argv = ["sweep", *TINY, "--trials", "2", "--name", "refused", "--results", str(results), *flags]
    assert main([*argv, "--address", gpu_head.address]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert snapshot(results) == before and not (results / "refused").exists()


def test_probes_report_what_trials_see(gpu_head, tmp_path):
    """One probe per node, given the trials' GPU request: it writes a note the driver must find."""
    import ray

    from sweeps import cluster

    ray.init(address=gpu_head.address, logging_level="error", log_to_driver=False)
    try:
        (seen,) = cluster.probe_nodes(tmp_path, 0.5)
        (blind,) = cluster.probe_nodes(tmp_path / "not-there", 0.5)  # where the node cannot write
    finally:
        ray.shutdown()
    assert seen.sees_store and seen.given_gpu and seen.simulated and not seen.cuda
    assert not blind.sees_store and list(tmp_path.iterdir()) == []  # notes are cleaned up
    with pytest.raises(UserError, match="do not see the results root"):
        cluster.check_store_seen([seen, blind], tmp_path)
    assert cluster.gpu_memory_per_trial([seen], 0.5) == cluster.DEFAULT_GPU_MEMORY // 2
