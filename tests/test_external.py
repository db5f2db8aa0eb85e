"""`stability import` (an Optuna study, a Ray Tune experiment folder, a CSV) and `stability export
--optuna`: rows, statuses, EDFs computed by hand from the source's values, the round trip, bad
input writing nothing, and optuna-dashboard listing an exported storage."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import external
from analysis import edf, load_curves, load_trials
from cli import main
from store import Store
from store.schema import Metric, metric_of_frame, scores
from store.space import Dimension, space_from_json
from tests.conftest import free_port, wait_for

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1.0, log=True),
    "depth": IntDistribution(1, 8),
    "act": CategoricalDistribution(["relu", "gelu"]),
}
# (params, what happens to the trial, its value): two failures of Optuna's kinds, one pruned, one
# left running, and one complete with an infinite value (diverged).
PLAN = [
    ({"lr": 0.01, "depth": 2, "act": "relu"}, "COMPLETE", 0.30),
    ({"lr": 0.1, "depth": 4, "act": "gelu"}, "COMPLETE", 0.25),
    ({"lr": 0.001, "depth": 8, "act": "relu"}, "PRUNED", None),
    ({"lr": 0.5, "depth": 1, "act": "gelu"}, "FAIL", None),
    ({"lr": 0.9, "depth": 3, "act": "relu"}, "COMPLETE", math.inf),
    ({"lr": 0.05, "depth": 5, "act": "gelu"}, "COMPLETE", 0.40),
    ({"lr": 0.02, "depth": 6, "act": "relu"}, "RUNNING", None),
]
STATUSES = ["ok", "ok", "failed", "failed", "diverged", "ok", "failed"]


def build_study(storage, name: str = "opt-study") -> None:
    """A study made by Optuna itself (ask and tell), three intermediate values per trial."""
    study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
    for params, state, value in PLAN:
        study.enqueue_trial(params)
        trial = study.ask(DISTRIBUTIONS)
        for step in range(3):
            trial.report(1.0 - 0.1 * step, step)
        if state == "COMPLETE":
            study.tell(trial, value)
        elif state != "RUNNING":
            study.tell(trial, state=TrialState[state])


def journal(path: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def sweep_rows(root: Path, sweep: str) -> pd.DataFrame:
    rows, bad = Store(root).read_trials(sweep)
    assert not bad
    return rows.sort_values("index").reset_index(drop=True)


def assert_same_edf(rows: pd.DataFrame, by_hand: list[float]) -> None:
    """The EDF of the sweep's outcomes (failed trials are no outcome) equals one of the source's
    values, lower better, computed by hand."""
    outcomes = rows[rows["status"] != "failed"]
    x, f = edf(scores(outcomes).to_numpy())
    hx, hf = edf(np.array(by_hand, dtype=float))
    np.testing.assert_array_equal(x, hx)
    np.testing.assert_array_equal(f, hf)


@pytest.mark.parametrize("kind", ["sqlite", "journal-url", "journal-path"])
def test_an_optuna_study_is_imported_with_its_failures_as_failed(tmp_path, capsys, kind):
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'opt.db'}"
        build_study(url)
    else:
        build_study(journal(tmp_path / "opt.log"))
        url = f"journal://{tmp_path / 'opt.log'}" if kind == "journal-url" else str(tmp_path / "opt.log")
    root = tmp_path / "results"
    rc, out, err = run(capsys, "import", "--optuna", url, "--results", str(root))
    assert rc == 0, err
    assert "7 trial(s)" in out and "3 ok, 1 diverged, 3 failed" in out
    assert "imported: Optuna trial state PRUNED" in out and "imported: Optuna trial state RUNNING" in out

    rows = sweep_rows(root, "opt-study")
    assert list(rows["status"]) == STATUSES
    assert list(rows["trial_id"]) == [f"opt-study-{i:04d}" for i in range(7)]
    assert set(rows["sampler"]) == {"imported"} and set(rows["family"]) == {"imported"}
    assert set(rows["source"]) == {f"optuna:{url}#opt-study"}
    assert set(rows["model"]) == {"opt-study"} and set(rows["optimizer"]) == {"unknown"}
    for column in ("lr", "depth", "act"):
        assert list(rows[column]) == [p[column] for p, _, _ in PLAN]
    assert rows["wd"].isna().all() and rows["epochs"].isna().all()
    values = rows["value"].tolist()
    assert values[:2] == [0.30, 0.25] and values[5] == 0.40 and values[4] == math.inf
    assert all(math.isnan(values[i]) for i in (2, 3, 6))  # failed: no value, never a result
    assert list(rows["error"].fillna("")) == [
        "", "", "imported: Optuna trial state PRUNED", "imported: Optuna trial state FAIL", "", "",
        "imported: Optuna trial state RUNNING",
    ]  # fmt: skip
    assert metric_of_frame(rows) == Metric("value", "minimize", math.inf)
    assert space_from_json(rows["space"].iloc[0]) == {
        "lr": Dimension("log", 1e-4, 1.0),
        "depth": Dimension("int", 1, 8),
        "act": Dimension("choice", choices=("relu", "gelu")),
    }
    assert_same_edf(rows, [0.30, 0.25, math.inf, 0.40])
    manifest = Store(root).read_manifest("opt-study")
    assert list(manifest["trial_id"]) == list(rows["trial_id"]) and "status" not in manifest
    curves = load_curves(root)
    first = curves[curves["trial_id"] == "opt-study-0000"].sort_values("epoch")
    assert first["epoch"].tolist() == [0, 1, 2] and first["value"].tolist() == pytest.approx([1.0, 0.9, 0.8])
    assert rows.loc[0, "completed_epochs"] == 3 and rows.loc[0, "wall_s"] >= 0


def test_a_csv_is_imported_with_its_flags(tmp_path, capsys):
    csv = tmp_path / "tracker export.csv"
    csv.write_text(
        "run,lr,opt,acc,notes\n"
        "a,0.001,sgd,71.5,x\n"
        "b,0.01,adamw,80.25,\n"
        "c,0.1,sgd,,crashed\n"
        "d,1.0,adamw,nan,\n"
        "e,0.03,adamw,78.0,\n"
    )
    root = tmp_path / "results"
    flags = ["--csv", str(csv), "--metric", "acc", "--direction", "maximize", "--param", "lr:log", "--param", "opt"]
    rc, out, err = run(capsys, "import", *flags, "--results", str(root))
    assert rc == 2 and "sweep name 'tracker export'" in err and not root.exists()  # a file stem with a space

    rc, out, err = run(capsys, "import", *flags, "--name", "tracked", "--model", "mine", "--results", str(root))
    assert rc == 0, err
    assert "2 ok" not in out and "3 ok, 1 diverged, 1 failed" in out and "empty metric cell" in out
    rows = sweep_rows(root, "tracked")
    assert list(rows["status"]) == ["ok", "ok", "failed", "diverged", "ok"]
    assert rows["lr"].tolist() == [0.001, 0.01, 0.1, 1.0, 0.03] and rows["opt"].tolist() == [
        "sgd", "adamw", "sgd", "adamw", "adamw"]  # fmt: skip
    assert "notes" not in rows and "run" not in rows
    assert set(rows["model"]) == {"mine"} and set(rows["source"]) == {f"csv:{csv}"}
    assert space_from_json(rows["space"].iloc[0]) == {
        "lr": Dimension("log", 0.001, 1.0),
        "opt": Dimension("choice", choices=("sgd", "adamw")),
    }
    assert metric_of_frame(rows) == Metric("acc", "maximize", -math.inf)
    # higher is better: the EDF is of the negated accuracy; the diverged trial is the worst
    assert_same_edf(rows, [-71.5, -80.25, math.inf, -78.0])
    assert len(load_curves(root)) == 0

    trials = load_trials(root)  # the whole store reads as one table
    assert len(trials) == 5 and set(trials["sampler"]) == {"imported"}


def test_the_diverged_value_can_be_named(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text("lr,loss\n0.1,2.5\n0.2,inf\n0.3,1.5\n")
    root = tmp_path / "results"
    rc, _, err = run(capsys, "import", "--csv", str(csv), "--metric", "loss", "--direction", "minimize",
                     "--param", "lr", "--diverged", "10", "--results", str(root))  # fmt: skip
    assert rc == 0, err
    rows = sweep_rows(root, "runs")
    assert list(rows["status"]) == ["ok", "diverged", "ok"] and rows["loss"].tolist() == [2.5, 10.0, 1.5]
    assert space_from_json(rows["space"].iloc[0]) == {"lr": Dimension("uniform", 0.1, 0.3)}
    assert_same_edf(rows, [2.5, 10.0, 1.5])


def test_a_dry_run_writes_nothing(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'opt.db'}"
    build_study(url)
    root = tmp_path / "results"
    rc, out, err = run(capsys, "import", "--optuna", url, "--name", "planned", "--results", str(root), "--dry-run")
    assert rc == 0, err
    assert "would import 7 trial(s)" in out and "3 ok, 1 diverged, 3 failed" in out and "nothing written" in out
    assert not root.exists()


def bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Each bad input: its flags and a piece of its one error line."""
    url = f"sqlite:///{tmp_path / 'opt.db'}"
    build_study(url)
    build_study(url, "second")
    multi = f"sqlite:///{tmp_path / 'multi.db'}"
    optuna.create_study(storage=multi, study_name="two", directions=["minimize", "maximize"])
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as db:
        db.execute("CREATE TABLE t (x)")
        db.commit()
    (tmp_path / "ok.csv").write_text("lr,status,loss,acc\n0.1,x,1.0,0.5\n0.2,y,oops,0.6\n")
    csv = ["--csv", str(tmp_path / "ok.csv"), "--direction", "minimize"]
    return {
        "no study named": (["--optuna", url], "holds 2 studies"),
        "missing study": (["--optuna", url, "--study", "nope"], "no study 'nope'"),
        "missing database": (["--optuna", f"sqlite:///{tmp_path / 'absent.db'}"], "no Optuna database"),
        "missing journal": (["--optuna", str(tmp_path / "absent.log")], "no Optuna journal file"),
        "multi-objective": (["--optuna", multi], "multi-objective"),
        "not Optuna's database": (["--optuna", str(tmp_path / "other.db")], "cannot open Optuna storage"),
        "unknown column": ([*csv, "--metric", "loss", "--param", "width"], "no column 'width'"),
        "non-numeric metric": ([*csv, "--metric", "loss", "--param", "lr"], "ok.csv:3: metric column 'loss'"),
        "reserved name": ([*csv, "--metric", "acc", "--param", "status"], "'status' would overwrite"),
        "metric named as a hyperparameter column": ([*csv, "--metric", "lr", "--param", "acc"], "metric 'lr' would"),
        "log of text": ([*csv, "--metric", "acc", "--param", "status:log"], "not numbers"),
        "no direction": (["--csv", str(tmp_path / "ok.csv"), "--metric", "acc", "--param", "status"], "--direction"),
        "flag of another source": (["--optuna", url, "--param", "lr"], "--param does not apply to --optuna"),
        "missing tune folder": (["--tune", str(tmp_path / "nope"), "--metric", "x", "--mode", "min"], "no Ray Tune"),
        "not a tune folder": (["--tune", str(tmp_path), "--metric", "x", "--mode", "min"], "not a Ray Tune"),
    }  # fmt: skip


def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "results"
    for what, (flags, message) in bad_inputs(tmp_path).items():
        before = sorted(p.name for p in tmp_path.iterdir())
        rc, _, err = run(capsys, "import", *flags, "--results", str(root))
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), (what, err)
        assert message in lines[0], (what, lines[0])
        assert not root.exists() and sorted(p.name for p in tmp_path.iterdir()) == before, what
    with contextlib.closing(sqlite3.connect(tmp_path / "other.db")) as db:  # left as it was
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == [("t",)]


def test_an_existing_sweep_is_never_overwritten(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'opt.db'}"
    build_study(url)
    root = tmp_path / "results"
    assert run(capsys, "import", "--optuna", url, "--results", str(root))[0] == 0
    files = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    rc, _, err = run(capsys, "import", "--optuna", url, "--results", str(root))
    assert rc == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == files


def comparable(rows: pd.DataFrame, columns: list[str]) -> list[dict]:
    return rows[columns].astype(object).where(rows[columns].notna(), None).to_dict("records")


def test_export_then_import_gives_back_the_same_sweep(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'opt.db'}"
    build_study(url)
    first, second = tmp_path / "first", tmp_path / "second"
    assert run(capsys, "import", "--optuna", url, "--results", str(first), "--name", "s1", "--model", "m")[0] == 0
    out_url = f"sqlite:///{tmp_path / 'studies.db'}"
    rc, out, err = run(capsys, "export", "--optuna", out_url, "--results", str(first))
    assert rc == 0, err
    assert "as study 's1'" in out and "COMPLETE 3, FAIL 4" in out and f"optuna-dashboard {out_url}" in out

    study = optuna.load_study(study_name="s1", storage=out_url)
    assert [t.state.name for t in study.trials] == ["COMPLETE" if s == "ok" else "FAIL" for s in STATUSES]
    assert [t.user_attrs.get("stability_status") for t in study.trials][2:5] == ["failed", "failed", "diverged"]
    assert study.trials[0].distributions == DISTRIBUTIONS and study.trials[0].intermediate_values[2] == 0.8
    assert study.user_attrs["stability"]["model"] == "m"

    assert run(capsys, "import", "--optuna", out_url, "--results", str(second))[0] == 0
    a, b = sweep_rows(first, "s1"), sweep_rows(second, "s1")
    same = ["index", "trial_id", "status", "value", "error", "lr", "depth", "act", "model", "optimizer", "family",
            "space", "metric", "metric_direction", "metric_diverged", "wall_s", "completed_epochs"]  # fmt: skip
    assert comparable(a, same) == comparable(b, same)
    assert set(b["source"]) == {f"optuna:{out_url}#s1"}
    curves = [load_curves(r).sort_values(["trial_id", "epoch"]).reset_index(drop=True) for r in (first, second)]
    pd.testing.assert_frame_equal(curves[0], curves[1])

    rc, _, err = run(capsys, "export", "--optuna", out_url, "--results", str(first))  # the study exists
    assert rc == 2 and "already exists" in err
    assert len(optuna.load_study(study_name="s1", storage=out_url).trials) == 7
    rc, _, err = run(capsys, "export", "--optuna", out_url, "--results", str(first), "--sweep", "nope")
    assert rc == 2 and "no sweep 'nope'" in err
    assert optuna.get_all_study_names(out_url) == ["s1"]


def native_sweep(root: Path) -> None:
    """A sweep as the engine writes one (top-1 error, lr and wd from a stored space, a curve)."""
    space = json.dumps({"lr": ["log", 1e-4, 1e-2], "wd": ["log", 1e-3, 1.0], "label_smoothing": ["uniform", 0.0, 0.2]})
    planned = [(0.001, 0.01, 0.1), (0.005, 0.3, 0.05), (0.009, 0.02, 0.15), (0.0002, 0.5, 0.0)]
    store = Store(root)
    rows = [
        {"sweep": "vit", "index": i, "trial_id": f"vit-{i:04d}", "model": "vit_c_1gf", "optimizer": "adamw",
         "family": "vit", "lr": lr, "wd": wd, "epochs": 2, "dataset": "synthetic", "image_size": 8, "patch_size": 4,
         "batch_size": 64, "seed": 0, "sampler": "random", "preset": "smoke", "space": space, "label_smoothing": ls}
        for i, (lr, wd, ls) in enumerate(planned)
    ]  # fmt: skip
    store.write_manifest("vit", pd.DataFrame(rows))
    outcomes = [("ok", 31.5, None), ("diverged", 100.0, None), ("ok", 27.25, None), ("failed", 100.0, "OOM")]
    for row, (status, err, error) in zip(rows, outcomes, strict=True):
        curve = [{"epoch": e, "lr": row["lr"], "train_loss": 1.0, "top1_err": err + 1 - e, "top1_err_raw": err,
                  "wall_s": 1.0} for e in range(1, 3)]  # fmt: skip
        store.write_trial("vit", {**row, "status": status, "top1_err": err, "wall_s": 2.0, "error": error}, curve)


def test_an_engine_sweep_round_trips_with_its_space_and_labels(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    native_sweep(first)
    journal_file = tmp_path / "studies.log"
    assert run(capsys, "export", "--optuna", str(journal_file), "--results", str(first), "--sweep", "vit")[0] == 0
    assert run(capsys, "import", "--optuna", f"journal://{journal_file}", "--results", str(second))[0] == 0
    a, b = sweep_rows(first, "vit"), sweep_rows(second, "vit")
    assert list(b["status"]) == ["ok", "diverged", "ok", "failed"] and b.loc[3, "error"] == "OOM"
    same = ["index", "lr", "wd", "label_smoothing", "model", "optimizer", "family", "epochs", "dataset",
            "image_size", "batch_size", "seed", "preset"]  # fmt: skip
    assert comparable(a, same) == comparable(b, same)
    assert space_from_json(b["space"].iloc[0]) == space_from_json(a["space"].iloc[0])
    assert metric_of_frame(b) == metric_of_frame(a)  # top-1 error, diverged at 100
    outcomes = a["status"] != "failed"
    assert scores(b[outcomes]).tolist() == scores(a[outcomes]).tolist() == [31.5, 100.0, 27.25]
    assert set(b["sampler"]) == {"imported"}


def test_optuna_dashboard_lists_the_exported_studies(tmp_path, capsys):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install '.[external]')")
    script = Path(sys.executable).with_name("optuna-dashboard")
    if not script.exists():
        pytest.skip(f"no optuna-dashboard script beside {sys.executable}")
    native_sweep(tmp_path / "results")
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    assert run(capsys, "export", "--optuna", url, "--results", str(tmp_path / "results"))[0] == 0
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w")
    server = subprocess.Popen(
        [str(script), url, "--host", "127.0.0.1", "--port", str(port), "--quiet"], stdout=log, stderr=log
    )
    try:
        listed: dict = {}

        def answers() -> bool:
            assert server.poll() is None, (tmp_path / "dashboard.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    listed.update(json.load(response))
                return True
            except OSError:
                return False

        wait_for(answers, 60, "optuna-dashboard to answer")
        studies = listed["study_summaries"]
        assert [s["study_name"] for s in studies] == ["vit"] and studies[0]["directions"] == ["minimize"]
        assert any(a["key"] == "stability" and '"model": "vit_c_1gf"' in a["value"] for a in studies[0]["user_attrs"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@given(st.lists(st.floats(min_value=1e-9, max_value=1e9), min_size=1, max_size=20), st.sampled_from(["log", "linear"]))
def test_every_observed_value_lies_in_its_dimension(values, scale):
    """The law of an observed space: each value a trial took is contained in the distribution
    that export rebuilds from it, so that every imported trial can be written back to Optuna."""
    dim = external.observed_space({"x": values}, {"x": scale})["x"]
    for v in values:  # Optuna's own check: a value outside its distribution is a ValueError
        optuna.trial.create_trial(params={"x": v}, distributions={"x": dim.distribution()}, value=0.0)


@pytest.mark.slow
def test_a_ray_tune_experiment_is_imported(tmp_path, capsys, monkeypatch, shared_ray):
    from ray import tune

    monkeypatch.setenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")  # the result files ExperimentAnalysis reads
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")

    def trainable(config):  # nested: shipped to the worker by value
        if config["lr"] > 0.5:
            raise RuntimeError("lr too high")
        for step in range(3):
            loss = math.inf if config["lr"] == 0.3 else config["lr"] * 10 + config["width"] - step
            tune.report({"loss": loss, "acc": 0.5 + step / 10})

    tune.Tuner(  # on the session's Ray
        trainable,
        param_space={"lr": tune.grid_search([0.01, 0.1, 0.3, 0.9]), "width": 4, "tag": "a"},
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path / "tune"), verbose=0),
    ).fit()
    root = tmp_path / "results"
    folder = tmp_path / "tune" / "exp"
    rc, out, err = run(capsys, "import", "--tune", str(folder), "--metric", "loss", "--mode", "min",
                       "--param", "lr:log", "--param", "width", "--results", str(root))  # fmt: skip
    assert rc == 0, err
    assert "2 ok, 1 diverged, 1 failed" in out and "RuntimeError: lr too high" in out
    rows = sweep_rows(root, "exp")  # sorted by Tune's trial id: the grid's order
    assert rows["lr"].tolist() == [0.01, 0.1, 0.3, 0.9] and set(rows["width"]) == {4.0} and "tag" not in rows
    assert list(rows["status"]) == ["ok", "ok", "diverged", "failed"]
    assert rows["loss"].tolist()[:3] == [0.01 * 10 + 4 - 2, 0.1 * 10 + 4 - 2, math.inf]
    assert rows.loc[3, "error"].startswith("imported: Ray Tune trial status ERROR")
    assert set(rows["source"]) == {f"tune:{folder}"} and list(rows["completed_epochs"][:3]) == [3, 3, 3]
    assert space_from_json(rows["space"].iloc[0]) == {
        "lr": Dimension("log", 0.01, 0.9),
        "width": Dimension("uniform", 4.0, 4.0),
    }
    assert_same_edf(rows, [0.01 * 10 + 4 - 2, 0.1 * 10 + 4 - 2, math.inf])
    curves = load_curves(root)
    first = curves[curves["trial_id"] == "exp-0000"].sort_values("epoch")
    assert first["epoch"].tolist() == [1, 2, 3] and first["loss"].tolist() == pytest.approx([4.1, 3.1, 2.1])
    assert first["acc"].tolist() == pytest.approx([0.5, 0.6, 0.7])
