"""The notebooks and `stability figures`, run against a store made by real tiny sweeps."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("shared_ray")]
NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def test_store_made_by_the_sweeps(tiny_store):
    from analysis import load_curves, load_trials

    trials = load_trials(tiny_store)
    assert len(trials) == 3 + 3 + 8
    assert set(trials["sweep"]) == {"vit_p_1gf-adamw-smoke", "vit_c_1gf-adamw-smoke", "figure3-smoke"}
    assert set(trials["sampler"]) == {"random", "fixed"}
    curves = load_curves(tiny_store)
    assert len(curves) == 3 + 3 + 4 * (1 + 2)  # one row per epoch


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tiny_store, monkeypatch):
    monkeypatch.setenv("STABILITY_RESULTS", str(tiny_store))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "14 trials from 3 sweep(s)" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_figures_command_writes_figures_and_tables(tiny_store, tmp_path, capsys):
    assert (
        main(["figures", "--results", str(tiny_store), "--out", str(tmp_path), "--format", "svg", "--resamples", "100"])
        == 0
    )
    out = capsys.readouterr().out
    for f in "2345":
        assert (tmp_path / f"figure{f}.svg").stat().st_size > 1000
    table = pd.read_csv(tmp_path / "stability_summary.csv")
    assert set(table["model"]) == {"vit_p_1gf", "vit_c_1gf"} and (table["n"] == 3).all()
    assert len(pd.read_csv(tmp_path / "optimizer_gaps.csv")) == 4 * 2  # a row per optimizer at each point
    assert (tmp_path / "stability_summary.md").read_text().startswith("|")
    assert "figure 2: the store has no 4GF training-length runs, 18GF training-length runs" in out
    assert "figure 5: the store has no 1GF sgd EDF sweeps" in out


def test_figures_on_missing_store_is_a_user_error(tmp_path, capsys):
    assert main(["figures", "--results", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith("error: no results folder")
    (tmp_path / "empty").mkdir()
    assert main(["figures", "--results", str(tmp_path / "empty")]) == 2
