"""Training-length deltas, optimizer gaps and EDF sets from a trials table (DESIGN section 7)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import stats

FAMILIES = ["ViT_P", "ViT_C", "RegNetY"]
SIZE_OF = {
    "vit_p_1gf": "1GF",
    "vit_c_1gf": "1GF",
    "regnety_1gf": "1GF",
    "vit_p_4gf": "4GF",
    "vit_c_4gf": "4GF",
    "regnety_4gf": "4GF",
    "vit_p_18gf": "18GF",
    "vit_c_18gf": "18GF",
    "regnety_16gf": "18GF",
}  # RegNetY-16GF stands beside the 18GF ViTs, as in the paper's figures
SIZES = ["1GF", "4GF", "18GF"]
EDF_SAMPLERS = ("random", "sobol")


def usable(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that trained (ok or diverged); failed trials are infrastructure faults, not outcomes."""
    if trials.empty:
        return trials
    out = trials[trials["status"].isin(["ok", "diverged"])].copy()
    out["size"] = out["model"].map(SIZE_OF)
    return out


def optimum_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Grid trials (one fixed (lr, wd) per model, optimizer and length), best if repeated."""
    t = usable(trials)
    if t.empty:
        return t
    if "sampler" in t:
        t = t[~t["sampler"].isin(EDF_SAMPLERS)]
    keys = ["model", "optimizer", "epochs"]
    return t.sort_values("top1_err").groupby(keys, as_index=False).first()


def error_vs_epochs(trials: pd.DataFrame) -> pd.DataFrame:
    """Error per (model, optimizer, epochs), with the paper's rule for diverged long runs.

    Where a run diverged, the best result of a shorter schedule of the same model and
    optimizer is carried forward (``carried`` = True) instead of the 100% error.
    """
    runs = optimum_runs(trials)
    if runs.empty:
        return pd.DataFrame(columns=["model", "family", "size", "optimizer", "epochs", "top1_err", "carried"])
    rows = []
    for (model, optim), group in runs.groupby(["model", "optimizer"]):
        best_so_far = np.inf
        for _, r in group.sort_values("epochs").iterrows():
            carried = r["status"] == "diverged" and np.isfinite(best_so_far)
            err = best_so_far if carried else float(r["top1_err"])
            if r["status"] != "diverged":
                best_so_far = min(best_so_far, err)
            rows.append(
                {
                    "model": model,
                    "family": r["family"],
                    "size": SIZE_OF.get(model),
                    "optimizer": optim,
                    "epochs": int(r["epochs"]),
                    "top1_err": err,
                    "carried": bool(carried),
                }
            )
    return pd.DataFrame(rows)


def training_length_deltas(trials: pd.DataFrame) -> pd.DataFrame:
    """err(E) - err(longest E) per (model, optimizer): the paper's err(E) - err(400)."""
    curve = error_vs_epochs(trials)
    rows = []
    for (_model, _optim), g in curve.groupby(["model", "optimizer"]):
        longest = g.loc[g["epochs"].idxmax()]
        for _, r in g[g["epochs"] < longest["epochs"]].iterrows():
            rows.append(
                {
                    **r.to_dict(),
                    "reference_epochs": int(longest["epochs"]),
                    "delta": r["top1_err"] - longest["top1_err"],
                    "carried": bool(r["carried"] or longest["carried"]),
                }
            )
    return pd.DataFrame(rows, columns=[*curve.columns, "reference_epochs", "delta"])


def optimizer_gaps(trials: pd.DataFrame) -> pd.DataFrame:
    """err(SGD) - err(AdamW) per (model, epochs), each at its Table 4 optimum."""
    curve = error_vs_epochs(trials)
    keys = ["model", "family", "size", "epochs"]
    sgd, adamw = (curve[curve["optimizer"] == o][[*keys, "top1_err", "carried"]] for o in ("sgd", "adamw"))
    both = sgd.merge(adamw, on=keys, suffixes=("_sgd", "_adamw"))
    out = both[keys].assign(
        sgd=both["top1_err_sgd"],
        adamw=both["top1_err_adamw"],
        carried=both["carried_sgd"].astype(bool) | both["carried_adamw"].astype(bool),
    )
    out["gap"] = out["sgd"] - out["adamw"]
    return out


def edf_sets(trials: pd.DataFrame) -> dict[tuple[str, str, int], pd.DataFrame]:
    """The trials of each EDF sweep, keyed by (model, optimizer, epochs)."""
    t = usable(trials)
    if t.empty:
        return {}
    if "sampler" in t:
        t = t[t["sampler"].isin(EDF_SAMPLERS)]
    return {key: g for key, g in t.groupby(["model", "optimizer", "epochs"]) if len(g) > 1}


def stability_table(trials: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per EDF set: n, diverged, best error and each summary with its bootstrap interval."""
    rows = []
    for (model, optim, epochs), g in sorted(edf_sets(trials).items()):
        row = {
            "model": model,
            "family": g["family"].iloc[0],
            "optimizer": optim,
            "epochs": epochs,
            "n": len(g),
            "diverged": int((g["status"] == "diverged").sum()),
            "best_err": g["top1_err"].min(),
        }
        for name, (est, lo, hi) in stats.summary_intervals(g["top1_err"], n_resamples=n_resamples, seed=seed).items():
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = est, lo, hi
        rows.append(row)
    return pd.DataFrame(rows)
