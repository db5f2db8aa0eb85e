"""The trainer: determinism, resume, divergence, the result row and the train command."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cli import main
from stability.config import TrainConfig
from stability.data import load_synthetic
from stability.trainer import train
from tests.conftest import TINY

SMALL = load_synthetic(8, train=256, test=64)


def tiny(**kw) -> TrainConfig:
    return TrainConfig(**{**TINY, "optim": "adamw", "epochs": 3, **kw})


def test_two_runs_with_one_seed_are_identical():
    a, b = train(tiny(), data=SMALL), train(tiny(), data=SMALL)
    keys = ["train_loss", "top1_err", "top1_err_raw", "lr"]
    assert [[p[k] for k in keys] for p in a.curve] == [[p[k] for k in keys] for p in b.curve]
    c = train(tiny(seed=1), data=SMALL)
    assert [p["train_loss"] for p in c.curve] != [p["train_loss"] for p in a.curve]


class Interrupt(Exception):
    pass


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    full = train(tiny(), checkpoint_dir=tmp_path / "full", data=SMALL)

    def stop_in_epoch_3(point):
        if point["epoch"] == 2:
            raise Interrupt  # raised before epoch 2's checkpoint: resume must start after epoch 1

    with pytest.raises(Interrupt):
        train(tiny(), checkpoint_dir=tmp_path / "cut", on_epoch=stop_in_epoch_3, data=SMALL)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["epoch"] == 1
    resumed = train(tiny(), checkpoint_dir=tmp_path / "cut", data=SMALL)
    keys = ["epoch", "train_loss", "top1_err", "top1_err_raw", "lr"]
    assert [[p[k] for k in keys] for p in resumed.curve] == [[p[k] for k in keys] for p in full.curve]
    assert resumed.row["top1_err"] == full.row["top1_err"]


@pytest.mark.parametrize("damage", [b"", b"torn", b"not a torch file", "truncated"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_trial_restarts(tmp_path, capsys, damage):
    """The store's layout: <sweep>/checkpoints/<trial>/last.pt, quarantined into <sweep>/quarantine/."""
    folder = tmp_path / "sweep" / "checkpoints" / "t"
    with pytest.raises(Interrupt):
        train(
            tiny(),
            checkpoint_dir=folder,
            on_epoch=lambda p: (_ for _ in ()).throw(Interrupt) if p["epoch"] == 2 else None,
            data=SMALL,
        )
    good = (folder / "last.pt").read_bytes()
    bad = good[: len(good) // 2] if damage == "truncated" else damage
    (folder / "last.pt").write_bytes(bad)
    resumed = train(tiny(), checkpoint_dir=folder, data=SMALL, quarantine=tmp_path / "sweep" / "quarantine")
    assert resumed.row["status"] == "ok" and resumed.row["resumed_from_epoch"] == 0
    assert [p["top1_err"] for p in resumed.curve] == [p["top1_err"] for p in train(tiny(), data=SMALL).curve]
    aside = list((tmp_path / "sweep" / "quarantine").iterdir())
    assert len(aside) == 1 and aside[0].read_bytes() == bad
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unreadable checkpoint" in err[0] and "restarts from epoch 0" in err[0]


def test_divergence_is_recorded_with_partial_curve():
    result = train(tiny(optim="sgd", lr=1e6, epochs=3), data=SMALL)
    row = result.row
    assert row["status"] == "diverged"
    assert row["top1_err"] == 100.0 and row["top1_err_raw"] == 100.0
    assert row["diverged_epoch"] == len(result.curve) >= 1
    assert not math.isfinite(result.curve[-1]["train_loss"])


def test_result_row_columns():
    row = train(tiny(epochs=1), data=SMALL).row
    for col in [
        "sweep",
        "trial_id",
        "index",
        "model",
        "family",
        "stem",
        "optimizer",
        "lr",
        "wd",
        "epochs",
        "batch_size",
        "dataset",
        "image_size",
        "seed",
        "status",
        "top1_err",
        "top1_err_raw",
        "train_loss",
        "diverged_epoch",
        "wall_s",
        "device",
        "flops",
        "params",
        "acts",
        "started_at",
        "finished_at",
        "version",
    ]:
        assert col in row
    assert row["family"] == "ViT_C" and row["lr"] == pytest.approx(2.5e-3)  # Table 4 optimum when lr is None


def test_learning_beats_chance_on_synthetic():
    result = train(tiny(epochs=4, autoaugment=False, mixing=False))
    assert result.curve[-1]["top1_err_raw"] < 50.0  # chance is 90%


def test_train_command_writes_store(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--model",
            "vit_c_1gf",
            "--optim",
            "sgd",
            "--dataset",
            "synthetic",
            "--epochs",
            "2",
            "--image-size",
            "8",
            "--patch-size",
            "4",
            "--batch-size",
            "64",
            "--results",
            str(tmp_path),
            "--device",
            "cpu",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "epoch   1/2" in out and "img/s" in out
    trials = list((tmp_path / "train" / "trials").glob("*.parquet"))
    curves = list((tmp_path / "train" / "curves").glob("*.parquet"))
    assert len(trials) == 1 and len(curves) == 1
    assert len(pd.read_parquet(curves[0])) == 2
    assert pd.read_parquet(trials[0])["status"].iloc[0] == "ok"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "vit_nope", "--optim", "sgd"], "unknown model"),
        (["--model", "vit_c_1gf", "--optim", "lamb"], "unknown optimizer 'lamb'"),
        (["--model", "vit_c_1gf", "--optim", "sgd", "--dataset", "mnist3d"], "unknown dataset"),
        (["--model", "vit_c_1gf", "--optim", "sgd", "--lr", "-1"], "lr must be a number > 0"),
        (["--model", "vit_c_1gf", "--optim", "sgd", "--epochs", "0"], "epochs must be an integer >= 1"),
    ],
)
def test_train_user_errors(argv, message, capsys, tmp_path):
    assert main(["train", *argv, "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


@pytest.mark.slow
def test_compiled_training_matches_eager(capsys):
    """torch.compile fuses kernels, which reorders float32 rounding: the curves agree to 1e-4."""
    cfg = tiny(model="vit_p_1gf", epochs=1)
    eager = train(cfg, data=SMALL)
    compiled = train(TrainConfig(**{**cfg.__dict__, "compile": True}), data=SMALL)
    assert "torch.compile failed" not in capsys.readouterr().err  # it really compiled
    assert compiled.curve[0]["train_loss"] == pytest.approx(eager.curve[0]["train_loss"], rel=1e-4)
    assert compiled.row["trial_id"] == eager.row["trial_id"]  # compiling does not change what the run is


def test_compile_falls_back_to_eager_when_compilation_fails(monkeypatch, capsys):
    from stability import trainer

    def broken(net):
        def fail(x):
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(trainer.torch, "compile", broken)
    result = train(TrainConfig(**{**tiny(epochs=1).__dict__, "compile": True}), data=SMALL)
    eager = train(tiny(epochs=1), data=SMALL)
    assert result.curve[0]["train_loss"] == eager.curve[0]["train_loss"]
    assert "torch.compile failed (RuntimeError: no compiler here); training eager" in capsys.readouterr().err


def test_a_row_records_the_installed_package_version():
    from importlib.metadata import version

    assert train(tiny(epochs=1), data=SMALL).row["version"] == version("edf-sweep-engine")
