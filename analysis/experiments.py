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


GRID_SAMPLER = "fixed"  # the sampler column of grid rows (one fixed (lr, wd) per point)


def noise_rows(trials: pd.DataFrame) -> pd.Series:
    """Seed-noise trials (`stability noise`): the best (lr, wd) of a sweep re-trained under other seeds."""
    if "noise_of" not in trials:
        return pd.Series(False, index=trials.index)
    return trials["noise_of"].notna()


def usable(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that trained (ok or diverged); failed trials are infrastructure faults, not outcomes."""
    if trials.empty:
        return trials
    out = trials[trials["status"].isin(["ok", "diverged"])].copy()
    out["size"] = out["model"].map(SIZE_OF)
    return out


def optimum_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Grid trials (one fixed (lr, wd) per model, optimizer and length), best if repeated.

    Only rows a grid wrote (sampler "fixed"; no sampler column in older stores), never EDF
    or noise rows, and one protocol per point: the rows of the preset seen last win ties.
    """
    t = usable(trials)
    if t.empty:
        return t
    t = t[~noise_rows(t)]
    if "sampler" in t:
        t = t[t["sampler"].fillna(GRID_SAMPLER) == GRID_SAMPLER]
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


def edf_sets(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The trials of each EDF sweep, keyed by sweep: a sweep is one protocol (model, optimizer,
    epochs, data, image size, seed), so two sweeps of one model at two presets stay apart.
    Grid and noise rows are left out."""
    t = usable(trials)
    if t.empty:
        return {}
    t = t[~noise_rows(t)]
    if "sampler" in t:
        t = t[t["sampler"].isin(EDF_SAMPLERS)]
    return {sweep: g for sweep, g in t.groupby("sweep") if len(g) > 1}


def noise_floors(trials: pd.DataFrame) -> pd.DataFrame:
    """Per sweep with noise trials: the spread of the best (lr, wd)'s error across seeds."""
    t = usable(trials)
    rows = []
    if t.empty or not noise_rows(t).any():
        return pd.DataFrame(columns=["sweep", "seeds", "noise_mean", "noise_std", "noise_range"])
    for sweep, g in t[noise_rows(t)].groupby("noise_of"):
        err = g["top1_err"].astype(float)
        rows.append(
            {
                "sweep": sweep,
                "seeds": len(g),
                "noise_mean": float(err.mean()),
                "noise_std": float(err.std(ddof=1)) if len(g) > 1 else float("nan"),
                "noise_range": float(err.max() - err.min()),
            }
        )
    return pd.DataFrame(rows)


def stability_table(trials: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per EDF sweep: n, diverged, best error, each summary with its bootstrap interval,
    and the seed-noise floor where `stability noise` measured one."""
    rows = []
    floors = noise_floors(trials).set_index("sweep")
    for sweep, g in sorted(edf_sets(trials).items()):
        row = {
            "sweep": sweep,
            "model": g["model"].iloc[0],
            "family": g["family"].iloc[0],
            "optimizer": g["optimizer"].iloc[0],
            "epochs": int(g["epochs"].iloc[0]),
            "n": len(g),
            "diverged": int((g["status"] == "diverged").sum()),
            "best_err": g["top1_err"].min(),
        }
        for name, (est, lo, hi) in stats.summary_intervals(g["top1_err"], n_resamples=n_resamples, seed=seed).items():
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = est, lo, hi
        if sweep in floors.index:
            row.update(floors.loc[sweep, ["noise_std", "noise_range"]].to_dict())
        rows.append(row)
    return pd.DataFrame(rows)


PROTOCOL = ["optimizer", "epochs", "dataset", "image_size", "batch_size", "seed"]


def same_draws(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two sweeps tried the same (lr, wd) draws in the same order (then they pair by index)."""
    key = ["index", "lr", "wd"]
    if not set(key) <= set(a) or len(a) != len(b):
        return False
    x, y = a.sort_values("index")[key].to_numpy(), b.sort_values("index")[key].to_numpy()
    return bool(np.allclose(x, y, rtol=1e-12, atol=0))


def comparisons(trials: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every pair of EDF sweeps with the same optimizer and protocol: the KS test of their deltas,
    each summary's difference (first minus second) with a bootstrap interval, the seed-noise
    floor where measured, and the comparison in words."""
    sets = edf_sets(trials)
    floors = noise_floors(trials).set_index("sweep")["noise_std"].to_dict()
    rows = []
    names = sorted(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ga, gb = sets[a], sets[b]
            protocol = [c for c in PROTOCOL if c in ga and c in gb]
            if any(ga[c].iloc[0] != gb[c].iloc[0] for c in protocol):
                continue
            paired = same_draws(ga, gb)
            ea = ga.sort_values("index")["top1_err"] if paired else ga["top1_err"]
            eb = gb.sort_values("index")["top1_err"] if paired else gb["top1_err"]
            row = {"a": a, "b": b, "optimizer": ga["optimizer"].iloc[0], "paired": paired, **stats.compare(ea, eb)}
            diffs = stats.compare_summaries(ea, eb, paired=paired, n_resamples=n_resamples, seed=seed)
            for name, (d, lo, hi) in diffs.items():
                row[f"{name}_diff"], row[f"{name}_lo"], row[f"{name}_hi"] = d, lo, hi
            noise = max(floors.get(a, np.nan), floors.get(b, np.nan))
            row["noise_std"] = noise
            row["beyond_noise"] = bool(abs(row["median_delta_diff"]) > noise) if np.isfinite(noise) else None
            row["in_words"] = in_words(ga["model"].iloc[0], gb["model"].iloc[0], diffs["median_delta"], noise)
            rows.append(row)
    return pd.DataFrame(rows)


def in_words(a: str, b: str, diff: tuple[float, float, float], noise: float) -> str:
    """E.g. "vit_c_4gf's median delta is lower than vit_p_4gf's by 2.10 points, 95% CI [1.20, 3.00]"."""
    d, lo, hi = diff
    way = "lower" if d < 0 else "higher"
    text = f"{a}'s median delta is {way} than {b}'s by {abs(d):.2f} points, 95% CI [{lo:.2f}, {hi:.2f}]"
    if lo <= 0 <= hi:
        text += " (the interval includes 0)"
    if np.isfinite(noise):
        text += f"; seed noise {noise:.2f} points ({'exceeded' if abs(d) > noise else 'not exceeded'})"
    return text
