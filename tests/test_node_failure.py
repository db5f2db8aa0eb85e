"""A worker node of a simulated two-node GPU cluster dies mid-sweep: its trial is retried on
the surviving node from its last epoch checkpoint, and every manifest row ends with exactly
one result."""

from __future__ import annotations

import os
import sys

import pandas as pd
import pytest

from sweeps.cluster import SIMULATED_GPUS_ENV
from tests.conftest import FAST_HEALTH_CHECKS, TINY_DATA, running, simulated_gpu_cluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.usefixtures("no_ray")]


def test_a_killed_node_is_survived_from_the_last_checkpoint(tmp_path):
    results = tmp_path / "results"
    one = {"num_cpus": 1, "num_gpus": 1}
    with simulated_gpu_cluster(one, one, system_config=FAST_HEALTH_CHECKS) as cluster:
        head = cluster.head_node.node_id
        (worker,) = cluster.worker_nodes
        argv = ["--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA, "--epochs", "6", "--trials", "2"]
        cmd = [sys.executable, "-m", "cli", "sweep", *argv, "--pack", "1", "--name", "n"]
        env = {k: v for k, v in os.environ.items() if k != SIMULATED_GPUS_ENV}
        with running([*cmd, "--results", str(results), "--address", cluster.address], env) as driver:
            ckpts = results / "n" / "checkpoints"
            wait_for(lambda: len(list(ckpts.glob("*/last.pt"))) == 2 or driver.poll() is not None, 300, "checkpoints")
            assert len(list(ckpts.glob("*/last.pt"))) == 2, "both trials should be checkpointed, one on each node"
            cluster.remove_node(worker, allow_graceful=False)  # the node's raylet and its workers, by handle
            out, _ = driver.communicate(timeout=400)
    assert driver.returncode == 0, out[-3000:]
    manifest = pd.read_parquet(results / "n" / "manifest.parquet")
    files = sorted(p.stem for p in (results / "n" / "trials").glob("*.parquet"))
    assert files == sorted(manifest["trial_id"])  # one result per row, none doubled
    rows = pd.concat([pd.read_parquet(p) for p in (results / "n" / "trials").glob("*.parquet")])
    assert set(rows["status"]) == {"ok"} and set(rows["node_id"]) == {head}  # all finished on the survivor
    assert (rows["resumed_from_epoch"] >= 1).sum() == 1  # the moved trial continued from its checkpoint
    curves = pd.concat([pd.read_parquet(p) for p in (results / "n" / "curves").glob("*.parquet")])
    assert curves.groupby("trial_id")["epoch"].apply(list).map(lambda e: e == [1, 2, 3, 4, 5, 6]).all()
