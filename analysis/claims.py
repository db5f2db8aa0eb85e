"""The paper's four claims about ViT_C against ViT_P, measured on a results store.

Xiao et al. (2021) claim that a convolutional stem makes a ViT (1) converge faster, (2) less
sensitive to the optimizer (a smaller SGD - AdamW gap), (3) more stable over lr and wd (a
steeper EDF) and (4) better at its peak. ``claims_table`` measures each on whatever a store holds
(Figures 2-3 grids, Figures 4-5 EDF sweeps with their noise runs) for one ViT_P and one ViT_C
model, and says which runs are missing where it cannot. It is what the README's laptop claims
table is: ``python -m analysis.claims --results docs/laptop/store`` prints it, and a test checks
that the README holds exactly that.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
import pandas as pd

from analysis import experiments
from analysis.store import load_trials

OPTIMIZERS = {"adamw": "AdamW", "sgd": "SGD"}
FIGURE_OF = {"adamw": "4", "sgd": "5"}


def _pair(models: set[str]) -> tuple[str, str] | None:
    """The (ViT_P, ViT_C) models of one size among ``models``: the smallest size held by both."""
    for size in [experiments.NANO, *experiments.SIZES]:
        p = [m for m in models if m.startswith("vit_p") and experiments.SIZE_OF.get(m) == size]
        c = [m for m in models if m.startswith("vit_c") and experiments.SIZE_OF.get(m) == size]
        if p and c:
            return p[0], c[0]
    return None


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def convergence(trials: pd.DataFrame) -> str:
    """Claim 1, from the grid runs: err(E) - err(longest E) per shorter E, ViT_P against ViT_C
    under each optimizer the grids trained both with (single runs: no seed noise of their own)."""
    deltas = experiments.training_length_deltas(trials)
    pair = _pair(set(deltas["model"])) if len(deltas) else None
    if pair is None:
        return "not in the store: run `stability grid --figure 2` and `--figure 3`"
    parts, verdicts = [], []
    for optim, g in deltas[deltas["model"].isin(pair)].groupby("optimizer"):
        by = {m: g[g["model"] == m].set_index("epochs")["delta"] for m in pair}
        shared = sorted(set(by[pair[0]].index) & set(by[pair[1]].index))
        if not shared:
            continue
        longest = int(g["reference_epochs"].iloc[0])
        lines = ", ".join(f"E={e}: {by[pair[0]][e]:.2f} vs {by[pair[1]][e]:.2f}" for e in shared)
        faster = [by[pair[1]][e] < by[pair[0]][e] for e in shared]
        verdicts.append("yes" if all(faster) else "no" if not any(faster) else "mixed")
        parts.append(f"{OPTIMIZERS.get(optim, optim)}, err(E) - err({longest}) of {pair[0]} vs {pair[1]}: {lines}")
    if not parts:
        return "not in the store: no grid length trained both ViTs"
    verdict = verdicts[0] if len(set(verdicts)) == 1 else "mixed"
    return f"{verdict} ({'; '.join(parts)}; single runs)"


def _bests(trials: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(model, optimizer) -> the best error of its EDF sweep (the first sweep where several)."""
    out = {}
    for _, g in sorted(experiments.top1_sets(trials).items()):
        key = (g["model"].iloc[0], g["optimizer"].iloc[0])
        out.setdefault(key, float(g["metric_value"].min()))
    return out


def _noise(trials: pd.DataFrame) -> dict[str, float]:
    """model/optimizer sweep -> seed-noise standard deviation of its best (lr, wd)."""
    floors = experiments.noise_floors(trials)
    sets = experiments.top1_sets(trials)
    out = {}
    for _, r in floors.iterrows():
        if r["sweep"] in sets:
            g = sets[r["sweep"]]
            out[(g["model"].iloc[0], g["optimizer"].iloc[0])] = float(r["noise_std"])
    return out


def optimizer_gap(trials: pd.DataFrame) -> str:
    """Claim 2, from the EDF sweeps: best SGD - best AdamW per ViT, with each best's seed noise."""
    bests, noise = _bests(trials), _noise(trials)
    pair = _pair({m for m, _ in bests})
    if pair is None or not all((m, o) in bests for m in pair for o in OPTIMIZERS):
        return "not in the store: run `stability grid --figure 4` and `--figure 5`"
    gap = {m: bests[(m, "sgd")] - bests[(m, "adamw")] for m in pair}
    sd = {m: np.hypot(noise.get((m, "sgd"), np.nan), noise.get((m, "adamw"), np.nan)) for m in pair}
    said = ", ".join(f"{m} {_fmt(gap[m])} (seed noise {sd[m]:.2f})" for m in pair)
    verdict = "yes" if gap[pair[1]] < gap[pair[0]] and gap[pair[0]] > 0 else "no"
    return f"{verdict}: best SGD - best AdamW, {said}"


def steeper_edf(trials: pd.DataFrame, *, n_resamples: int, seed: int) -> str:
    """Claim 3, from the comparisons of the EDF sweeps: ViT_C's mean delta against ViT_P's, with its
    interval, p-value, Holm family and seed-noise floor, per optimizer."""
    pairs = experiments.comparisons(trials, n_resamples=n_resamples, seed=seed)
    parts = []
    for optim, name in OPTIMIZERS.items():
        mine = pairs[pairs["optimizer"] == optim] if len(pairs) else pairs
        pair = _pair(set(mine["model_a"]) | set(mine["model_b"])) if len(mine) else None
        rows = [r for r in mine.itertuples() if pair and {r.model_a, r.model_b} == set(pair)]
        if not rows:
            parts.append(f"{name}: not in the store (`stability grid --figure {FIGURE_OF[optim]}`)")
            continue
        r = rows[0]
        sign = 1.0 if r.model_a.startswith("vit_c") else -1.0  # ViT_C minus ViT_P
        d, lo, hi = (sign * v for v in (r.effect_diff, r.effect_lo, r.effect_hi))
        lo, hi = min(lo, hi), max(lo, hi)
        verdict = "yes" if hi < 0 else "no, the reverse" if lo > 0 else "not significant"
        floor = f", seed-noise floor {r.noise_floor:.2f} [{r.noise_floor_lo:.2f}, {r.noise_floor_hi:.2f}]"
        parts.append(
            f"{name}: {verdict} (ViT_C - ViT_P mean Δ {_fmt(d)} points, 95% CI [{lo:.2f}, {hi:.2f}], "
            f"p = {r.p_value:.3g}, Holm {r.p_holm:.3g} over {r.holm_family.split(' of protocol')[0]}"
            + (floor if np.isfinite(r.noise_floor) else "")
            + ")"
        )
    return "; ".join(parts)


def better_peak(trials: pd.DataFrame) -> str:
    """Claim 4, from the EDF sweeps: each ViT's best error per optimizer, with seed noise."""
    bests, noise = _bests(trials), _noise(trials)
    pair = _pair({m for m, _ in bests})
    if pair is None:
        return "not in the store: run `stability grid --figure 4` and `--figure 5`"
    parts, verdicts = [], []
    for optim, name in OPTIMIZERS.items():
        if not all((m, optim) in bests for m in pair):
            continue
        p, c = (bests[(m, optim)] for m in pair)
        sp, sc = (noise.get((m, optim), np.nan) for m in pair)
        verdicts.append(c < p)
        parts.append(f"{name} {c:.2f}% vs {p:.2f}% (seed noise σ {sc:.2f}, {sp:.2f})")
    if not parts:
        return "not in the store: run `stability grid --figure 4` and `--figure 5`"
    verdict = "yes" if all(verdicts) else "no" if not any(verdicts) else "mixed"
    return f"{verdict}: best error of ViT_C vs ViT_P, {'; '.join(parts)}"


def claims_table(trials: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per claim: the claim and what the store measures of it."""
    rows = [
        ("ViT_C converges faster (Figures 2-3)", convergence(trials)),
        ("smaller optimizer gap for ViT_C", optimizer_gap(trials)),
        ("steeper lr/wd EDF for ViT_C (Figures 4-5)", steeper_edf(trials, n_resamples=n_resamples, seed=seed)),
        ("better peak for ViT_C", better_peak(trials)),
    ]
    return pd.DataFrame(rows, columns=["the paper's claim", "measured"])


def markdown(table: pd.DataFrame) -> str:
    lines = ["| the paper's claim | measured |", "|---|---|"]
    lines += [f"| {c} | {m} |" for c, m in zip(table["the paper's claim"], table["measured"], strict=True)]
    return "\n".join(lines) + "\n"


def sweeps_markdown(trials: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> str:
    """Each EDF sweep's best, seed noise and summaries with their 95% intervals, as a table."""
    table = experiments.stability_table(trials, n_resamples=n_resamples, seed=seed)
    if table.empty:
        return ""
    lines = [
        "| sweep | best error | seed noise σ [95% CI] (seeds) | within 2 points | median Δ | mean Δ | diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table.sort_values(["optimizer", "sweep"]).itertuples():
        seeds = getattr(r, "seeds", np.nan)
        noise = (
            f"{r.noise_std:.2f} [{r.noise_std_lo:.2f}, {r.noise_std_hi:.2f}] ({int(seeds)})"
            if np.isfinite(getattr(r, "noise_std", np.nan))
            else "not measured"
        )
        cells = [f"{v:.2f} [{lo:.2f}, {hi:.2f}]" for v, lo, hi in (
            (r.within_2, r.within_2_lo, r.within_2_hi),
            (r.median_delta, r.median_delta_lo, r.median_delta_hi),
            (r.mean_delta, r.mean_delta_lo, r.mean_delta_hi),
        )]  # fmt: skip
        lines.append(f"| `{r.sweep}` | {r.best_err:.2f}% | {noise} | {' | '.join(cells)} | {r.diverged} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.claims", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trials = load_trials(args.results)
    if trials.empty:
        print(f"error: no trial results in {args.results!r}", file=sys.stderr)
        return 2
    sweeps = sweeps_markdown(trials)
    sys.stdout.write((sweeps + "\n" if sweeps else "") + markdown(claims_table(trials)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
