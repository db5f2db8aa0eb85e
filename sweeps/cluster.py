"""The Ray cluster a command runs on: joined once, and the source of every device decision.

A laptop or a login node often has no GPU while the cluster it drives does, so nothing here
asks the driver's own torch. Whether trials get GPUs, the default preset and pack size, and
whether one trial fits at all come from the cluster's resources and from probe tasks placed
where trials run: with the trials' GPU request (CUDA, GPU memory), and on every node with
``--address`` (does it see the driver's results root?).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stability.errors import UserError

# Tests only: a trial given a logical GPU by Ray trains on the CPU instead of failing for want
# of CUDA, so that a CPU machine can run a cluster that declares GPUs (tests/test_gpu_cluster.py).
# Read in the trial's process: it must be set in the cluster's environment, not the driver's.
SIMULATED_GPUS_ENV = "STABILITY_SIMULATED_GPUS"

# GPU memory assumed where a probe finds no CUDA (simulated GPUs): an 80 GB card (A100 / H100).
DEFAULT_GPU_MEMORY = 80 * 2**30

PROBE_TIMEOUT_S = 120  # a probe waits behind other jobs' tasks for at most this long

RAY_QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage reports: the cluster may be closed to the network
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # our store is the record; skip Tune's CSV/JSON/TB files
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_RESULT_BUFFER_LENGTH": "0",
    "RAY_DEDUP_LOGS": "0",
}
# Ray's single-machine mode: without it, Ray resolves 127.0.0.1 back to the machine's routable
# address, its gRPC servers listen on every interface, and a driver cannot reach a head bound
# to loopback. Read once, when ray is first imported.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def simulated_gpus() -> bool:
    return os.environ.get(SIMULATED_GPUS_ENV) == "1"


@dataclass(frozen=True)
class ClusterInfo:
    """What the joined cluster has, summed over its live nodes."""

    where: str
    nodes: int
    cpus: float
    gpus: float
    remote: bool = False  # its nodes may not share the driver's files: data and results root are checked there

    def describe(self) -> str:
        return (
            f"cluster {self.where}: {self.nodes} node{'s' * (self.nodes != 1)}, {self.gpus:g} GPUs, {self.cpus:g} CPUs"
        )


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise UserError(f"--address {address!r} is not HOST:PORT") from None


def check_address(address: str) -> None:
    """Fail fast on an unreachable cluster instead of waiting out Ray's connect timeout."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError:
        raise UserError(f"cannot reach a Ray cluster at {address!r} (expected HOST:PORT of a running head)") from None


def configure_ray_env(loopback: bool) -> None:
    """Environment Ray reads when it is first imported (and its processes inherit)."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if loopback:
        os.environ.update(LOOPBACK_ENV)


@contextmanager
def connect(address: str | None, imports: list[str] | None = None) -> Iterator[ClusterInfo]:
    """Join ``address`` (or start a local Ray on 127.0.0.1) for the length of one command.

    A Ray this process has already joined (a notebook's ``ray.init()``, a test session's) serves
    a command without ``--address`` as it is, and is left running: only a Ray this command
    started is shut down. ``imports``: the user's ``--import`` modules; with ``--address`` every
    ``.py`` file among them is shipped to each node (``runtime_env`` ``py_modules``), where a
    trial imports it under its file name if the node lacks the path; a local trial imports it
    from its path (absolute, as the parser records it). A dotted module must be installed on
    every node.
    """
    found = address == "auto"  # the Ray that `ray start` left on this machine: nothing to dial first
    if address and not found:
        check_address(address)  # before anything else is touched
    loopback = not address or (not found and split_address(address)[0] in LOOPBACK_HOSTS)
    configure_ray_env(loopback)
    import ray  # first imported here by the CLI, after the variables above are set

    if ray.is_initialized():
        if address:
            raise UserError("this Python process has joined a Ray already; ray.shutdown() it before using --address")
        where = f"Ray at {ray.get_runtime_context().gcs_address} (joined before this command)"
        yield read_cluster(where, remote=joined_remote_ray())
        return
    common = {"logging_level": logging.ERROR, "log_to_driver": False}
    files = [spec for spec in imports or [] if spec.endswith(".py")]
    if address:
        if files:
            common["runtime_env"] = {"py_modules": files}
        ray.init(address=address, **({"_node_ip_address": "127.0.0.1"} if loopback else {}), **common)
    else:
        # "local": a Ray of our own, never one found on this machine (RAY_ADDRESS, `ray start`)
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **common)
    try:
        yield read_cluster(address or "local Ray on 127.0.0.1", remote=bool(address))
    finally:
        ray.shutdown()


def joined_remote_ray() -> bool:
    """Whether this process has joined a Ray that is more than this machine: another node, or a
    head beyond loopback (a notebook's ``ray.init()`` of a cluster). Its nodes may not see the
    driver's files, and its runtime environment is its own: ``--import`` files must already be
    on its nodes' paths."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    alive = [n for n in ray.nodes() if n["Alive"]]
    return len(alive) != 1 or alive[0]["NodeManagerAddress"] not in LOOPBACK_HOSTS


def local_gpus() -> int | None:
    """The GPUs a local Ray would declare (this machine's, as far as CUDA_VISIBLE_DEVICES shows
    them), found without starting one, so that a command without ``--address`` plans and checks
    everything before Ray starts; the Ray this process has joined, if any, says it itself.
    None where this Ray cannot say before a start: the command then plans once it has joined."""
    configure_ray_env(loopback=True)
    import ray

    if ray.is_initialized():
        return int(ray.cluster_resources().get("GPU", 0))
    # Ray's own count, the one ``ray.init`` declares; no public API gives it before a start.
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        count = manager.get_current_node_num_accelerators()
        visible = manager.get_current_process_visible_accelerator_ids()
    except (ImportError, AttributeError):  # a Ray whose private layout moved
        return None
    return count if visible is None else min(count, len(visible))


def read_cluster(where: str, remote: bool) -> ClusterInfo:
    import ray

    total = ray.cluster_resources()
    alive = [n for n in ray.nodes() if n["Alive"]]
    return ClusterInfo(where, len(alive), float(total.get("CPU", 0.0)), float(total.get("GPU", 0.0)), remote)


def trials_at_once(per_trial: dict[str, float]) -> int:
    """How many trials needing ``per_trial`` resources the cluster can run at once (at least 1)."""
    import ray

    total = ray.cluster_resources()
    return max(1, int(min(total.get(k, 0.0) / v for k, v in per_trial.items() if v > 0)))


def trial_device(gpu_ids: list) -> tuple[str, bool]:
    """(device, simulated) for a trial process that Ray gave ``gpu_ids``.

    CUDA only where Ray assigned GPUs and CUDA exists; a trial given no GPU never touches one.
    A trial given a GPU without CUDA fails, unless the test-only simulation switch is set.
    """
    if not gpu_ids:
        return "cpu", False
    import torch

    if torch.cuda.is_available():
        return "cuda", False
    if simulated_gpus():
        return "cpu", True
    raise RuntimeError(
        f"Ray gave this trial GPU(s) {gpu_ids} but torch {torch.__version__} here sees no CUDA device; "
        f"install a CUDA build of PyTorch on every GPU node ({SIMULATED_GPUS_ENV}=1 is for tests only)"
    )


def hide_gpus_unless_given() -> None:
    """A task given 0 GPUs keeps the node's CUDA_VISIBLE_DEVICES (Ray >= 2.60); hide them so that
    nothing in a CPU trial (a pinned-memory loader, say) initialises a GPU another trial holds."""
    import ray

    if not ray.get_gpu_ids():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


@dataclass(frozen=True)
class NodeView:
    """What a trial would see on one node."""

    node: str
    sees_store: bool
    given_gpu: bool
    cuda: bool
    gpu_memory: int | None
    simulated: bool


def look_around(note: str) -> dict:
    """Probe task: leave a note file where the driver will look, and say what CUDA there is."""
    import ray
    import torch

    try:
        Path(note).write_text("probe")
        wrote = True
    except OSError:
        wrote = False
    given_gpu = bool(ray.get_gpu_ids())
    cuda = given_gpu and torch.cuda.is_available()
    return {
        "node": ray.util.get_node_ip_address(),
        "wrote": wrote,
        "given_gpu": given_gpu,
        "cuda": cuda,
        "gpu_memory": torch.cuda.get_device_properties(0).total_memory if cuda else None,
        "simulated": simulated_gpus(),
    }


def probe_nodes(anchor: Path, gpus: float) -> list[NodeView]:
    """One probe per live node, holding the trials' GPU request where the node can grant it.

    ``anchor`` is a folder the driver sees (the results root or its nearest existing parent);
    a node sees the store when the driver finds the nonce file its probe wrote there. A probe
    still waiting after ``PROBE_TIMEOUT_S`` (its GPUs busy with other work) is left out.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nonce = uuid.uuid4().hex
    task = ray.remote(look_around)
    notes = {}
    for i, node in enumerate(n for n in ray.nodes() if n["Alive"]):
        grant = gpus if node["Resources"].get("GPU", 0.0) >= gpus > 0 else 0
        where = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        note = anchor / f".stability-probe-{nonce}-{i}"
        ref = task.options(num_cpus=0, num_gpus=grant, scheduling_strategy=where).remote(str(note))
        notes[ref] = note
    ready, late = ray.wait(list(notes), num_returns=len(notes), timeout=PROBE_TIMEOUT_S)
    for ref in late:
        ray.cancel(ref, force=True)
    views = []
    for ref in ready:
        answer = ray.get(ref)
        seen = notes[ref].exists()
        notes[ref].unlink(missing_ok=True)
        views.append(NodeView(sees_store=answer.pop("wrote") and seen, **answer))
    return views


def gpu_memory_per_trial(views: list[NodeView], gpus_per_trial: float) -> int:
    """Bytes a trial may use: the smallest probed GPU, scaled by a fractional GPU request.

    A probed GPU node without CUDA is refused (a real cluster must never train the GPU
    protocol on CPUs), unless the simulation switch is set there.
    """
    given = [v for v in views if v.given_gpu]
    broken = sorted({v.node for v in given if not v.cuda and not v.simulated})
    if broken:
        raise UserError(
            f"the cluster's GPU node(s) {', '.join(broken)} have no CUDA-capable PyTorch; install a CUDA build "
            f"of torch on every GPU node ({SIMULATED_GPUS_ENV}=1 is for tests only)"
        )
    sizes = [v.gpu_memory for v in given if v.gpu_memory]
    smallest = min(sizes) if sizes else DEFAULT_GPU_MEMORY
    return int(smallest * min(1.0, gpus_per_trial))


def store_anchor(root: Path) -> Path:
    """The results root, or its nearest existing parent: probes must not create the store."""
    probe = root.resolve()
    while not probe.exists():
        probe = probe.parent
    return probe


def check_store_seen(views: list[NodeView], root: Path) -> None:
    blind = sorted({v.node for v in views if not v.sees_store})
    if blind:
        raise UserError(
            f"trials on node(s) {', '.join(blind)} do not see the results root {root.resolve()}; put it on a "
            "filesystem every node mounts at the same path"
        )
