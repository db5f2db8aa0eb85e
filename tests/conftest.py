"""Shared fixtures: tiny configurations that train in about a second on one CPU core."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Every test cluster lives on loopback: Ray's single-machine mode, read when ray is first imported.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

TINY = dict(model="vit_c_1gf", dataset="synthetic", image_size=8, patch_size=4, batch_size=64, device="cpu")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need real CUDA: skipped where there is none (CI, laptops)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run `make test-gpu` on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


TINY_DATA = ["--dataset", "synthetic", "--image-size", "8", "--patch-size", "4", "--batch-size", "64"]


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A results store made by real tiny sweeps: two 3-trial EDF sweeps and a Figure 3 grid."""
    from cli import main

    root = tmp_path_factory.mktemp("store")
    for model in ("vit_p_1gf", "vit_c_1gf"):
        assert (
            main(
                [
                    "sweep",
                    "--model",
                    model,
                    "--optim",
                    "adamw",
                    "--trials",
                    "3",
                    "--epochs",
                    "1",
                    "--results",
                    str(root),
                    *TINY_DATA,
                ]
            )
            == 0
        )
    assert (
        main(
            [
                "grid",
                "--figure",
                "3",
                "--models",
                "vit_p_1gf,vit_c_1gf",
                "--epochs",
                "1,2",
                "--results",
                str(root),
                *TINY_DATA,
            ]
        )
        == 0
    )
    return root


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; an AssertionError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def kill_driver_when(cmd: list[str], ready, what: str, timeout: float = 300) -> None:
    """Start a sweep's driver (``cmd``), wait until ``ready()`` holds, then SIGKILL the driver only:
    the Ray processes it started must not outlive it (its whole group is killed only if the wait
    fails)."""
    import os
    import signal

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(ready, timeout, what)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port nothing listens on (for unreachable-address tests and test Ray heads)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Short node health checks, so that a killed node is declared dead in about two seconds.
FAST_HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@contextmanager
def simulated_gpu_cluster(*nodes: dict, system_config: dict | None = None):
    """A Ray cluster of ``nodes`` (head first: num_cpus, num_gpus) on 127.0.0.1 that declares
    logical GPUs; its processes run with STABILITY_SIMULATED_GPUS=1, so a trial given a GPU
    trains on the CPU. The test process itself does not connect, and keeps no switch set.
    Shutting down stops exactly the processes this cluster started."""
    from ray.cluster_utils import Cluster

    from sweeps.cluster import SIMULATED_GPUS_ENV

    before = os.environ.get(SIMULATED_GPUS_ENV)
    os.environ[SIMULATED_GPUS_ENV] = "1"  # inherited by the nodes' processes as they start
    cluster = None
    try:
        head = {**nodes[0], "include_dashboard": False, "node_ip_address": "127.0.0.1"}
        if system_config:
            head["_system_config"] = system_config
        cluster = Cluster(initialize_head=True, head_node_args=head)
        for node in nodes[1:]:
            cluster.add_node(**node, node_ip_address="127.0.0.1")
        cluster.wait_for_nodes()
    except BaseException:
        if cluster is not None:
            cluster.shutdown()
        raise
    finally:
        if before is None:
            os.environ.pop(SIMULATED_GPUS_ENV, None)
        else:
            os.environ[SIMULATED_GPUS_ENV] = before
    try:
        yield cluster
    finally:
        cluster.shutdown()


@contextmanager
def running(cmd: list[str], env: dict | None = None):
    """A subprocess (a sweep driver, its output in ``.stdout``), killed by its handle if the
    test leaves before it ends."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
