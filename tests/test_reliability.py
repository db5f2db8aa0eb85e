"""Reliability: bad input, a killed driver, a killed worker, corrupt results, load, sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest

from cli import main
from store import Store
from sweeps import engine, faults, plan
from tests.conftest import TINY_DATA, free_port, kill_driver_when, wait_for

TINY = ["--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def existing_store(tmp_path):
    """A store holding the manifest of sweep 'tiny' (written as the sweep command writes it)."""
    scale = plan.choose_scale("smoke", False, dataset="synthetic", image_size=8, patch_size=4, batch_size=64)
    manifest = plan.edf_manifest("tiny", "vit_c_1gf", "adamw", scale, trials=3, seed=0)
    engine.prepare_manifest(Store(tmp_path / "results"), "tiny", manifest)
    bad_data = tmp_path / "bad-fmnist"
    bad_data.mkdir()
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (bad_data / name).write_bytes(b"not an idx file")
    (tmp_path / "a-file").write_text("x")
    return tmp_path


SWEEP = [
    "sweep",
    "--model",
    "vit_c_1gf",
    "--optim",
    "adamw",
    "--preset",
    "smoke",
    "--dataset",
    "synthetic",
    "--image-size",
    "8",
    "--batch-size",
    "64",
    "--trials",
    "3",
    "--name",
    "tiny",
]
BAD_INPUTS = {
    "unknown model": (["sweep", "--model", "vit_x", "--optim", "sgd"], "unknown model"),
    "unknown optimizer": (["sweep", "--model", "vit_c_1gf", "--optim", "lamb"], "unknown optimizer 'lamb'"),
    "unknown dataset": ([*SWEEP, "--dataset", "mnist3d"], "unknown dataset"),
    "unknown preset": ([*SWEEP, "--preset", "huge"], "unknown preset"),
    "non-numeric range": ([*SWEEP, "--lr-range", "a,b"], "--lr-range must be two numbers"),
    "zero range": ([*SWEEP, "--lr-range", "0,1"], "0 < A < B"),
    "negative range": ([*SWEEP, "--wd-range=-1,2"], "0 < A < B"),
    "reversed range": ([*SWEEP, "--lr-range", "3,1"], "0 < A < B"),
    "trials below 1": ([*SWEEP, "--trials", "0"], "--trials must be at least 1"),
    "non-numeric trials": ([*SWEEP, "--trials", "many"], "invalid int value"),
    "negative epochs": ([*SWEEP, "--epochs", "-2"], "--epochs must be at least 1"),
    "missing data": ([*SWEEP, "--dataset", "fashion-mnist", "--data-dir", "{tmp}/nowhere"], "missing"),
    "malformed data": ([*SWEEP, "--dataset", "fashion-mnist", "--data-dir", "{tmp}/bad-fmnist"], "not an IDX file"),
    "unwritable results": ([*SWEEP, "--results", "{tmp}/a-file/results"], "not writable"),
    "unreachable address": ([*SWEEP, "--address", "127.0.0.1:{port}"], "cannot reach a Ray cluster"),
    "reused name": ([*SWEEP, "--seed", "9"], "another definition (it differs in lr, wd, seed)"),
    "shrunk sweep": ([*SWEEP, "--trials", "2"], "number of trials; it has 3: --trials 3 resumes it, more extends it"),
    "extended grid": (
        [*SWEEP, "--sampler", "grid", "--space", "wd=choice:0.1|0.2", "--space", "lr=choice:0.1|0.2", "--trials", "9"],
        "each of its space's 4 points once; it cannot be extended to --trials 9",
    ),
    "bad patch": ([*SWEEP, "--patch-size", "3"], "not divisible"),
    "grid figure": (["grid", "--figure", "7"], "invalid choice"),
    "grid model": (["grid", "--figure", "2", "--models", "vit_x", "--dry-run"], "unknown model"),
    "grid epochs": (["grid", "--figure", "2", "--epochs", "0,1", "--dry-run"], "at least 1"),
    "negative seed": ([*SWEEP, "--seed", "-1"], "--seed: must be at least 0"),
    "huge seed": ([*SWEEP, "--seed", str(2**32)], "--seed: must be below 2**32"),
    "negative max failures": ([*SWEEP, "--max-failures", "-1"], "--max-failures: must be at least 0"),
    "name outside the root": ([*SWEEP, "--name", "../../etc"], "sweep name '../../etc' is not allowed"),
    "name with a slash": ([*SWEEP, "--name", "a/b"], "one path component"),
    "noise of a name outside": (["noise", "--sweep", "../tiny"], "sweep name '../tiny' is not allowed"),
    "train patch": (["train", "--model", "vit_c_1gf", "--optim", "sgd", "--patch-size", "5"], "patch size 5"),
    "figures resamples": (["figures", "--resamples", "0"], "--resamples: must be at least 1"),
    "figures protocol": (["figures", "--protocol", "nope"], "--protocol 'nope'"),
    "nan cpus": ([*SWEEP, "--cpus-per-trial", "nan"], "expected a finite number"),
    "missing results for figures": (["figures", "--results", "{tmp}/nowhere"], "no results folder"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_store_unchanged_no_ray(case, existing_store, capsys, ray_never_started):
    argv, message = BAD_INPUTS[case]
    argv = [a.format(tmp=existing_store, port=free_port()) for a in argv]
    if "--results" not in argv:
        argv += ["--results", str(existing_store / "results")]
    before = snapshot(existing_store)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert snapshot(existing_store) == before


def test_dry_runs_start_no_ray(existing_store, capsys, ray_never_started):
    """Without --preset the plan is the one for this machine's GPUs, known before Ray starts."""
    results = ["--results", str(existing_store / "results")]
    assert main(["grid", "--figure", "2", "--models", "vit_c_1gf", "--dry-run", *results]) == 0
    assert main(["sweep", "--model", "vit_c_1gf", "--optim", "adamw", "--dry-run", *results]) == 0
    out = capsys.readouterr().out
    assert out.count("protocol: smoke (the cluster has no GPU)") == 2 and not out.startswith("cluster")


def test_a_finished_sweep_says_nothing_to_run_before_ray_starts(existing_store, capsys, ray_never_started):
    """Every trial of the stored sweep has a result (one diverged, one failed and kept by
    --no-retry-failed): the rerun says so, and shows the status, without starting Ray."""
    store = Store(existing_store / "results")
    rows = store.read_manifest("tiny").to_dict("records")
    for row, (status, err) in zip(rows, [("ok", 40.0), ("diverged", 100.0), ("failed", 100.0)], strict=True):
        store.write_trial("tiny", {**row, "status": status, "top1_err": err, "top1_err_raw": err}, [])
    before = snapshot(existing_store)
    assert main([*SWEEP, "--results", str(store.root), "--no-retry-failed"]) == 0
    out = capsys.readouterr().out
    assert "sweep tiny: all 3 trials already have results; nothing to run" in out
    assert "tiny" in out.splitlines()[-2] and "1 failed trial(s)" in out.splitlines()[-1]
    assert snapshot(existing_store) == before
    with pytest.raises(AssertionError, match="started Ray"):  # the failed trial is pending without the flag
        main([*SWEEP, "--results", str(store.root)])


def test_bad_input_through_the_console_script_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "sweep", "--model", "nope", "--optim", "sgd", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


def sweep_cmd(results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cli", "sweep", *TINY, "--results", str(results), *extra]


@pytest.mark.slow
def test_driver_sigkill_then_resume_finishes_exactly_once(tmp_path):
    results = tmp_path / "results"
    cmd = sweep_cmd(results, "--trials", "4", "--epochs", "3", "--name", "crash")
    trials, ckpts = results / "crash" / "trials", results / "crash" / "checkpoints"
    kill_driver_when(
        cmd,
        lambda: len(list(trials.glob("*.parquet"))) >= 2 and any(ckpts.glob("*/last.pt")),
        "two finished trials and one checkpointed trial in flight",
    )
    finished = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in trials.glob("*.parquet")}
    in_flight = {p.parent.name for p in ckpts.glob("*/last.pt")}
    assert finished and in_flight

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = pd.read_parquet(results / "crash" / "manifest.parquet")
    files = sorted(p.stem for p in trials.glob("*.parquet"))
    assert files == sorted(manifest["trial_id"])  # one result per manifest row, none extra
    for name, (data, mtime) in finished.items():  # finished trials were not trained again
        assert (trials / name).read_bytes() == data and (trials / name).stat().st_mtime_ns == mtime
    rows = pd.concat([pd.read_parquet(p) for p in trials.glob("*.parquet")])
    assert rows["trial_id"].is_unique and set(rows["status"]) == {"ok"}
    resumed = rows[rows["trial_id"].isin(in_flight)]
    assert (resumed["resumed_from_epoch"] >= 1).any()  # continued from its epoch checkpoint


@pytest.mark.slow
@pytest.mark.parametrize("pack", ["1", "2"])
@pytest.mark.usefixtures("shared_ray")
def test_worker_killed_mid_epoch_is_retried_from_checkpoint(pack, tmp_path, capsys, monkeypatch):
    """With --pack 2 both trials train in the killed worker's population and resume together."""
    results = tmp_path / "results"
    victim = plan.trial_id("vit_c_1gf", "adamw", 3, 0)
    monkeypatch.setenv(faults.WORKER_DEATH_ENV, f"{victim}@2")
    flags = ["--trials", "2", "--epochs", "3", "--name", "w", "--pack", pack]
    assert main(["sweep", *TINY, "--results", str(results), *flags]) == 0
    assert (results / "w" / f".injected-{victim}").exists()  # the worker really died once
    rows = pd.concat([pd.read_parquet(p) for p in (results / "w" / "trials").glob("*.parquet")])
    assert len(rows) == 2 and set(rows["status"]) == {"ok"}
    resumed = rows if pack == "2" else rows[rows["trial_id"] == victim]
    assert (resumed["resumed_from_epoch"] == 1).all()
    curve = pd.read_parquet(results / "w" / "curves" / f"{victim}.parquet")
    assert list(curve["epoch"]) == [1, 2, 3]
    assert not list((results / "w" / "checkpoints").glob("*"))  # finished trials leave no checkpoint


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_failed_trials_keep_their_checkpoints_and_the_rerun_retries_them(tmp_path, capsys, monkeypatch):
    """Two trials fail for good after epoch 1 (more often than --max-failures allows). Their
    checkpoints are kept; status counts them and names the command; --no-retry-failed keeps
    them; the plain rerun retries both: one continues from epoch 1, the other, whose checkpoint
    was damaged meanwhile, is quarantined and restarts from epoch 0. Both end ok."""
    results = tmp_path / "results"
    kept, damaged = (plan.trial_id("vit_c_1gf", "adamw", 3, i) for i in (0, 1))
    flags = ["--trials", "2", "--epochs", "3", "--name", "f", "--max-failures", "1"]
    argv = ["sweep", *TINY, "--results", str(results), *flags]
    monkeypatch.setenv(faults.FAIL_ENV, f"{kept}@1,{damaged}@1")
    assert main(argv) == 0
    store = Store(results)
    for trial_id in (kept, damaged):
        row = store.read_trial("f", trial_id)
        assert row["status"] == "failed" and "injected failure" in row["error"]
        assert (store.checkpoint_dir("f", trial_id) / "last.pt").exists()
    capsys.readouterr()
    assert main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    retry = f"retry: cd {os.getcwd()} && stability sweep --model"
    assert f"f: 2 failed trial(s), kept with their checkpoints; {retry}" in out

    monkeypatch.delenv(faults.FAIL_ENV)
    assert main([*argv, "--no-retry-failed"]) == 0
    assert "all 2 trials already have results" in capsys.readouterr().out
    (store.checkpoint_dir("f", damaged) / "last.pt").write_bytes(b"torn")
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "retrying 2 failed trial(s)" in out.out and "2 of 2 trials to run" in out.out
    rows = {i: store.read_trial("f", i) for i in (kept, damaged)}
    assert {r["status"] for r in rows.values()} == {"ok"}
    assert (rows[kept]["resumed_from_epoch"], rows[damaged]["resumed_from_epoch"]) == (1, 0)
    assert [p.read_bytes() for p in (results / "f" / "quarantine").iterdir()] == [b"torn"]
    for trial_id in (kept, damaged):
        assert list(pd.read_parquet(store.curve_path("f", trial_id))["epoch"]) == [1, 2, 3]
        assert not store.checkpoint_dir("f", trial_id).exists()


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_truncated_and_empty_results_are_reported_set_aside_and_rerun(tmp_path, capsys):
    from analysis import load_trials
    from analysis.loading import UnreadableResultWarning

    results = tmp_path / "results"
    argv = ["sweep", *TINY, "--results", str(results), "--trials", "3", "--epochs", "1", "--name", "c"]
    assert main(argv) == 0
    files = sorted((results / "c" / "trials").glob("*.parquet"))
    truncated, empty = files[0], files[1]
    original = truncated.read_bytes()
    truncated.write_bytes(original[: len(original) // 2])
    empty.write_bytes(b"")
    capsys.readouterr()

    assert main(["status", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert str(truncated) in out and str(empty) in out and "remaining" in out
    with pytest.warns(UnreadableResultWarning) as caught:
        assert len(load_trials(results)) == 1
    assert {str(truncated), str(empty)} <= {
        str(w.message).split(": ")[0].removeprefix("unreadable result file ") for w in caught
    }

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 of 3 trials to run" in out and out.count("set aside") == 2
    aside = sorted((results / "c" / "quarantine").iterdir())
    assert len(aside) == 2 and {p.read_bytes() for p in aside} == {original[: len(original) // 2], b""}
    assert len(load_trials(results)) == 3


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_load_a_paper_sized_sweep_of_64_tiny_trials_every_row_present(tmp_path, capsys):
    results = tmp_path / "results"
    argv = [
        "sweep",
        "--model",
        "vit_p_1gf",
        "--optim",
        "sgd",
        "--dataset",
        "synthetic",
        "--image-size",
        "4",  # one token per image: the load is on Tune and the store, not on training
        "--patch-size",
        "4",
        "--batch-size",
        "1024",
        "--epochs",
        "1",
        "--trials",
        "64",
        "--name",
        "load",
        "--results",
        str(results),
    ]
    assert main(argv) == 0
    manifest = pd.read_parquet(results / "load" / "manifest.parquet")
    files = sorted(p.stem for p in (results / "load" / "trials").glob("*.parquet"))
    assert len(manifest) == 64 and files == sorted(manifest["trial_id"])
    assert "0/64" not in capsys.readouterr().out.splitlines()[-1]


def listening(pids: set[int]) -> set[tuple[str, int, str]]:
    found = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                name = "?"
            found.add((conn.laddr.ip, conn.laddr.port, name))
    return found


@pytest.mark.slow
def test_local_sweep_listens_on_loopback_only(tmp_path):
    results = tmp_path / "results"
    proc = subprocess.Popen(
        sweep_cmd(results, "--trials", "2", "--epochs", "4", "--name", "net"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: any((results / "net" / "checkpoints").glob("*/last.pt")), 300, "a running trial")
        root = psutil.Process(proc.pid)
        pids = {proc.pid} | {c.pid for c in root.children(recursive=True)}
        sockets = listening(pids)
        assert sockets, "expected Ray's local services to be listening"
        outside = {s for s in sockets if s[0] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")}
        assert not outside, f"sockets listening beyond loopback: {sorted(outside)}"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
