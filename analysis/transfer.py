"""Tuning transfer between two sweeps of one space: tune on A (a short schedule, a small model,
one dataset), train B (a long schedule, a larger model, another dataset). How far the optimum
moves, whether the configurations rank alike, and what using A's optimum costs in B.

- ``lr_shift`` and ``wd_shift``: log2 of B's best trial's value over A's (+1: B's optimum is
  twice A's).
- ``rank_correlation``: Spearman's correlation of the two sweeps' outcomes over the draws they
  share (the same draws, or the same positions in each sweep's own intervals, as comparisons
  pair them: ``experiments.same_draws`` on their first k); NaN where they share none.
- ``regret``: B's outcome at A's optimum minus B's best, in B's metric (0 or more): B's trial
  of A's very (lr, wd) where B tried it (``at: "same draw"``), else B's trial nearest to A's
  optimum in (log lr, log wd) (``at: "nearest"``; ``"none"`` where lr or wd is not positive).
  Each optimum is one trial, so shifts and regret carry its seed noise: read them beside the
  sweeps' noise floors.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis import experiments
from analysis.experiments import first_trials
from store import schema


def transfer(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """One row of ``transfer_table``: A's and B's optimum, the shifts, the rank correlation and the
    regret of using A's optimum in B (how much worse than B's best, in B's metric: 0 or more)."""
    first = first_trials({"a": a, "b": b})
    shared = experiments.same_draws(first["a"], first["b"])
    best_a, best_b = (g.loc[g["metric_score"].idxmin()] for g in (a, b))
    row = {"lr_a": best_a["lr"], "wd_a": best_a["wd"], "lr_b": best_b["lr"], "wd_b": best_b["wd"],
           "lr_shift": octaves(best_a["lr"], best_b["lr"]), "wd_shift": octaves(best_a["wd"], best_b["wd"]),
           "rank_correlation": math.nan, "at": "none", "regret": math.nan}  # fmt: skip
    if shared:
        x, y = (first[s].sort_values("index")["metric_score"].to_numpy() for s in ("a", "b"))
        row["rank_correlation"] = float(scipy_stats.spearmanr(x, y).statistic)
    same = b[
        np.isclose(b["lr"], best_a["lr"], rtol=1e-12, atol=0) & np.isclose(b["wd"], best_a["wd"], rtol=1e-12, atol=0)
    ]
    if len(same):  # B trained A's very configuration
        row["at"], row["regret"] = "same draw", float(same["metric_score"].min() - best_b["metric_score"])
        return row
    values = b[["lr", "wd"]].to_numpy(dtype=float)
    usable = (values > 0).all(axis=1) & (np.asarray([best_a["lr"], best_a["wd"]], dtype=float) > 0).all()
    if usable.any():  # B's trial nearest to A's optimum in (log lr, log wd)
        offsets = np.log(values[usable]) - np.log([best_a["lr"], best_a["wd"]])
        at = b[usable].iloc[int(np.argmin((offsets**2).sum(axis=1)))]
        row["at"], row["regret"] = "nearest", float(at["metric_score"] - best_b["metric_score"])
    return row


def octaves(a: float, b: float) -> float:
    """log2(b / a): how far an optimum moved, in doublings; NaN where either is not positive."""
    return math.log2(b / a) if a > 0 and b > 0 else math.nan


def transfer_pairs(sets: dict[str, pd.DataFrame]) -> list[tuple[str, str, str]]:
    """The pairs a study's sweeps hold, shorter or smaller first: one model and optimizer at two
    schedule lengths (``length``), or one family and optimizer at two model sizes (``size``),
    within one protocol and metric."""
    meta = {n: (transfer_key(g), g["model"].iloc[0], g["family"].iloc[0], g["epochs"].iloc[0],
                g["flops"].iloc[0] if "flops" in g else math.nan) for n, g in sets.items()}  # fmt: skip
    pairs = []
    for a, (key_a, model_a, family_a, epochs_a, flops_a) in sorted(meta.items()):
        for b, (key_b, model_b, family_b, epochs_b, flops_b) in sorted(meta.items()):
            if key_a != key_b:
                continue
            if pd.isna(epochs_a) or pd.isna(epochs_b):  # an imported sweep of unknown length
                continue
            if model_a == model_b and epochs_a < epochs_b:
                pairs.append((a, b, "length"))
            elif (
                family_a == family_b
                and epochs_a == epochs_b
                and pd.notna(flops_a)
                and pd.notna(flops_b)
                and flops_a < flops_b
            ):
                pairs.append((a, b, "size"))
    return pairs


def transfer_key(g: pd.DataFrame) -> tuple:
    """What two sweeps must share to transfer: protocol, optimizer and metric."""
    return schema.protocol_labels(g).iloc[0], g["optimizer"].iloc[0], schema.metric_of_frame(g).name


def transfer_table(trials: pd.DataFrame, pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """Transfer from A to B for the named pairs of EDF sweeps, or for every length and size pair
    the store holds (``transfer_pairs``)."""
    sets = experiments.edf_sets(trials)
    named = [(a, b, "named") for a, b in pairs] if pairs is not None else transfer_pairs(sets)
    rows = [{"a": a, "b": b, "kind": kind, **transfer(sets[a], sets[b])} for a, b, kind in named]
    return pd.DataFrame(rows)
