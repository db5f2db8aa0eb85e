"""Sweeps through Ray: end to end, resume, re-running deleted results, packing, out-of-memory splits."""

from __future__ import annotations

import pandas as pd
import pytest

from cli import main
from tests.conftest import TINY_DATA, free_port

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray")]

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


def test_sweep_end_to_end_resume_and_rerun(tmp_path, capsys, shared_ray):
    joined = shared_ray.get_runtime_context().gcs_address
    rc, out = run_sweep(tmp_path, capsys)
    assert rc == 0, out
    # the command ran on the Ray this process had joined, and left it running
    assert out.startswith(f"cluster Ray at {joined} (joined before this command): 1 node")
    assert shared_ray.is_initialized() and shared_ray.get_runtime_context().gcs_address == joined
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

    # --trials raised: two more draws; the stored trials and their files stay as they were
    manifest_before, files_before = manifest, {n: (sweep / "trials" / n).read_bytes() for n in after}
    rc, out = run_sweep(tmp_path, capsys, "--trials", "5")
    assert rc == 0 and "sweep tiny: extended from 3 to 5 trials" in out and "2 of 5 trials to run" in out, out
    grown = pd.read_parquet(sweep / "manifest.parquet")
    pd.testing.assert_frame_equal(grown.iloc[:3], manifest_before)
    assert {n: (sweep / "trials" / n).read_bytes() for n in after} == files_before
    assert sorted(p.stem for p in (sweep / "trials").glob("*.parquet")) == sorted(grown["trial_id"])

    from analysis import load_trials

    assert len(load_trials(tmp_path)) == 5


def test_changed_definition_is_refused(tmp_path, capsys):
    rc, out = run_sweep(tmp_path, capsys, "--trials", "1")
    assert rc == 0, out
    # --trials 1 then 3 under one name: a different manifest
    manifest = (tmp_path / "tiny" / "manifest.parquet").read_bytes()
    rc = main(["sweep", *TINY_SWEEP, "--results", str(tmp_path), "--seed", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "another definition" in err[0]
    assert (tmp_path / "tiny" / "manifest.parquet").read_bytes() == manifest


def test_unreachable_address_is_a_user_error(tmp_path, capsys):
    rc, out = run_sweep(tmp_path, capsys, "--address", f"127.0.0.1:{free_port()}")
    assert rc == 2 and "cannot reach a Ray cluster" in out


def test_another_cluster_is_refused_while_this_process_has_joined_one(tmp_path, capsys, shared_ray):
    """--address names a cluster this process cannot join while it holds another Ray; the
    joined one is left as it was."""
    address = shared_ray.get_runtime_context().gcs_address
    rc, out = run_sweep(tmp_path, capsys, "--address", address)
    assert rc == 2 and "has joined a Ray already" in out and shared_ray.is_initialized()
    assert not (tmp_path / "tiny").exists()


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


def test_a_population_out_of_memory_is_split_down_to_single_trials(tmp_path, capsys, monkeypatch):
    """A fault hook raises torch.OutOfMemoryError for populations above a size: a pack of 4
    trains as 2 + 2; where even one trial is too big, it alone is recorded as failed."""
    from sweeps.faults import OOM_ENV

    monkeypatch.setenv(OOM_ENV, "2")
    rc, out = run_sweep(tmp_path / "halves", capsys, "--trials", "4", "--pack", "4")
    assert rc == 0, out
    assert out.count("split: population of 4 from vit_c_1gf-adamw-e1-000 ran out of memory") == 1
    assert "training it as 2 + 2" in out and "population of 2 from" not in out
    rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "halves" / "tiny" / "trials").glob("*.parquet")])
    assert len(rows) == 4 and set(rows["status"]) == {"ok"} and (rows["population"] == 2).all()
    assert not list((tmp_path / "halves" / "tiny" / "checkpoints").glob("*"))

    monkeypatch.setenv(OOM_ENV, "0")
    rc, out = run_sweep(tmp_path / "none", capsys, "--trials", "2", "--pack", "2", "--max-failures", "0")
    assert rc == 0, out
    assert "training it as 1 + 1" in out and out.count("FAILED: ") == 2
    rows = pd.concat([pd.read_parquet(p) for p in (tmp_path / "none" / "tiny" / "trials").glob("*.parquet")])
    assert len(rows) == 2 and set(rows["status"]) == {"failed"}
    assert rows["error"].str.contains("OutOfMemoryError: CUDA out of memory").all()


def test_a_relative_results_root_stores_every_trial(tmp_path, monkeypatch, capsys):
    """The default --results is relative ("results"), while each Tune trial runs in a working
    directory of its own: every path a trial uses (the store, the driver's lock) must still
    name the command's folder."""
    monkeypatch.chdir(tmp_path)
    argv = ["sweep", "--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA, "--trials", "2", "--epochs", "1"]
    assert main([*argv, "--name", "rel", "--results", "results"]) == 0
    rows = pd.concat(pd.read_parquet(p) for p in (tmp_path / "results" / "rel" / "trials").glob("*.parquet"))
    assert len(rows) == 2 and set(rows["status"]) == {"ok"}
    assert "finished without a stored result" not in capsys.readouterr().out


def test_the_local_gpu_count_known_before_ray_starts_is_ray_s_own(shared_ray):
    from sweeps import cluster

    declared = int(shared_ray.cluster_resources().get("GPU", 0))
    shared_ray.shutdown()  # counted as a command without a Ray counts it; the next test starts it again
    assert cluster.local_gpus() == declared
