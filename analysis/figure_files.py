"""`stability figures`: every figure the store can feed, the summary tables, and what is missing."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from analysis import budget, experiments
from analysis.loading import UnreadableResultWarning, load_trials

HOW_TO = {
    "2": "stability grid --figure 2",
    "3": "stability grid --figure 3",
    "4": "stability grid --figure 4 (or stability sweep --optim adamw per model)",
    "5": "stability grid --figure 5 (or stability sweep --optim sgd per model)",
    "compare": "stability sweep (any model) or stability study FILE.toml",
}


def missing_parts(trials: pd.DataFrame, figure: str, protocol: str | None = None) -> list[str]:
    """What the figure wants that the store lacks, in words (Figures 2 and 3: under ``protocol``
    where one is named, since runs of another protocol do not fill its curves)."""
    if figure in ("2", "3"):
        curve, pairs = experiments.error_vs_epochs(trials), experiments.optimizer_gaps(trials)
        if protocol is not None:
            curve, pairs = curve[curve["protocol"] == protocol], pairs[pairs["protocol"] == protocol]
        have = set(curve["size"]) if not curve.empty else set()
        gaps = [f"{s} training-length runs" for s in experiments.panel_sizes(have) if s not in have]
        if figure == "3" and pairs.empty:
            gaps.append("runs of two optimizers for one model")
        if not curve.empty and curve.groupby(["protocol", "model", "optimizer"])["epochs"].nunique().max() < 2:
            gaps.append("a second schedule length")
        return gaps
    if figure == "compare":
        return [] if experiments.edf_sets(trials) else ["EDF sweeps"]
    optim = "adamw" if figure == "4" else "sgd"
    every = experiments.top1_sets(trials).values()
    have = {experiments.SIZE_OF.get(g["model"].iloc[0]) for g in every if g["optimizer"].iloc[0] == optim}
    panels = experiments.panel_sizes({experiments.SIZE_OF.get(g["model"].iloc[0]) for g in every})
    return [f"{s} {optim} EDF sweeps" for s in panels if s not in have]


def write_tables(trials: pd.DataFrame, out: Path, n_resamples: int) -> list[Path]:
    """The summary tables as CSV and Markdown: per EDF sweep (with its failed trials counted),
    the grid's optimizer gaps and training-length deltas (with their protocol), and the budgets:
    trials to target per sweep and the performance profile's areas (``analysis.budget``)."""
    tables = {
        "stability_summary": experiments.stability_table(trials, n_resamples=n_resamples),
        "optimizer_gaps": experiments.optimizer_gaps(trials),
        "training_length_deltas": experiments.training_length_deltas(trials),
        "trials_to_target": budget.budget_table(trials),
    }
    tables["performance_profile"] = budget.profile_areas(tables["trials_to_target"])
    tables["grid_sensitivity"] = experiments.sensitivity_table(trials)
    written = []
    for name, frame in tables.items():
        if frame.empty:
            continue
        frame.to_csv(out / f"{name}.csv", index=False)
        (out / f"{name}.md").write_text(frame.to_markdown(index=False, floatfmt=".3g") + "\n")
        written += [out / f"{name}.csv", out / f"{name}.md"]
    return written


OPTIM_OF = {"4": "adamw", "5": "sgd"}
# What a figure draws, in the notes' words.
RUNS_OF = {"2": "grid runs", "3": "grid runs", "4": "AdamW EDF sweeps", "5": "SGD EDF sweeps"}


def figure_protocols(trials: pd.DataFrame, figure: str) -> list[str]:
    """The protocols a figure can be drawn for: those of the grid runs (Figures 2 and 3) or of the
    optimizer's EDF sweeps (Figures 4 and 5); none for the comparison figure."""
    if figure in ("2", "3"):
        return experiments.grid_protocols(trials)
    if figure in OPTIM_OF:
        return experiments.edf_protocols(trials, OPTIM_OF[figure], paper=True)
    return []


def protocol_choice(held: list[str], figure: str, protocol: str | None) -> tuple[list[str | None], list[str]]:
    """Which protocols a figure is drawn for, of those the store ``held`` its runs under, and the
    lines that say what was left out.

    One figure per protocol, never one curve or one panel of two; a named ``protocol`` draws only
    that one. [None] draws the (empty) figure of a store without its runs, as before.
    """
    what = RUNS_OF[figure]
    if protocol is None:
        if len(held) < 2:
            return held or [None], []
        listed = f"{len(held)} protocols ({', '.join(held)})"
        return held, [
            f"figure {figure}: the store holds its runs under {listed}; one figure each, --protocol draws one"
        ]
    if protocol not in held:
        listed = ", ".join(held) or "none"
        return [], [f"figure {figure}: no {what} under protocol {protocol!r}; the store holds: {listed}"]
    others = ", ".join(p for p in held if p != protocol)
    said = [f"figure {figure}: drawn for protocol {protocol}; the store also holds {others}"] if others else []
    return [protocol], said


def failed_notes(trials: pd.DataFrame, figure: str, chosen: list[str | None]) -> list[str]:
    """A line per drawn protocol of Figure 2 or 3 whose grid runs all failed: its figure has no point."""
    failed = experiments.failed_protocols(trials) if figure in ("2", "3") else {}
    return [f"figure {figure} under protocol {p}: all {failed[p]} runs failed" for p in chosen if p in failed]


def make_figures(
    results: str | os.PathLike,
    out: str | os.PathLike,
    figures: list[str],
    fmt: str = "png",
    n_resamples: int = 1000,
    *,
    protocol: str | None = None,
    first: int | None = None,
) -> dict:
    """Write the requested figures and tables; returns what was written and what is missing.

    Figures 2-5 are drawn once per protocol the store holds their runs under (grid runs for 2
    and 3, the optimizer's EDF sweeps for 4 and 5), named ``figure2-<protocol>`` where it holds
    several (``figure2`` where one); ``protocol`` (a label as in those names and the tables'
    ``protocol`` column) draws only that one; ``first``: each sweep's first K trials only. Every
    per-sweep figure takes its colours from the whole store (``figures.store_colors``), so a
    sweep has one colour in all of them. The returned dict: ``written`` (paths), ``missing``
    (figure -> what the store lacks), ``notes`` (lines naming the protocols drawn and not drawn,
    and those whose runs all failed), ``protocols`` (figure -> the protocols it could be drawn
    for), ``unreadable``, ``empty``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnreadableResultWarning)
        trials = load_trials(results, first=first)
    unreadable = [str(w.message) for w in caught if issubclass(w.category, UnreadableResultWarning)]
    if trials.empty:
        return {
            "written": [],
            "missing": {f: ["any results"] for f in figures},
            "notes": [],
            "protocols": {},
            "unreadable": unreadable,
            "empty": True,
        }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drawn = {"written": [], "missing": {}, "notes": [], "protocols": {}}
    for f in figures:
        draw_figure(trials, f, out, fmt, n_resamples, protocol, drawn)
    drawn["written"] += write_tables(trials, out, n_resamples)
    return {**drawn, "unreadable": unreadable, "empty": False}


def draw_figure(
    trials: pd.DataFrame, f: str, out: Path, fmt: str, n_resamples: int, protocol: str | None, drawn: dict
) -> None:
    """One requested figure into ``drawn`` (``make_figures``' dict): once per protocol it is
    drawn for (the comparison figure once, for the whole store)."""
    from analysis import figures as figs

    colors = figs.store_colors(trials)
    if f == "compare":
        drawn["written"].append(figs.save(figs.FIGURES[f](trials, n_resamples, colors), out, "comparison", fmt))
        drawn["missing"][f] = missing_parts(trials, f)
        return
    held = drawn["protocols"][f] = figure_protocols(trials, f)
    chosen, said = protocol_choice(held, f, protocol)
    drawn["notes"] += said + failed_notes(trials, f, chosen)
    several = len(held) > 1
    drawn["missing"][f] = []
    for p in chosen:
        mine = trials if p is None else experiments.of_protocol(trials, p)
        fig = figs.FIGURES[f](mine, n_resamples, colors)
        drawn["written"].append(figs.save(fig, out, f"figure{f}-{p}" if several else f"figure{f}", fmt))
        drawn["missing"][f] += [f"{part} under protocol {p}" if several else part for part in missing_parts(mine, f, p)]
