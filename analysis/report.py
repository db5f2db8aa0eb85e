"""`stability figures`: every figure the store can feed, the summary tables, and what is missing."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from analysis import experiments
from analysis.store import UnreadableResultWarning, load_trials

HOW_TO = {
    "2": "stability grid --figure 2",
    "3": "stability grid --figure 3",
    "4": "stability grid --figure 4 (or stability sweep --optim adamw per model)",
    "5": "stability grid --figure 5 (or stability sweep --optim sgd per model)",
    "compare": "stability sweep (any model) or stability study FILE.toml",
}


def missing_parts(trials: pd.DataFrame, figure: str) -> list[str]:
    """What the figure wants that the store lacks, in words."""
    if figure in ("2", "3"):
        curve = experiments.error_vs_epochs(trials)
        have = set(curve["size"]) if not curve.empty else set()
        gaps = [f"{s} training-length runs" for s in experiments.SIZES if s not in have]
        if figure == "3" and not experiments.optimizer_gaps(trials).shape[0]:
            gaps.append("runs of both optimizers for one model")
        if not curve.empty and curve.groupby(["model", "optimizer"])["epochs"].nunique().max() < 2:
            gaps.append("a second schedule length")
        return gaps
    if figure == "compare":
        return [] if experiments.edf_sets(trials) else ["EDF sweeps"]
    optim = "adamw" if figure == "4" else "sgd"
    sets = [g for g in experiments.edf_sets(trials).values() if g["optimizer"].iloc[0] == optim]
    have = {experiments.SIZE_OF.get(g["model"].iloc[0]) for g in sets}
    return [f"{s} {optim} EDF sweeps" for s in experiments.SIZES if s not in have]


def write_tables(trials: pd.DataFrame, out: Path, n_resamples: int) -> list[Path]:
    tables = {
        "stability_summary": experiments.stability_table(trials, n_resamples=n_resamples),
        "optimizer_gaps": experiments.optimizer_gaps(trials),
        "training_length_deltas": experiments.training_length_deltas(trials),
    }
    written = []
    for name, frame in tables.items():
        if frame.empty:
            continue
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(frame.to_markdown(index=False, floatfmt=".3g") + "\n")
        written += [out / f"{name}.csv", out / f"{name}.md"]
    return written


def make_figures(
    results: str | os.PathLike, out: str | os.PathLike, figures: list[str], fmt: str = "png", n_resamples: int = 1000
) -> dict:
    """Write the requested figures and tables; returns what was written and what is missing."""
    from analysis import figures as figs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableResultWarning)
        trials = load_trials(results)
    unreadable = [str(w.message) for w in caught if issubclass(w.category, UnreadableResultWarning)]
    if trials.empty:
        return {
            "written": [],
            "missing": {f: ["any results"] for f in figures},
            "unreadable": unreadable,
            "empty": True,
        }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, missing = [], {}
    for f in figures:
        fig = figs.FIGURES[f](trials, n_resamples)
        written.append(figs.save(fig, out, f"figure{f}" if f != "compare" else "comparison", fmt))
        missing[f] = missing_parts(trials, f)
    written += write_tables(trials, out, n_resamples)
    return {"written": written, "missing": missing, "unreadable": unreadable, "empty": False}
