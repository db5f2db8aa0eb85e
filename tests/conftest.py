"""Shared fixtures: tiny configurations that train in about a second on one CPU core."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager, suppress

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


@pytest.fixture(scope="session")
def _ray_until_the_end():
    """Shuts down, when the session ends, the Ray that ``shared_ray`` started."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def join_shared_ray():
    """One local Ray for the session, joined by this process: every in-process command without
    ``--address`` runs on it (``sweeps.cluster.connect`` leaves a Ray it did not start running)
    instead of starting and stopping one of its own. Started on first use, and again after a
    test that needed this process free of Ray (``no_ray``); stopped when the session ends
    (``_ray_until_the_end``, which a fixture that calls this must request)."""
    import ray

    from sweeps.cluster import configure_ray_env

    if not ray.is_initialized():
        configure_ray_env(loopback=True)
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", logging_level="error",
                 log_to_driver=False)  # fmt: skip
    return ray


@pytest.fixture
def shared_ray(_ray_until_the_end):
    """The session's shared local Ray (``join_shared_ray``), for a test's in-process commands."""
    return join_shared_ray()


@pytest.fixture
def ray_never_started(no_ray, monkeypatch):
    """This process joined to no Ray, and any attempt to start or join one fails the test."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("a command that needs no cluster started Ray")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture
def no_ray():
    """This process joined to no Ray: for a test that joins another cluster (``--address``) or
    starts a Ray of its own. Stops the session's shared Ray if it runs; the next test that
    needs it starts it again."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


TINY_DATA = ["--dataset", "synthetic", "--image-size", "8", "--patch-size", "4", "--batch-size", "64"]


def write_planned_sweeps(root, sweeps: dict, seed: int = 0) -> None:
    """Store every planned trial of ``sweeps`` (name -> manifest) as a sweep stores it: the
    manifest, the trainer's own result row (``result_row``) and a curve of one point per epoch,
    with made-up errors instead of training. For tests that only read a store; the sweep tests
    prove the training that writes real ones."""
    from datetime import UTC, datetime

    import numpy as np

    from stability.trainer import load_data, result_row
    from store import Store, schema
    from sweeps.engine import Resources, trial_config

    rng = np.random.default_rng(seed)
    store = Store(root)
    for name, manifest in sweeps.items():
        store.write_manifest(name, manifest)
        rows = manifest.to_dict("records")
        data = load_data(trial_config(rows[0], name, Resources(), "cpu", False))  # one dataset per sweep
        for row in rows:
            cfg = trial_config(row, name, Resources(), "cpu", False)
            errors = np.sort(rng.uniform(20.0, 90.0, cfg.epochs))[::-1]
            curve = [{"epoch": e + 1, "lr": row["lr"], "train_loss": err / 40, "top1_err": err, "top1_err_raw": err + 1,
                      "wall_s": 0.5 * (e + 1)} for e, err in enumerate(errors)]  # fmt: skip
            result = result_row(
                cfg,
                curve=curve,
                data=data,
                batch=cfg.batch_size,
                wall=curve[-1]["wall_s"],
                status="ok",
                diverged_epoch=None,
                started=datetime.now(UTC),
                device=torch.device("cpu"),
            )
            result.update(resumed_from_epoch=0, workers=1, accumulate=1, node_id="written", **schema.carried(row))
            store.write_trial(name, result, curve)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    """A results store as tiny sweeps write it: two 3-trial EDF sweeps and a Figure 3 grid
    (written, not trained: ``write_planned_sweeps``)."""
    from sweeps import plan
    from sweeps.grid import plan_grid

    root = tmp_path_factory.mktemp("store")
    scale = plan.choose_scale("smoke", False, dataset="synthetic", image_size=8, patch_size=4, batch_size=64)
    sweeps = {
        f"{m}-adamw-smoke": plan.edf_manifest(f"{m}-adamw-smoke", m, "adamw", scale, trials=3, seed=0)
        for m in ("vit_p_1gf", "vit_c_1gf")
    }
    grid = plan_grid(
        3, scale, models=["vit_p_1gf", "vit_c_1gf"], epochs=[1, 2], trials=plan.preset_trials("smoke", None)
    )
    write_planned_sweeps(root, {**sweeps, **grid})
    return root


def wait_for(predicate, timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; an AssertionError naming ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# Ray's per-node agents, which outlive a SIGKILLed driver's Ray and hold no trial.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def kill_driver_when(cmd: list[str], ready, what: str, timeout: float = 300) -> None:
    """Start a sweep's driver (``cmd``), wait until ``ready()`` holds, then SIGKILL the driver only,
    and return once every process it had started that could write (its Ray, its trials) has
    exited on its own: nothing of the killed sweep writes after this returns. Ray's agents,
    which stay, are then killed by handle; the whole group only if a wait fails."""
    import os
    import signal

    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = False
    try:
        wait_for(ready, timeout, what)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        agents = [p for p in descendants if ray_agent(p)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        working = [p for p in descendants if p not in agents]
        wait_for(lambda: all(map(exited, working)), 60, "the killed driver's Ray and trials to exit")
        for agent in agents:
            with suppress(psutil.NoSuchProcess):
                agent.kill()
        done = True
    finally:
        if not done:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def ray_agent(process) -> bool:
    import psutil

    try:
        return process.cmdline()[0].startswith(RAY_AGENTS)
    except (psutil.Error, IndexError):
        return False


def exited(process) -> bool:
    """Gone, or a zombie: an orphan's exit status waits for an init that may never collect it."""
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


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
