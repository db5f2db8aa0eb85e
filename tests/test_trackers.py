"""Watching a sweep: `--log tensorboard` and `--log mlflow` send each trial's curve and
hyperparameters as it trains; read back with TensorBoard's event reader and MLflow's client, they
equal the store's curves."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from cli import main
from sweeps.trackers import Trackers
from tests.conftest import TINY_DATA

pytestmark = pytest.mark.usefixtures("shared_ray")

tensorboard = pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")


def tensorboard_curve(folder: Path) -> dict[str, dict[int, float]]:
    """Every scalar of one TensorBoard run, by tag and step, as TensorBoard's own reader loads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def mlflow_runs(uri: str, sweep: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[sweep])


def mlflow_curve(uri: str, run_id: str, key: str) -> dict[int, float]:
    client = mlflow.MlflowClient(tracking_uri=uri)
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


ROW = {"trial_id": "t-000", "model": "vit_c_1gf", "optimizer": "adamw", "lr": 0.01, "wd": 0.05, "epochs": 3, "seed": 0}


def points(scale: float, epochs) -> list[dict]:
    return [{"epoch": e, "lr": 0.01 * e, "train_loss": scale / e, "top1_err": 50.0 * scale / e} for e in epochs]


def test_a_restarted_trial_replaces_the_steps_it_logs_again(tmp_path):
    sweep_dir = tmp_path / "s"
    trackers = Trackers(("tensorboard", "mlflow"))
    uri = trackers.uri(sweep_dir)
    first = trackers.open(sweep_dir, ROW)
    for p in points(1.0, [1, 2]):
        first.log(p)
    first.close("failed")  # a worker died after epoch 2; the retry resumes from epoch 1's checkpoint
    again = trackers.open(sweep_dir, ROW)
    for p in points(2.0, [2, 3]):
        again.log(p)
    again.close("ok")

    want = {1: 50.0, 2: 50.0, 3: 100.0 / 3}  # epoch 1 from the first attempt, 2 and 3 from the retry
    seen = tensorboard_curve(sweep_dir / "tensorboard" / "t-000")
    assert seen["top1_err"] == pytest.approx(want) and set(seen) == {"lr", "train_loss", "top1_err"}
    runs = mlflow_runs(uri, "s")
    assert len(runs) == 1 and runs["status"].iloc[0] == "FINISHED"  # one run per trial, continued
    assert runs["params.lr"].iloc[0] == "0.01" and runs["params.model"].iloc[0] == "vit_c_1gf"
    history = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(runs["run_id"].iloc[0], "top1_err")
    newest = {}
    for m in sorted(history, key=lambda m: m.timestamp):  # MLflow keeps every logged value; the newest counts
        newest[m.step] = m.value
    assert newest == pytest.approx(want)


def test_tracker_flags_are_checked_before_anything_runs(tmp_path, capsys):
    base = ["sweep", "--model", "vit_c_1gf", "--optim", "adamw", "--dry-run", "--results", str(tmp_path / "r")]
    assert main([*base, "--mlflow-uri", "file:///x"]) == 2
    assert "--mlflow-uri goes with --log mlflow" in capsys.readouterr().err
    assert main([*base, "--log", "mlflow", "--workers", "2"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert main([*base, "--log", "wandb"]) == 2
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_sweeps_curves_reach_tensorboard_and_mlflow_as_stored(tmp_path, capsys):
    results = tmp_path / "results"
    argv = ["sweep", "--model", "vit_c_1gf", "--optim", "adamw", "--trials", "2", "--epochs", "2", "--name", "watched",
            "--results", str(results), "--log", "tensorboard", "--log", "mlflow", *TINY_DATA]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    trials = pd.concat(pd.read_parquet(p) for p in (results / "watched" / "trials").glob("*.parquet"))
    curves = pd.concat(pd.read_parquet(p) for p in (results / "watched" / "curves").glob("*.parquet"))
    uri = Trackers(("mlflow",)).uri(results / "watched")
    runs = mlflow_runs(uri, "watched").set_index("tags.mlflow.runName")
    assert sorted(runs.index) == sorted(trials["trial_id"]) and set(runs["status"]) == {"FINISHED"}
    for trial in trials.itertuples():
        stored = curves[curves["trial_id"] == trial.trial_id].set_index("epoch")
        board = tensorboard_curve(results / "watched" / "tensorboard" / trial.trial_id)
        run = runs.loc[trial.trial_id]
        assert float(run["params.lr"]) == pytest.approx(trial.lr) and float(run["params.wd"]) == pytest.approx(trial.wd)
        for key in ("lr", "train_loss", "top1_err", "top1_err_raw", "wall_s"):
            want = {int(e): v for e, v in stored[key].items() if math.isfinite(v)}
            assert board[key] == pytest.approx(want, rel=1e-6), key  # event files hold 32-bit floats
            assert mlflow_curve(uri, run["run_id"], key) == pytest.approx(want, rel=1e-12), key
        assert run["metrics.top1_err"] == pytest.approx(trial.top1_err)  # the last epoch's, as stored


def test_a_failing_tracker_is_said_once_and_the_trial_goes_on(tmp_path, capsys):
    log = Trackers(("mlflow",), "nosuchscheme://nowhere").open(tmp_path / "s", ROW)
    for p in points(1.0, [1, 2, 3]):
        log.log(p)  # never raises into training
    log.close("ok")
    err = capsys.readouterr().err
    assert err.count("warning: --log mlflow: trial t-000") == 1 and "the store has it" in err


def test_route_takes_a_populations_member_points_out_and_leaves_a_trials_own_point_alone():
    from stability.population import MEMBER_POINTS
    from sweeps.trackers import route

    class Seen:
        def __init__(self):
            self.points = []

        def log(self, point):
            self.points.append(point)

    reported, logs = [], {"a": Seen(), "b": Seen()}
    on_epoch = route(reported.append, logs, "a")
    own = {"epoch": 1, "points": 3.5, "loss": 0.2}  # a trainable may report any name
    on_epoch(own)
    assert reported == [own] and logs["a"].points == [own] and own["points"] == 3.5
    summary = {"epoch": 2, "running": 0, MEMBER_POINTS: {"b": {"epoch": 2, "top1_err": 100.0}}}
    on_epoch(summary)
    assert MEMBER_POINTS not in reported[-1] and logs["b"].points == [{"epoch": 2, "top1_err": 100.0}]
    on_epoch({"epoch": 3, "running": 0, MEMBER_POINTS: {}})  # nobody trained this epoch: nothing logged
    assert len(logs["a"].points) == 1 and len(logs["b"].points) == 1
    untracked = route(reported.append, {}, "a")
    untracked({"epoch": 4, MEMBER_POINTS: {"a": {"epoch": 4}}})
    assert reported[-1] == {"epoch": 4}  # taken out whether tracked or not
