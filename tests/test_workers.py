"""Trials across several workers (Ray Train, DDP on gloo) and gradient accumulation."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from cli import main
from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.trainer import train
from tests.conftest import TINY, TINY_DATA, kill_driver_when

pytestmark = pytest.mark.usefixtures("shared_ray")

# Two workers at half a CPU each: with the trial's own 0.01 CPU it fits CI's two cores.
TWO_WORKERS = ["--workers", "2", "--cpus-per-trial", "0.5"]
SWEEP = ["sweep", "--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA, "--trials", "1", "--name", "w"]


def curve_of(root, sweep: str = "w") -> pd.DataFrame:
    files = list((root / sweep / "curves").glob("*.parquet"))
    assert len(files) == 1
    return pd.read_parquet(files[0])


@pytest.mark.slow
def test_two_workers_match_one_worker_and_store_one_result(tmp_path, capsys):
    """vit_c_1gf has BatchNorm in its stem, synchronized across the workers.

    Both workers draw the global batch's augmentation from the same generators and train on
    their halves, and DDP averages the halves' gradients, so the math is one worker's: the
    curves differ only by float32 summation order (about 1e-7 relative per step), hence
    rel=1e-5 on the loss over two epochs. Errors count test images, and an argmax could in
    principle flip on such a difference; here none does.
    """
    assert main([*SWEEP, "--epochs", "2", "--results", str(tmp_path / "two"), *TWO_WORKERS]) == 0
    two = curve_of(tmp_path / "two")
    rows = list((tmp_path / "two" / "w" / "trials").glob("*.parquet"))
    assert len(rows) == 1  # one result per trial, written once
    row = pd.read_parquet(rows[0]).iloc[0]
    assert row["workers"] == 2 and row["status"] == "ok"

    manifest = pd.read_parquet(tmp_path / "two" / "w" / "manifest.parquet").iloc[0]
    cfg = TrainConfig(**{**TINY, "optim": "adamw", "epochs": 2, "lr": manifest["lr"], "wd": manifest["wd"]})
    one = train(cfg, data=load_synthetic(8))
    assert [p["epoch"] for p in one.curve] == list(two["epoch"])
    assert list(two["train_loss"]) == pytest.approx([p["train_loss"] for p in one.curve], rel=1e-5)
    assert list(two["top1_err"]) == [p["top1_err"] for p in one.curve]
    assert list(two["top1_err_raw"]) == [p["top1_err_raw"] for p in one.curve]


@pytest.mark.slow
def test_two_worker_trial_resumes_after_its_driver_is_killed(tmp_path):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "cli", *SWEEP, "--epochs", "4", "--results", str(results), *TWO_WORKERS]
    ckpt = results / "w" / "checkpoints"
    kill_driver_when(cmd, lambda: any(ckpt.glob("*/last.pt")), "an epoch checkpoint")
    assert not list((results / "w" / "trials").glob("*.parquet"))

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = [pd.read_parquet(p).iloc[0] for p in (results / "w" / "trials").glob("*.parquet")]
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["workers"] == 2
    assert rows[0]["resumed_from_epoch"] >= 1  # continued from worker 0's checkpoint
    assert list(curve_of(results)["epoch"]) == [1, 2, 3, 4]


@pytest.mark.slow
def test_a_trial_larger_than_the_cluster_is_refused_in_one_line(tmp_path, capsys):
    rc = main([*SWEEP, "--epochs", "1", "--results", str(tmp_path), "--workers", "64"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: one trial needs") and "64 workers" in err
    assert len(err.strip().splitlines()) == 1


def test_accumulation_equals_the_full_batch_without_batchnorm():
    """vit_p_1gf normalizes with LayerNorm only: two half batches give the full batch's gradient."""
    data = load_synthetic(8, train=256, test=64)
    cfg = TrainConfig(**{**TINY, "model": "vit_p_1gf", "optim": "sgd", "epochs": 2})
    full = train(cfg, data=data)
    halves = train(TrainConfig(**{**cfg.__dict__, "accumulate": 2}), data=data)
    assert halves.row["accumulate"] == 2
    assert [p["train_loss"] for p in halves.curve] == pytest.approx([p["train_loss"] for p in full.curve], rel=1e-6)
    assert [p["top1_err"] for p in halves.curve] == [p["top1_err"] for p in full.curve]


def test_worker_and_accumulation_flags_are_checked(tmp_path, capsys):
    out = ["--results", str(tmp_path)]
    assert main([*SWEEP, *out, "--workers", "0"]) == 2
    assert main([*SWEEP, *out, "--workers", "2", "--pack", "4"]) == 2
    assert main(["train", "--model", "vit_p_1gf", "--optim", "sgd", *TINY_DATA, *out, "--accumulate", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "split into 1 workers x 3 micro-batches" in err[2]
