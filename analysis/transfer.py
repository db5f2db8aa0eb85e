"""Tuning transfer between two sweeps of one space: tune on A (a short schedule, a small model,
one dataset), train B (a long schedule, a larger model, another dataset). How far the optimum
moves, whether the configurations rank alike, and what using A's optimum costs in B.

- ``lr_shift`` and ``wd_shift``: log2 of B's best trial's value over A's (+1: B's optimum is
  twice A's).
- ``rank_correlation``: Spearman's correlation of the two sweeps' outcomes over the draws they
  share (the same draws, or the same positions in each sweep's own intervals, as comparisons
  pair them: ``experiments.same_draws`` on their first k); NaN where they share none.
- ``regret``: B's outcome at A's optimum minus B's best, in B's metric (lower is better): the
  same draw where the sweeps share their draws (``at: "same draw"``), else B's trial nearest to
  A's optimum in (log lr, log wd) (``at: "nearest"``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from analysis import experiments
from analysis.budget import first_trials
from store import schema


def transfer(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """One row of ``transfer_table``: A's and B's optimum, the shifts, the rank correlation and the
    regret of using A's optimum in B (how much worse than B's best, in B's metric: 0 or more)."""
    first = first_trials({"a": a, "b": b})
    shared = experiments.same_draws(first["a"], first["b"])
    best_a, best_b = (g.loc[g["metric_score"].idxmin()] for g in (a, b))
    row = {
        "lr_a": best_a["lr"], "wd_a": best_a["wd"], "lr_b": best_b["lr"], "wd_b": best_b["wd"],
        "lr_shift": math.log2(best_b["lr"] / best_a["lr"]), "wd_shift": math.log2(best_b["wd"] / best_a["wd"]),
        "rank_correlation": math.nan,
    }  # fmt: skip
    if shared:
        x, y = (first[s].sort_values("index")["metric_score"].to_numpy() for s in ("a", "b"))
        row["rank_correlation"] = float(scipy_stats.spearmanr(x, y).statistic)
    if shared and best_a["index"] in set(first["b"]["index"]):
        at, row["at"] = first["b"].set_index("index").loc[best_a["index"]], "same draw"
    else:  # B's trial nearest to A's optimum in (log lr, log wd)
        offsets = np.log(b[["lr", "wd"]].to_numpy(dtype=float)) - np.log([best_a["lr"], best_a["wd"]])
        at, row["at"] = b.iloc[int(np.argmin((offsets**2).sum(axis=1)))], "nearest"
    row["regret"] = float(at["metric_score"] - best_b["metric_score"])
    return row


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
            if model_a == model_b and epochs_a < epochs_b:
                pairs.append((a, b, "length"))
            elif family_a == family_b and epochs_a == epochs_b and flops_a < flops_b:
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
