"""Training-length deltas, optimizer gaps and EDF sets from a trials table (docs/design.md, "Analysis definitions")."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis import sensitivity, stats
from store import schema

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
    "vit_p_nano": "nano",
    "vit_c_nano": "nano",
    "regnety_nano": "nano",
}  # RegNetY-16GF stands beside the 18GF ViTs, as in the paper's figures
SIZES = ["1GF", "4GF", "18GF"]  # the paper's panels
NANO = "nano"  # the laptop preset's zoo


def panel_sizes(present) -> list[str]:
    """The model sizes a figure gives a panel each: the paper's three (drawn empty where the
    store lacks one), after the nano zoo's where the store has it; a store of only the nano zoo
    gets its one panel, not three empty ones beside it."""
    present = {s for s in present if isinstance(s, str)}
    nano = [NANO] if NANO in present else []
    return nano + (SIZES if present & set(SIZES) or not nano else [])


EDF_SAMPLERS = ("random", "sobol", "imported")  # imported: a sweep run elsewhere (`stability import`)


GRID_SAMPLER = "fixed"  # the sampler column of grid rows (one fixed (lr, wd) per point)


def noise_rows(trials: pd.DataFrame) -> pd.Series:
    """Seed-noise trials (`stability noise`): the best (lr, wd) of a sweep re-trained under other seeds."""
    if "noise_of" not in trials:
        return pd.Series(False, index=trials.index)
    return trials["noise_of"].notna()


def scored(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``metric_value`` (the outcome in its metric's units, a diverged trial at the
    metric's diverged value) and ``metric_score`` (the same with lower better), from the rows' one
    metric (``store.schema.Metric``): what EDFs, bests and comparisons are computed on. Derived
    from the metric's own column each time, so scoring scored rows changes nothing."""
    if not len(rows):
        return rows.assign(metric_value=pd.Series(dtype=float), metric_score=pd.Series(dtype=float))
    metric = schema.metric_of_frame(rows)
    return rows.assign(metric_value=schema.metric_values(rows, metric), metric_score=schema.scores(rows, metric))


def usable(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials that trained (ok or diverged); failed trials are infrastructure faults, not outcomes."""
    if trials.empty:
        return trials
    out = trials[trials["status"].isin(["ok", "diverged"])].copy()
    out["size"] = out["model"].map(SIZE_OF)
    return out


def with_protocol(trials: pd.DataFrame) -> pd.DataFrame:
    """The rows with a ``protocol`` column: the label of what makes them comparable (``store.schema``)."""
    return trials.assign(protocol=schema.protocol_labels(trials)) if len(trials) else trials.assign(protocol=[])


def of_protocol(trials: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The rows (any kind, any status) run under one protocol, named by its label, and the
    seed-noise rows of its sweeps: those re-train a sweep's best under other seeds (so their own
    label differs), yet they give its sweeps' noise floors, which its figures draw."""
    if not len(trials):
        return trials
    mine = schema.protocol_labels(trials) == protocol
    noise = noise_rows(trials)
    if noise.any():
        mine |= noise & trials["noise_of"].isin(set(trials.loc[mine & ~noise, "sweep"]))
    return trials[mine]


# Grid sweeps are named figure{2,3}-<preset> (sweeps/grid.py); `stability train` rows are "train".
GRID_SWEEP = r"figure[23]-"


def grid_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows a grid wrote (sampler "fixed"), any status, with their protocol.

    A row without a sampler is a single `stability train` run, never a grid point, unless its
    sweep is named as grids name theirs (``figure2-*``, ``figure3-*``): grid rows written before
    the sampler column existed have none, also in a store whose newer rows have one. A store
    written before the column existed (no such column at all) counts every row.
    """
    if trials.empty:
        return with_protocol(trials)
    t = trials[~noise_rows(trials)]
    if "sampler" in t:
        named = t["sweep"].astype(str).str.match(GRID_SWEEP) if "sweep" in t else False
        old_grid = t["sampler"].isna() & named
        t = t[(t["sampler"] == GRID_SAMPLER) | old_grid]
    return with_protocol(t)


POINT = ["protocol", "model", "optimizer", "epochs"]


def optimum_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Grid trials (one fixed (lr, wd) per model, optimizer and length), best if repeated.

    Only rows a grid wrote (``grid_rows``), never EDF, noise or single-run rows, and one
    point per protocol: two protocols' runs of one (model, optimizer, epochs) stay two points.
    """
    t = usable(grid_rows(trials))
    if t.empty:
        return t
    return t.sort_values("top1_err", kind="stable").drop_duplicates(POINT).reset_index(drop=True)


def failed_grid_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Grid points whose runs all failed (infrastructure faults): left out of Figures 2 and 3."""
    g = grid_rows(trials)
    if g.empty:
        return pd.DataFrame(columns=POINT)
    failed = g.loc[g["status"] == "failed", POINT].drop_duplicates()
    done = usable(g)[POINT].drop_duplicates()
    merged = failed.merge(done, on=POINT, how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", POINT].reset_index(drop=True)


def grid_protocols(trials: pd.DataFrame) -> list[str]:
    """The protocols under which the store holds grid runs (Figures 2 and 3), sorted; one whose
    runs all failed among them, so that its figure says how many failed (``failed_protocols``)."""
    return sorted(set(grid_rows(trials)["protocol"]))


def failed_protocols(trials: pd.DataFrame) -> dict[str, int]:
    """Protocols whose grid runs all failed -> how many runs failed: their figures have no point."""
    g = grid_rows(trials)
    if g.empty:
        return {}
    done = set(usable(g)["protocol"])
    failed = g[g["status"] == "failed"]
    return {str(p): int(n) for p, n in failed.groupby("protocol").size().items() if p not in done}


def edf_protocols(trials: pd.DataFrame, optim: str, *, paper: bool = False) -> list[str]:
    """The protocols of the EDF sets of one optimizer, sorted: each protocol's sweeps are drawn in a
    figure of their own (a protocol has one metric). ``paper``: only those that measure top-1 error,
    which the paper's Figures 4 (AdamW) and 5 (SGD) draw."""
    sets = [g for g in (top1_sets if paper else edf_sets)(trials).values() if g["optimizer"].iloc[0] == optim]
    return sorted(set().union(*(set(schema.protocol_labels(g)) for g in sets)))


CURVE = ["protocol", "model", "family", "size", "optimizer", "epochs", "top1_err", "carried", "failed"]


def error_vs_epochs(trials: pd.DataFrame) -> pd.DataFrame:
    """Error per (protocol, model, optimizer, epochs), with the paper's rule for diverged long runs.

    Where a run diverged, the best result of a shorter schedule of the same model, optimizer
    and protocol is carried forward (``carried`` = True) instead of the 100% error; never one
    of another protocol, which trained on other data or at another size. ``failed``: the
    curve's grid points left out because their runs failed.
    """
    runs = optimum_runs(trials)
    if runs.empty:
        return pd.DataFrame(columns=CURVE)
    failed = failed_grid_runs(trials).groupby(["protocol", "model", "optimizer"]).size().to_dict()
    rows = []
    for (protocol, model, optim), group in runs.groupby(["protocol", "model", "optimizer"]):
        best_so_far = np.inf
        for _, r in group.sort_values("epochs").iterrows():
            carried = r["status"] == "diverged" and np.isfinite(best_so_far)
            err = best_so_far if carried else float(r["top1_err"])
            if r["status"] != "diverged":
                best_so_far = min(best_so_far, err)
            rows.append(
                {
                    "protocol": protocol,
                    "model": model,
                    "family": r["family"],
                    "size": SIZE_OF.get(model),
                    "optimizer": optim,
                    "epochs": int(r["epochs"]),
                    "top1_err": err,
                    "carried": bool(carried),
                    "failed": int(failed.get((protocol, model, optim), 0)),
                }
            )
    return pd.DataFrame(rows, columns=CURVE)


def training_length_deltas(trials: pd.DataFrame) -> pd.DataFrame:
    """err(E) - err(longest E) per (protocol, model, optimizer): the paper's err(E) - err(400),
    each curve measured against its own protocol's longest run."""
    curve = error_vs_epochs(trials)
    rows = []
    for _, g in curve.groupby(["protocol", "model", "optimizer"]):
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


GAP_KEYS = ["protocol", "model", "family", "size", "epochs"]


def optimizer_gaps(trials: pd.DataFrame) -> pd.DataFrame:
    """err(optimizer) - err(best optimizer) per (protocol, model, epochs) and optimizer, each at its
    optimum, wherever two or more optimizers trained that point (the paper's SGD - AdamW gap
    is the SGD row where AdamW is best). ``best_optimizer``: the point's lowest error (ties: by
    name); ``carried``: this or the best run was carried forward; ``failed``: grid points of the
    model's curves left out because their runs failed."""
    curve = error_vs_epochs(trials)
    columns = [*GAP_KEYS, "optimizer", "top1_err", "best_optimizer", "best_err", "gap", "carried", "failed"]
    if curve.empty:
        return pd.DataFrame(columns=columns)
    # dropna: a model outside the paper's sizes has no size, and is a point like any other
    several = curve[curve.groupby(GAP_KEYS, dropna=False)["optimizer"].transform("nunique") >= 2]
    rows = []
    for _, point in several.groupby(GAP_KEYS, dropna=False):
        best = point.sort_values(["top1_err", "optimizer"]).iloc[0]
        for _, r in point.sort_values("optimizer").iterrows():
            rows.append(
                {
                    **{k: r[k] for k in GAP_KEYS},
                    "optimizer": r["optimizer"],
                    "top1_err": r["top1_err"],
                    "best_optimizer": best["optimizer"],
                    "best_err": best["top1_err"],
                    "gap": r["top1_err"] - best["top1_err"],
                    "carried": bool(r["carried"] or best["carried"]),
                    "failed": int(point["failed"].sum()),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def edf_rows(trials: pd.DataFrame) -> pd.DataFrame:
    """Rows of EDF sweeps (sampler random or sobol; every row in a store without a sampler
    column), any status; grid and noise rows left out."""
    if trials.empty:
        return trials
    t = trials[~noise_rows(trials)]
    return t[t["sampler"].isin(EDF_SAMPLERS)] if "sampler" in t else t


def edf_sets(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The usable trials of each EDF sweep, keyed by sweep: a sweep is one protocol (model,
    optimizer, epochs, data, image size, seed, space), so two sweeps of one model at two presets
    stay apart. Grid and noise rows are left out, and so are failed trials (``failed_counts``).
    Each set is ``scored`` in its own metric."""
    t = usable(edf_rows(trials))
    if t.empty:
        return {}
    return {sweep: scored(g) for sweep, g in t.groupby("sweep") if len(g) > 1}


def top1_sets(trials: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The EDF sets that measure top-1 error: what the paper's Figures 4 and 5 draw (a sweep of
    another metric is drawn in the comparison figure and the report)."""
    return {k: g for k, g in edf_sets(trials).items() if schema.metric_of_frame(g) == schema.TOP1_ERR}


def failed_counts(trials: pd.DataFrame) -> dict[str, int]:
    """Per EDF sweep: its failed trials (infrastructure faults), which its EDF leaves out; every
    figure and table that leaves them out says how many."""
    t = edf_rows(trials)
    if t.empty:
        return {}
    return {str(k): int(v) for k, v in t[t["status"] == "failed"].groupby("sweep").size().items()}


def counted(n: int, failed: int) -> str:
    """The text "n=16" or "n=16, 2 failed left out": the trials an EDF holds and the failed ones it leaves out."""
    return f"n={n}" + (f", {failed} failed left out" if failed else "")


NOISE_COLUMNS = ["sweep", "seeds", "noise_mean", "noise_std", "noise_std_lo", "noise_std_hi", "noise_range"]


def noise_floors(trials: pd.DataFrame) -> pd.DataFrame:
    """Per sweep with noise trials: the spread of the best (lr, wd)'s error across seeds, with the
    95% interval of its standard deviation (``stats.seed_noise_interval``; NaN from one seed)."""
    t = usable(trials)
    rows = []
    if t.empty or not noise_rows(t).any():
        return pd.DataFrame(columns=NOISE_COLUMNS)
    for sweep, g in t[noise_rows(t)].groupby("noise_of"):
        err = schema.metric_values(g)
        std = float(err.std(ddof=1)) if len(g) > 1 else float("nan")
        low, high = stats.seed_noise_interval(std, len(g))
        rows.append(
            {
                "sweep": sweep,
                "seeds": len(g),
                "noise_mean": float(err.mean()),
                "noise_std": std,
                "noise_std_lo": low,
                "noise_std_hi": high,
                "noise_range": float(err.max() - err.min()),
            }
        )
    return pd.DataFrame(rows, columns=NOISE_COLUMNS)


def stability_table(trials: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per EDF sweep: its protocol, n, failed (left out), diverged (counted at the metric's
    diverged value: 100 for top-1 error), its best (``best_err``: the best value of the sweep's
    ``metric``, top-1 error for the built-in trainer), each summary of the distances to that best
    with its interval (``stats.summary_intervals``), and the seed noise where `stability noise`
    measured it (``seeds``, ``noise_std`` with its interval, ``noise_range``)."""
    rows = []
    floors = noise_floors(trials).set_index("sweep")
    failed = failed_counts(trials)
    for sweep, g in sorted(edf_sets(trials).items()):
        row = {
            "sweep": sweep,
            "protocol": "/".join(sorted(set(schema.protocol_labels(g)))),
            "model": g["model"].iloc[0],
            "family": g["family"].iloc[0],
            "optimizer": g["optimizer"].iloc[0],
            "epochs": int(g["epochs"].iloc[0]) if pd.notna(g["epochs"].iloc[0]) else None,  # unknown: imported
            "n": len(g),
            "failed": failed.get(sweep, 0),
            "diverged": int((g["status"] == "diverged").sum()),
            "best_err": g["metric_value"].iloc[int(np.argmin(g["metric_score"].to_numpy()))],
        }
        summaries = stats.summary_intervals(g["metric_score"], n_resamples=n_resamples, seed=seed)
        for name, (est, lo, hi) in summaries.items():
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = est, lo, hi
        if sweep in floors.index:
            row.update(
                floors.loc[sweep, ["seeds", "noise_std", "noise_std_lo", "noise_std_hi", "noise_range"]].to_dict()
            )
        row.update(sensitivity.sensitivities(g))
        row["metric"] = schema.metric_of_frame(g).name
        rows.append(row)
    return pd.DataFrame(rows)


def sensitivity_table(trials: pd.DataFrame) -> pd.DataFrame:
    """The lr and wd sensitivity of each ``--sampler grid`` sweep, exact over its grid's values
    (``analysis.sensitivity``); its EDF sweeps' are in ``stability_table``. Failed trials left out."""
    grid = trials[trials["sampler"] == "grid"] if "sampler" in trials else trials.iloc[:0]
    rows = []
    for sweep, g in usable(grid).groupby("sweep") if len(grid) else []:
        g = scored(g)
        rows.append({"sweep": sweep, "model": g["model"].iloc[0], "optimizer": g["optimizer"].iloc[0],
                     "epochs": g["epochs"].iloc[0], "trials": len(g), **sensitivity.sensitivities(g)})  # fmt: skip
    return pd.DataFrame(rows)


def same_draws(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two sweeps tried the same (lr, wd) draws in the same order (then they pair by
    index): the same values, or the same positions in each sweep's own intervals (one seed and
    sampler over two models' centred intervals, as the laptop preset draws them)."""
    key = ["index", "lr", "wd"]
    if not set(key) <= set(a) or not set(key) <= set(b) or len(a) != len(b):
        return False
    x, y = a.sort_values("index")[key].to_numpy(), b.sort_values("index")[key].to_numpy()
    if np.allclose(x, y, rtol=1e-12, atol=0):
        return True
    pa, pb = draw_positions(a), draw_positions(b)
    return pa is not None and pb is not None and bool(np.allclose(pa, pb, rtol=0, atol=1e-9))


def shared_draws(sets: dict[str, pd.DataFrame]) -> int:
    """How many draws the sweeps share: the smallest planned count among them (highest index + 1,
    whatever trials failed and left no row). An extended sweep's draws begin with the shorter's."""
    return int(min(g["index"].max() for g in sets.values())) + 1


def first_trials(sets: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each sweep's trials among the draws they share (``shared_draws``): what sweeps of different
    lengths are compared on."""
    k = shared_draws(sets)
    return {name: g[g["index"] < k] for name, g in sets.items()}


def draw_positions(g: pd.DataFrame) -> np.ndarray | None:
    """Each trial's (lr, wd) in index order as its position in the sweep's stored intervals: 0 at
    the low end, 1 at the high end, on the scale the space draws it (log or linear); None where
    the sweep stored no space with both as ranges."""
    spaces = g["space"].dropna().unique() if "space" in g else []
    if len(spaces) != 1:
        return None
    space = json.loads(spaces[0])
    rows, out = g.sort_values("index"), []
    for p in ("lr", "wd"):
        kind, *ends = space.get(p, ["choice"])
        if kind not in ("log", "uniform"):
            return None
        scale = np.log if kind == "log" else (lambda v: v)
        lo, hi = scale(float(ends[0])), scale(float(ends[1]))
        out.append((scale(rows[p].to_numpy(dtype=float)) - lo) / (hi - lo))
    return np.column_stack(out)


def _samples(rows: pd.DataFrame, field: str) -> bool:
    """Whether the sweep's stored space samples ``field`` (then it varies within the sweep)."""
    spaces = rows["space"].dropna() if "space" in rows else []
    return any(field in json.loads(s) for s in spaces if isinstance(s, str) and s)


def comparable(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two EDF sweeps compare: one protocol over every row of both (``store.schema``: data,
    sizes, preset, seed, recipe fields, search space), one optimizer, one schedule length (or
    one space that samples it)."""
    both = pd.concat([a, b], ignore_index=True)
    if schema.protocol_key(both).nunique() != 1 or both["optimizer"].nunique() != 1:
        return False
    return both["epochs"].nunique() <= 1 or _samples(both, "epochs")


HOLM_FAMILY = ["protocol", "optimizer", "metric"]  # the pairs one EDF figure draws together


def comparisons(trials: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Every pair of EDF sweeps of one protocol and optimizer (``comparable``): each summary's
    difference (first minus second) with its interval and p-value, all from one resampling
    (``stats.summary_differences``, paired where both tried the same draws), the seed-noise
    floor of the tested difference where measured, and the comparison in words.

    ``effect`` names the summary the test is on (the mean delta) and ``statistic``/``p_value`` and
    ``effect_diff``/``effect_lo``/``effect_hi`` give its difference, p-value and interval, which
    agree: p <= 0.05 exactly when the interval excludes 0. ``p_holm`` is Holm-adjusted within its
    family (``holm_family``): the pairs of one protocol, optimizer and metric, which is the set of
    sweeps one EDF figure draws and one claim of the paper (Figure 4 under AdamW, Figure 5 under
    SGD) is about; a report holds several such families and adjusts each on its own."""
    sets = edf_sets(trials)
    noise = noise_floors(trials).set_index("sweep")
    rows = []
    names = sorted(sets)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if comparable(sets[a], sets[b]):
                rows.append(compare_pair(a, b, sets[a], sets[b], noise, n_resamples, seed))
    if not rows:
        return pd.DataFrame()
    out = pd.DataFrame(rows)
    families = out.groupby(HOLM_FAMILY, sort=False)
    p_holm = families["p_value"].transform(lambda p: pd.Series(stats.holm(p), index=p.index))
    out.insert(out.columns.get_loc("p_value") + 1, "p_holm", p_holm)
    size = families["p_value"].transform("size")
    family = [family_name(r.optimizer, r.protocol, m) for r, m in zip(out.itertuples(), size, strict=True)]
    out.insert(out.columns.get_loc("p_holm") + 1, "holm_family", family)
    out["in_words"] = [in_words(r) for r in out.itertuples()]
    return out


def family_name(optimizer: str, protocol: str, pairs: int) -> str:
    """A Holm family in words: "the 3 adamw pairs of protocol X"."""
    return f"the {pairs} {optimizer} pair{'s' * (pairs != 1)} of protocol {protocol}"


def named(a: str, b: str, model_a: str, model_b: str) -> tuple[str, str]:
    """The two sides of a comparison in words: their models, or their sweeps where one model is both."""
    return (model_a, model_b) if model_a != model_b else (a, b)


def compare_pair(a: str, b: str, ga: pd.DataFrame, gb: pd.DataFrame, noise: pd.DataFrame, n_resamples: int,
                 seed: int) -> dict:  # fmt: skip
    """One row of ``comparisons``: the summaries' differences, the test and the noise floor."""
    counts = {"trials_a": len(ga), "trials_b": len(gb)}  # each sweep's own count, said with the comparison
    k = shared_draws({a: ga, b: gb})
    first = first_trials({a: ga, b: gb})  # sweeps of two lengths compare on the draws they share
    paired = same_draws(first[a], first[b])
    ga, gb = (first[a].sort_values("index"), first[b].sort_values("index")) if paired else (first[a], first[b])
    ea, eb = ga["metric_score"].to_numpy(), gb["metric_score"].to_numpy()
    diffs = stats.summary_differences(ea, eb, paired=paired, n_resamples=n_resamples, seed=seed)
    tested = diffs[stats.EFFECT]
    row = {
        "a": a,
        "b": b,
        "model_a": ga["model"].iloc[0],
        "model_b": gb["model"].iloc[0],
        **counts,
        "protocol": schema.protocol_labels(ga).iloc[0],
        "optimizer": ga["optimizer"].iloc[0],
        "metric": schema.metric_of_frame(ga).name,
        "paired": paired,
        "draws": k,  # the draws compared: each sweep's first k (the shorter's planned count)
        "test": stats.PAIRED_TEST if paired else stats.UNPAIRED_TEST,
        "effect": stats.EFFECT,
        "statistic": tested.estimate,
        "p_value": tested.p_value,
    }
    for name, r in diffs.items():
        row[f"{name}_diff"], row[f"{name}_lo"], row[f"{name}_hi"] = r.estimate, r.low, r.high
    row["effect_diff"], row["effect_lo"], row["effect_hi"] = tested.estimate, tested.low, tested.high
    row.update(pair_noise(a, b, ga, gb, ea, eb, noise, seed))
    floor = row["noise_floor"]
    row["beyond_noise"] = bool(abs(tested.estimate) > BEYOND_NOISE * floor) if np.isfinite(floor) else None
    return row


def pair_noise(a: str, b: str, ga: pd.DataFrame, gb: pd.DataFrame, ea: np.ndarray, eb: np.ndarray,
               noise: pd.DataFrame, seed: int) -> dict:  # fmt: skip
    """The seed-noise floor of a pair's tested difference (``stats.noise_floor``) with its interval,
    the seeds behind it (``noise_seeds``) and where it comes from (``noise_source``); where one
    sweep's noise was measured it stands for both; a sweep measured with one seed has none."""

    def measured(sweep: str) -> tuple[float, float, float] | None:
        if sweep not in noise.index or not np.isfinite(noise.loc[sweep, "noise_std"]):
            return None
        return tuple(float(noise.loc[sweep, k]) for k in ("noise_std", "noise_std_lo", "noise_std_hi"))

    seeds = {s: int(noise.loc[s, "seeds"]) for s in (a, b) if s in noise.index}
    na, nb = measured(a), measured(b)
    out = {"noise_floor": np.nan, "noise_floor_lo": np.nan, "noise_floor_hi": np.nan, "noise_shift": np.nan,
           "noise_seeds": " + ".join(f"{seeds[s]} ({s})" for s in sorted(seeds))}  # fmt: skip
    if na is None and nb is None:
        why = {1: "measured with one seed: no spread"}
        said = [f"{s} {why.get(k, 'has no finite spread (a seed diverged)')}" for s, k in sorted(seeds.items())]
        out["noise_source"] = "; ".join(said)
        return out
    out["noise_source"] = (
        "both sweeps' noise runs" if na and nb else f"{a if na else b}'s noise runs, assumed for both sweeps"
    )
    floor = stats.noise_floor(ea, eb, na or nb, nb or na, fixed_a=(ga["status"] == "diverged").to_numpy(),
                              fixed_b=(gb["status"] == "diverged").to_numpy(), seed=seed)  # fmt: skip
    out.update(noise_floor=floor.floor, noise_floor_lo=floor.low, noise_floor_hi=floor.high, noise_shift=floor.shift)
    return out


BEYOND_NOISE = 2.0  # a difference beyond twice its seed-noise floor is one that seed noise alone rarely makes


def unit_of(metric: str) -> str:
    """What distances of a metric are counted in, in words: points of top-1 error, else the metric's own units."""
    return "points" if metric == schema.TOP1_ERR.name else f"(in {metric})"


def in_words(r) -> str:
    """One comparison (a row of ``comparisons``) as one claim, e.g. "vit_c_4gf's mean delta over the
    same draws is lower than vit_p_4gf's: difference -2.10 points, 95% CI [-3.00, -1.20], p = 0.002
    (Holm over the 3 adamw pairs of protocol X: 0.006); seed-noise floor of this difference 0.45
    points (0.24-2.80 over the seed noise's 95% intervals; 3 (a) + 3 (b) seeds, both sweeps' noise
    runs): twice the floor exceeded". The difference is first minus second; the interval and the
    p-value are read off one resampling and agree; the floor is the spread of this very difference
    under the measured seed noise (``BEYOND_NOISE`` times it is what noise alone rarely reaches).
    ``unit``: points of top-1 error, or another metric's own units."""
    a, b = named(r.a, r.b, r.model_a, r.model_b)
    unit = unit_of(r.metric)
    f = ".2f" if unit == "points" else ".3g"  # points of error as the paper writes them; other units as they come
    d, lo, hi = r.effect_diff, r.effect_lo, r.effect_hi
    what = r.effect.replace("_", " ")
    if r.draws < max(r.trials_a, r.trials_b):  # a sweep was extended: the draws both tried
        what += f" over their first {r.draws:.0f} draws" + (" (the same in both)" if r.paired else "")
    elif r.paired:
        what += " over the same draws"
    head = f"equals {b}'s" if d == 0 else f"is {'lower' if d < 0 else 'higher'} than {b}'s"
    text = f"{a}'s {what} {head}: difference {d:+{f}} {unit}, 95% CI [{lo:{f}}, {hi:{f}}]"
    if np.isfinite(r.p_value):
        text += f", p = {r.p_value:.3g} (Holm over {r.holm_family}: {r.p_holm:.3g})"
    if np.isfinite(r.noise_floor):
        text += (f"; seed-noise floor of this difference {r.noise_floor:{f}} {unit} ({r.noise_floor_lo:{f}}-"
                 f"{r.noise_floor_hi:{f}} over the seed noise's 95% intervals; {r.noise_seeds} seeds, "
                 f"{r.noise_source}): ")  # fmt: skip
        text += f"twice the floor {'exceeded' if r.beyond_noise else 'not exceeded'}"
    elif r.noise_source:
        text += f"; no seed-noise floor ({r.noise_source})"
    return text
