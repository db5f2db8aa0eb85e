"""A simulated cluster of two nodes on 127.0.0.1, each declaring 1 CPU and 1 GPU: fractional
GPUs spread trials over both nodes at once, and a multi-worker trial is placed as one gang."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cli import main
from tests.conftest import TINY_DATA, simulated_gpu_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.usefixtures("no_ray")]

TINY = ["--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA]


@pytest.fixture(scope="module")
def two_nodes():
    with simulated_gpu_cluster({"num_cpus": 1, "num_gpus": 1}, {"num_cpus": 1, "num_gpus": 1}) as cluster:
        yield cluster


def rows_of(results: Path, sweep: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in (results / sweep / "trials").glob("*.parquet")], ignore_index=True)


def node_ids(cluster) -> set[str]:
    return {node.node_id for node in cluster.list_all_nodes()}


def test_half_gpus_run_trials_concurrently_on_both_nodes(two_nodes, tmp_path, capsys):
    results = tmp_path / "results"
    flags = ["--gpus-per-trial", "0.5", "--cpus-per-trial", "0.5", "--pack", "1"]
    argv = ["sweep", *TINY, "--epochs", "2", "--trials", "4", "--name", "half", "--results", str(results), *flags]
    assert main([*argv, "--address", two_nodes.address]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"cluster {two_nodes.address}: 2 nodes, 2 GPUs, 2 CPUs"
    assert "GPU memory per trial: 40.0 GiB" in out  # half of the default 80 GiB card
    rows = rows_of(results, "half")
    assert len(rows) == 4 and set(rows["status"]) == {"ok"} and rows["simulated_gpu"].all()
    assert set(rows["node_id"]) == node_ids(two_nodes)  # both nodes trained
    spans = [(pd.Timestamp(r.started_at), pd.Timestamp(r.finished_at), r.node_id) for r in rows.itertuples()]
    overlapping = {(a[2], b[2]) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[0] < b[1] and b[0] < a[1]}
    assert any(x != y for x, y in overlapping), spans  # trials on the two nodes ran at the same time


def test_two_workers_are_placed_as_one_gang_and_store_one_result(two_nodes, tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["sweep", *TINY, "--epochs", "1", "--trials", "1", "--name", "gang", "--results", str(results)]
    assert main([*argv, "--workers", "2", "--cpus-per-trial", "0.5", "--address", two_nodes.address]) == 0
    rows = rows_of(results, "gang")
    assert len(rows) == 1 and rows.loc[0, "status"] == "ok" and rows.loc[0, "workers"] == 2
    assert rows.loc[0, "simulated_gpu"] and rows.loc[0, "device"] == "cpu"
    assert len(list((results / "gang" / "curves").glob("*.parquet"))) == 1
