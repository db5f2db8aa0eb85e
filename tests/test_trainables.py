"""Your own training function: the trainable registry, its runs, and sweeps of it on Ray Tune
(a toy trainable for the engine's cases; the modular-addition example for a real one)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli import main
from stability import trainables
from stability.errors import UserError
from tests.conftest import kill_driver_when

pytestmark = pytest.mark.usefixtures("shared_ray")

EXAMPLE = Path(__file__).parents[1] / "examples" / "modular_addition.py"
STUDY = Path(__file__).parents[1] / "examples" / "modular_addition.toml"

# The toy: a loss with its optimum at lr = 0.01; ``fault`` 1 raises, 2 returns without reporting,
# 3 reports a NaN loss at its second epoch.
TOY = """
import json, math
from stability import trainables

@trainables.register(
    "toy", metric="loss", epochs=3, initial=9.0,
    hyperparameters={"lr": trainables.positive(0.1), "wd": trainables.nonnegative(0.0),
                     "fault": trainables.integer(0, low=0, high=3)},
)
def toy(params, report, checkpoint):
    state = checkpoint / "state.json"
    start = json.loads(state.read_text())["epoch"] if state.exists() else 0
    for epoch in range(start, params["epochs"]):
        if params["fault"] == 1:
            raise ValueError("toy failure on purpose")
        if params["fault"] == 2:
            return
        loss = (math.log10(params["lr"]) + 2) ** 2 + params["wd"] + 1 / (epoch + 1) + 0.01 * params["seed"]
        if params["fault"] == 3 and epoch == 1:
            loss = float("nan")
        state.write_text(json.dumps({"epoch": epoch + 1}))
        report(epoch + 1, loss=loss, lr_seen=params["lr"])
"""


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "toy_trainable.py"
    path.write_text(TOY)
    from stability.imports import load_imports

    load_imports([str(path)])
    yield str(path)
    sys.modules.pop("toy_trainable", None)
    trainables._ENTRIES.pop("toy", None)


def row(**values) -> dict:
    return {"trainer": "toy", "sweep": "s", "trial_id": "t", "seed": 0, "epochs": 3, **values}


def test_a_run_reports_its_curve_and_its_last_metric(toy, tmp_path):
    result = trainables.run(row(lr=0.01, wd=0.5), tmp_path / "ck")
    losses = [0.5 + 1 / e for e in (1, 2, 3)]
    assert [p["epoch"] for p in result.curve] == [1, 2, 3]
    assert [p["loss"] for p in result.curve] == pytest.approx(losses)
    assert result.row["status"] == "ok" and result.row["loss"] == pytest.approx(losses[-1])
    assert (result.row["metric"], result.row["metric_direction"], result.row["metric_diverged"]) == (
        "loss",
        "minimize",
        math.inf,
    )
    assert result.row["completed_epochs"] == 3 and result.row["resumed_from_epoch"] is None
    assert result.row["metric_initial"] == 9.0  # the declared loss before training: the sensitivities' l0


def test_defaults_fill_what_a_row_does_not_sample(toy):
    params = trainables.params_of(row(lr=0.02), "toy", "cpu")
    assert params == {"lr": 0.02, "wd": 0.0, "fault": 0, "seed": 0, "epochs": 3, "device": "cpu"}


def test_a_non_finite_metric_is_divergence_with_its_partial_curve(toy, tmp_path):
    result = trainables.run(row(lr=0.01, fault=3), tmp_path / "ck")
    assert result.row["status"] == "diverged" and result.row["diverged_epoch"] == 2
    assert result.row["loss"] == math.inf  # the metric's diverged value: never near the best
    assert [p["epoch"] for p in result.curve] == [1, 2] and math.isnan(result.curve[-1]["loss"])


def test_a_trainable_that_never_reports_its_metric_fails_with_the_reason(toy, tmp_path):
    with pytest.raises(RuntimeError, match="without reporting its metric 'loss'"):
        trainables.run(row(fault=2), tmp_path / "ck")


def test_a_restarted_trial_continues_the_curve_of_its_checkpoint(toy, tmp_path):
    folder = tmp_path / "ck"
    trainables.run(row(lr=0.01, epochs=2), folder)
    # the attempt that reported epoch 3 died before its checkpoint: the curve file is ahead
    (folder / "state.json").write_text('{"epoch": 1}')
    result = trainables.run(row(lr=0.01), folder)
    assert [p["epoch"] for p in result.curve] == [1, 2, 3]  # epoch 2 re-reported once, not twice
    assert result.row["resumed_from_epoch"] == 1  # it took up the curve after epoch 1
    assert result.curve[-1]["wall_s"] >= result.curve[0]["wall_s"]


def test_registration_refuses_trial_columns_and_bad_directions():
    with pytest.raises(ValueError, match="are trial columns"):
        trainables.register("bad", metric="m", hyperparameters={"status": trainables.positive(1.0)})
    with pytest.raises(ValueError, match="direction"):
        trainables.register("bad", metric="m", direction="up")


def test_the_space_is_checked_against_the_trainables_rules(toy):
    from store.space import parse_dimension
    from sweeps.plan import trainable_manifest

    with pytest.raises(UserError, match="lr of trainable 'toy' must be a number > 0"):
        trainable_manifest("s", "toy", trials=2, seed=0, space={"lr": parse_dimension("uniform:-1,1")})
    with pytest.raises(UserError, match="takes integers"):
        trainable_manifest("s", "toy", trials=2, seed=0, space={"fault": parse_dimension("uniform:0,1")})
    with pytest.raises(UserError, match="needs a space"):
        trainable_manifest("s", "toy", trials=2, seed=0, space={})
    manifest = trainable_manifest("s", "toy", trials=5, seed=1, space={"lr": parse_dimension("log:1e-3,1e-1")})
    again = trainable_manifest("s", "toy", trials=5, seed=1, space={"lr": parse_dimension("log:1e-3,1e-1")})
    assert manifest["lr"].between(1e-3, 1e-1).all() and manifest["lr"].equals(again["lr"])  # seeded
    assert set(manifest["trainer"]) == {"toy"} and set(manifest["metric"]) == {"loss"}
    assert manifest["wd"].isna().all()  # not sampled: the trainable's default, at run time


@pytest.mark.slow
def test_a_sweep_of_a_trainable_stores_ok_failed_and_diverged_trials(toy, tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["sweep", "--trainer", "toy", "--import", toy, "--results", str(results), "--max-failures", "0",
            "--trials", "12", "--space", "lr=choice:0.01|0.1", "--space", "fault=choice:0|1|2|3"]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr().out
    trials = pd.concat(pd.read_parquet(p) for p in (results / "toy" / "trials").glob("*.parquet"))
    done = trials["status"] != "failed"  # a failed trial's record is the driver's
    assert len(trials) == 12 and trials.loc[done, "node_id"].notna().all()  # stored by Ray Tune trials
    assert set(trials["fault"]) == {0, 1, 2, 3} and set(trials.loc[trials["fault"] == 0, "lr"]) == {0.01, 0.1}
    for r in trials.itertuples():
        if r.fault == 0:
            assert r.status == "ok" and r.loss == pytest.approx((math.log10(r.lr) + 2) ** 2 + 1 / 3)
        elif r.fault == 3:
            assert r.status == "diverged" and r.loss == math.inf and r.diverged_epoch == 2
        else:
            why = "toy failure on purpose" if r.fault == 1 else "without reporting its metric 'loss'"
            assert r.status == "failed" and why in r.error
    curves = pd.concat(pd.read_parquet(p) for p in (results / "toy" / "curves").glob("*.parquet"))
    diverged = curves[curves["trial_id"] == trials.loc[trials["fault"] == 3, "trial_id"].iloc[0]]
    assert list(diverged["epoch"]) == [1, 2] and np.isnan(diverged["loss"].iloc[-1])  # its partial curve
    assert set(curves.columns) == {"sweep", "trial_id", "epoch", "loss", "lr_seen", "wall_s"}
    assert "  ok  loss 1.333" in said and "  diverged  loss inf" in said

    assert main(["status", "--results", str(results)]) == 0
    assert "loss 0.3333 lr=0.01" in capsys.readouterr().out

    assert main(["noise", "--sweep", "toy", "--seeds", "2", "--results", str(results)]) == 0
    noise = pd.concat(pd.read_parquet(p) for p in (results / "toy-noise" / "trials").glob("*.parquet"))
    assert sorted(noise["loss"]) == pytest.approx([1 / 3 + 0.01, 1 / 3 + 0.02])  # seeds 1 and 2, lr 0.01

    from analysis import experiments

    table = experiments.stability_table(pd.concat([trials, noise], ignore_index=True), n_resamples=50)
    usable = trials[trials["status"] != "failed"]
    assert table.loc[0, "metric"] == "loss" and table.loc[0, "best_err"] == pytest.approx(1 / 3)
    assert table.loc[0, "n"] == len(usable) and table.loc[0, "failed"] == (trials["status"] == "failed").sum()
    deltas = np.where(usable["status"] == "ok", usable["loss"] - 1 / 3, np.inf)
    assert table.loc[0, "median_delta"] == pytest.approx(np.median(deltas))
    assert table.loc[0, "noise_std"] == pytest.approx(np.std([0.01, 0.02], ddof=1))
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "r.html"), "--resamples", "50"]) == 0
    assert "<td>loss</td>" in (tmp_path / "r.html").read_text()


def study_copy(tmp_path: Path, trials: int, epochs: int) -> Path:
    folder = tmp_path / "study"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "modular_addition.py")
    text = STUDY.read_text().replace("trials = 24", f"trials = {trials}\nepochs = {epochs}")
    (folder / "modadd.toml").write_text(text)
    return folder / "modadd.toml"


@pytest.fixture
def forget_modadd():
    yield
    sys.modules.pop("modular_addition", None)
    trainables._ENTRIES.pop("modadd", None)


@pytest.mark.slow
def test_the_example_study_runs_in_ray_workers_and_draws_its_figure(tmp_path, capsys, forget_modadd):
    study = study_copy(tmp_path, trials=3, epochs=2)
    results, out = tmp_path / "results", tmp_path / "figures"
    assert main(["study", str(study), "--results", str(results), "--out", str(out), "--resamples", "50"]) == 0
    trials = pd.concat(pd.read_parquet(p) for p in (results / "modadd-modadd" / "trials").glob("*.parquet"))
    assert len(trials) == 3 and set(trials["status"]) == {"ok"} and trials["node_id"].notna().all()
    assert trials["val_acc"].between(0, 100).all() and set(trials["metric_direction"]) == {"maximize"}
    assert trials["train_frac"].between(0.3, 0.8).all()
    assert (out / "modadd.png").stat().st_size > 10_000


@pytest.mark.slow
def test_the_example_resumes_after_its_driver_is_killed_and_records_divergence(tmp_path, forget_modadd):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "cli", "sweep", "--trainer", "modadd", "--import", str(EXAMPLE), "--name", "crash",
           "--results", str(results), "--epochs", "4", "--sampler", "grid",
           "--space", "lr=choice:0.003|100", "--space", "wd=choice:0.1|1|3"]  # fmt: skip
    trials, ckpts = results / "crash" / "trials", results / "crash" / "checkpoints"
    kill_driver_when(
        cmd,
        lambda: (
            (done := {p.stem for p in trials.glob("*.parquet")})
            and any(p.parent.name not in done for p in ckpts.glob("*/state.pt"))
        ),
        "a finished trial and a checkpointed trial in flight",
    )
    finished = {p.name: p.read_bytes() for p in trials.glob("*.parquet")}
    in_flight = {p.parent.name for p in ckpts.glob("*/state.pt")} - {Path(n).stem for n in finished}

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = pd.read_parquet(results / "crash" / "manifest.parquet")
    assert sorted(p.stem for p in trials.glob("*.parquet")) == sorted(manifest["trial_id"])
    for name, data in finished.items():  # finished trials were not trained again
        assert (trials / name).read_bytes() == data
    rows = pd.concat(pd.read_parquet(p) for p in trials.glob("*.parquet")).set_index("trial_id")
    assert set(rows.loc[rows["lr"] == 100, "status"]) == {"diverged"}
    assert set(rows.loc[rows["lr"] == 0.003, "status"]) == {"ok"}
    assert (rows.loc[rows["lr"] == 100, "val_acc"] == 0.0).all()  # the example's diverged value
    for trial_id in rows.index:
        curve = pd.read_parquet(results / "crash" / "curves" / f"{trial_id}.parquet")
        assert curve["epoch"].is_unique and curve["epoch"].is_monotonic_increasing
        if rows.loc[trial_id, "status"] == "diverged":
            assert len(curve) >= 1 and np.isnan(curve["val_acc"].iloc[-1])
        else:
            assert list(curve["epoch"]) == [1, 2, 3, 4]
    assert in_flight  # killed with a checkpointed trial in flight, and its processes gone since
    assert (rows.loc[sorted(in_flight), "resumed_from_epoch"] >= 1).all()


def test_a_restart_without_a_checkpoint_starts_the_curve_over(toy, tmp_path):
    folder = tmp_path / "ck"
    trainables.run(row(lr=0.01, epochs=2), folder)
    (folder / "state.json").unlink()  # nothing saved to continue from: epoch 1 is reported again
    result = trainables.run(row(lr=0.01), folder)
    assert [p["epoch"] for p in result.curve] == [1, 2, 3] and result.row["resumed_from_epoch"] is None


def test_rerunning_a_trainable_sweep_that_samples_neither_lr_nor_wd_is_the_same_definition(toy, tmp_path):
    from store import Store
    from store.space import parse_dimension
    from sweeps import engine, plan

    space = {"fault": parse_dimension("choice:0|3")}
    first = plan.trainable_manifest("s", "toy", trials=4, seed=0, space=space)
    store = Store(tmp_path)
    engine.prepare_manifest(store, "s", first)  # written, then read back from parquet below
    again = plan.trainable_manifest("s", "toy", trials=4, seed=0, space=space)
    assert first["lr"].isna().all() and plan.definition_differences(store.read_manifest("s"), again) == []
    other = plan.trainable_manifest("s", "toy", trials=4, seed=0, space=space).assign(metric="other")
    assert plan.definition_differences(store.read_manifest("s"), other) == ["metric"]
