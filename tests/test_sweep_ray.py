"""Sweeps through Ray: end to end, resume, re-running deleted results, and --address."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from stability.cli import main
from tests.conftest import TINY_DATA, free_port

pytestmark = pytest.mark.slow

TINY_SWEEP = [
    "--model",
    "vit_c_1gf",
    "--optim",
    "adamw",
    *TINY_DATA,
    "--epochs",
    "1",
    "--trials",
    "3",
    "--name",
    "tiny",
]


def run_sweep(tmp_path, capsys, *extra) -> tuple[int, str]:
    rc = main(["sweep", *TINY_SWEEP, "--results", str(tmp_path), *extra])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_sweep_end_to_end_resume_and_rerun(tmp_path, capsys):
    rc, out = run_sweep(tmp_path, capsys)
    assert rc == 0, out
    sweep = tmp_path / "tiny"
    manifest = pd.read_parquet(sweep / "manifest.parquet")
    assert len(manifest) == 3
    trials = sorted(p.stem for p in (sweep / "trials").glob("*.parquet"))
    assert trials == sorted(manifest["trial_id"])
    assert len(list((sweep / "curves").glob("*.parquet"))) == 3
    assert out.count("/3  tiny") == 0 and out.count("vit_c_1gf-adamw-e1-") >= 3
    rows = pd.concat([pd.read_parquet(p) for p in (sweep / "trials").glob("*.parquet")])
    assert set(rows["status"]) == {"ok"} and rows["top1_err"].between(0, 100).all()
    assert sorted(rows["lr"]) == sorted(manifest["lr"])

    before = mtimes(sweep / "trials")
    rc, out = run_sweep(tmp_path, capsys)
    assert rc == 0 and "nothing to run" in out
    assert mtimes(sweep / "trials") == before

    gone = sorted(before)[:2]
    for name in gone:
        (sweep / "trials" / name).unlink()
    rc, out = run_sweep(tmp_path, capsys)
    assert rc == 0 and "2 of 3 trials to run" in out
    after = mtimes(sweep / "trials")
    assert set(after) == set(before)
    kept = sorted(before)[2]
    assert after[kept] == before[kept]

    from analysis import load_trials

    assert len(load_trials(tmp_path)) == 3


def test_changed_definition_is_refused(tmp_path, capsys):
    rc, _ = run_sweep(tmp_path, capsys, "--trials", "1")
    # --trials 1 then 3 under one name: a different manifest
    manifest = (tmp_path / "tiny" / "manifest.parquet").read_bytes()
    rc = main(["sweep", *TINY_SWEEP, "--results", str(tmp_path), "--seed", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "another definition" in err[0]
    assert (tmp_path / "tiny" / "manifest.parquet").read_bytes() == manifest


def test_sweep_on_a_separately_started_head(tmp_path, capsys):
    ray_bin = shutil.which("ray", path=os.path.dirname(sys.executable))
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run(
        [
            ray_bin,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            f"--port={port}",
            "--include-dashboard=false",
            "--num-cpus=2",
            "--disable-usage-stats",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    try:
        import ray

        ray.init(address=f"127.0.0.1:{port}", logging_level="error")
        head_node = ray.get_runtime_context().get_node_id()
        ray.shutdown()
        rc, out = run_sweep(tmp_path, capsys, "--trials", "2", "--address", f"127.0.0.1:{port}")
        assert rc == 0, out
        rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "tiny" / "trials").glob("*.parquet")])
        assert len(rows) == 2 and set(rows["node_id"]) == {head_node}
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True)


def test_unreachable_address_is_a_user_error(tmp_path, capsys):
    rc, out = run_sweep(tmp_path, capsys, "--address", f"127.0.0.1:{free_port()}")
    assert rc == 2 and "cannot reach a Ray cluster" in out


def test_packed_sweep_stores_the_same_trials_as_one_at_a_time(tmp_path, capsys):
    """--pack 3 trains the three trials as one population; each stored curve matches its own run."""
    rc, out = run_sweep(tmp_path / "alone", capsys, "--pack", "1", "--epochs", "2")
    assert rc == 0, out
    rc, out = run_sweep(tmp_path / "packed", capsys, "--pack", "3", "--epochs", "2")
    assert rc == 0, out
    assert "3 at a time as one population" in out and out.count("vit_c_1gf-adamw-e2-") >= 3
    curves = {
        side: pd.concat([pd.read_parquet(p) for p in (tmp_path / side / "tiny" / "curves").glob("*.parquet")])
        .sort_values(["trial_id", "epoch"])
        .reset_index(drop=True)
        for side in ("alone", "packed")
    }
    assert len(curves["packed"]) == 6
    assert list(curves["packed"]["trial_id"]) == list(curves["alone"]["trial_id"])
    pd.testing.assert_series_equal(curves["packed"]["train_loss"], curves["alone"]["train_loss"], rtol=1e-5)
    rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "packed" / "tiny" / "trials").glob("*.parquet")])
    assert (rows["population"] == 3).all() and set(rows["status"]) == {"ok"}
