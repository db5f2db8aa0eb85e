"""The paper's four claims about ViT_C against ViT_P, measured on a results store.

Xiao et al. (2021) claim that a convolutional stem makes a ViT (1) converge faster, (2) less
sensitive to the optimizer (a smaller SGD - AdamW gap), (3) more stable over lr and wd (a
steeper EDF) and (4) better at its peak. ``claims_table`` measures each on whatever a store holds
(Figures 2-3 grids, Figures 4-5 EDF sweeps with their noise runs) for one ViT_P and one ViT_C
model of one size, within one protocol, and says which runs are missing where it cannot. A
verdict is "yes" or "no" only beyond the measured seed noise (twice the standard deviation of
the compared quantity) or, for the EDF, at a Holm-adjusted p <= 0.05. It is what the README's
laptop tables are: ``python -m analysis.claims --results docs/laptop/store`` prints them, and a
test checks that the README holds exactly that.
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import numpy as np
import pandas as pd

from analysis import experiments
from analysis.loading import load_trials

OPTIMIZERS = {"adamw": "AdamW", "sgd": "SGD"}
FIGURE_OF = {"adamw": "4", "sgd": "5"}
BEYOND = 2.0  # standard deviations of seed noise that a difference must exceed to count


def vit_pair(models) -> tuple[str, str] | None:
    """The (ViT_P, ViT_C) models of one size among ``models``: the smallest size held by both."""
    for size in [experiments.NANO, *experiments.SIZES]:
        p = sorted(m for m in models if m.startswith("vit_p") and experiments.SIZE_OF.get(m) == size)
        c = sorted(m for m in models if m.startswith("vit_c") and experiments.SIZE_OF.get(m) == size)
        if p and c:
            return p[0], c[0]
    return None


def verdict(diff: float, noise: float) -> str:
    """ "yes" where ``diff`` (positive: in ViT_C's favour) exceeds ``BEYOND`` times its seed noise,
    "no" where it does the reverse, "within seed noise" between; without a noise, the sign alone."""
    if not np.isfinite(noise):
        return ("yes" if diff > 0 else "no") + " (seed noise not measured)"
    if abs(diff) <= BEYOND * noise:
        return "within seed noise"
    return "yes" if diff > 0 else "no"


def noise_text(sd: float) -> str:
    return f"{sd:.2f}" if np.isfinite(sd) else "not measured"


class Sweeps:
    """The EDF sweeps of one protocol, keyed by (model, optimizer): their best error and the seed
    noise of that best (from the same sweep's noise runs)."""

    def __init__(self, trials: pd.DataFrame):
        every = experiments.top1_sets(trials)
        self.sets = {}
        for sweep, g in sorted(every.items()):
            self.sets.setdefault((g["model"].iloc[0], g["optimizer"].iloc[0]), sweep)
        floors = experiments.noise_floors(trials).set_index("sweep")["noise_std"]
        self.best = {k: float(every[s]["metric_value"].min()) for k, s in self.sets.items()}
        self.noise = {k: float(floors.get(s, np.nan)) for k, s in self.sets.items()}
        self.pair = vit_pair({m for m, _ in self.sets})

    def has(self, optim: str) -> bool:
        return self.pair is not None and all((m, optim) in self.sets for m in self.pair)


def edf_protocol(trials: pd.DataFrame) -> str | None:
    """The protocol (label) whose EDF sweeps hold both ViTs of a size: the first sorted one."""
    for label in sorted(set(experiments.edf_protocols(trials, "adamw", paper=True)) |
                        set(experiments.edf_protocols(trials, "sgd", paper=True))):  # fmt: skip
        if vit_pair(set(experiments.of_protocol(trials, label)["model"])):
            return label
    return None


def convergence(trials: pd.DataFrame, noise: float) -> str:
    """Claim 1, from the grid runs of one protocol: err(E) - err(longest E) per shorter E, ViT_P
    against ViT_C, under each optimizer both were trained with. ``noise``: a single run's seed noise
    (the largest measured for the ViTs' sweeps); a difference of two such deltas has 2 ``noise``."""
    deltas = experiments.training_length_deltas(trials)
    for protocol in sorted(set(deltas["protocol"])) if len(deltas) else []:
        mine = deltas[deltas["protocol"] == protocol]
        pair = vit_pair(set(mine["model"]))
        if pair is None:
            continue
        parts, diffs = [], []
        for optim, g in mine[mine["model"].isin(pair)].groupby("optimizer"):
            by = {m: g[g["model"] == m].set_index("epochs") for m in pair}
            shared = sorted(set(by[pair[0]].index) & set(by[pair[1]].index))
            if not shared or by[pair[0]]["reference_epochs"].iloc[0] != by[pair[1]]["reference_epochs"].iloc[0]:
                continue
            diffs += [by[pair[0]].loc[e, "delta"] - by[pair[1]].loc[e, "delta"] for e in shared]
            longest = int(by[pair[0]]["reference_epochs"].iloc[0])
            lines = ", ".join(
                f"E={e}: {by[pair[0]].loc[e, 'delta']:.2f} vs {by[pair[1]].loc[e, 'delta']:.2f}" for e in shared
            )
            parts.append(f"{OPTIMIZERS.get(optim, optim)}, err(E) - err({longest}) of {pair[0]} vs {pair[1]}: {lines}")
        if parts:
            verdicts = [verdict(d, 2 * noise) for d in diffs]  # a difference of two single runs' deltas: 2σ
            return f"{convergence_verdict(verdicts, noise)} ({'; '.join(parts)}; {lengths(diffs, noise)})"
    return "not in the store: run `stability grid --figure 2` and `--figure 3`"


def summary_of(verdicts: list[str]) -> str:
    """One verdict of several: the same where all agree, else "mixed"."""
    heads = {v.split(" (")[0] for v in verdicts}
    return heads.pop() if len(heads) == 1 else "mixed"


def convergence_verdict(verdicts: list[str], noise: float) -> str:
    return summary_of(verdicts) + ("" if np.isfinite(noise) else ", seed noise not measured")


def lengths(diffs: list[float], noise: float) -> str:
    """How many of the shorter lengths favour ViT_C, in all and beyond twice the seed noise of a
    difference of two single runs' deltas (4σ, in points), where that noise was measured."""
    lower = f"ViT_C's delta is lower at {sum(d > 0 for d in diffs)} of {len(diffs)} lengths"
    if not np.isfinite(noise):
        return f"single runs; {lower}"
    return (
        f"single runs; {lower}; beyond 4σ = {4 * noise:.2f} points (σ {noise:.2f}, the largest seed noise of the "
        f"ViTs' sweeps) lower at {sum(d > 4 * noise for d in diffs)}, higher at {sum(d < -4 * noise for d in diffs)}"
    )


def optimizer_gap(s: Sweeps) -> str:
    """Claim 2: |best SGD - best AdamW| of ViT_P against ViT_C, with the seed noise of that difference."""
    if not (s.has("adamw") and s.has("sgd")):
        return "not in the store: run `stability grid --figure 4` and `--figure 5`"
    p, c = s.pair
    gap = {m: s.best[(m, "sgd")] - s.best[(m, "adamw")] for m in s.pair}
    sd = math.sqrt(sum(s.noise[(m, o)] ** 2 for m in s.pair for o in OPTIMIZERS))
    said = ", ".join(f"{m} {gap[m]:+.2f}" for m in s.pair)
    said += f" (seed noise of the difference {noise_text(sd)})"
    return f"{verdict(abs(gap[p]) - abs(gap[c]), sd)}: best SGD - best AdamW, {said}"


def steeper_edf(trials: pd.DataFrame, s: Sweeps, *, n_resamples: int, seed: int) -> str:
    """Claim 3: ViT_C's mean delta against ViT_P's over the same draws, with its interval, p-value,
    Holm family and seed-noise floor, per optimizer; "yes" at a Holm-adjusted p <= 0.05."""
    pairs = experiments.comparisons(trials, n_resamples=n_resamples, seed=seed)
    parts = []
    for optim, name in OPTIMIZERS.items():
        rows = [r for r in pairs.itertuples() if r.optimizer == optim and {r.model_a, r.model_b} == set(s.pair or ())]
        if not rows:
            parts.append(f"{name}: not in the store (`stability grid --figure {FIGURE_OF[optim]}`)")
            continue
        r = rows[0]
        sign = 1.0 if r.model_a == s.pair[1] else -1.0  # ViT_C minus ViT_P
        d, lo, hi = sign * r.effect_diff, *sorted((sign * r.effect_lo, sign * r.effect_hi))
        said = "yes" if r.p_holm <= 0.05 and d < 0 else "no, the reverse" if r.p_holm <= 0.05 else "not significant"
        floor = (
            f", seed-noise floor {r.noise_floor:.2f} ({r.noise_floor_lo:.2f}-{r.noise_floor_hi:.2f})"
            if np.isfinite(r.noise_floor)
            else ", seed-noise floor not measured"
        )
        family = r.holm_family.split(" of protocol")[0]
        parts.append(
            f"{name}: {said} (ViT_C - ViT_P mean Δ {d:+.2f} points, 95% CI [{lo:.2f}, {hi:.2f}], "
            f"p = {r.p_value:.3g}, Holm {r.p_holm:.3g} over {family}{floor})"
        )
    return "; ".join(parts)


def better_peak(s: Sweeps) -> str:
    """Claim 4: each ViT's best error per optimizer, with the seed noise of their difference."""
    parts, verdicts = [], []
    for optim, name in OPTIMIZERS.items():
        if not s.has(optim):
            continue
        p, c = (s.best[(m, optim)] for m in s.pair)
        sp, sc = (s.noise[(m, optim)] for m in s.pair)
        verdicts.append(verdict(p - c, math.hypot(sp, sc)))
        parts.append(f"{name} {c:.2f}% vs {p:.2f}% (seed noise σ {noise_text(sc)}, {noise_text(sp)})")
    if not parts:
        return "not in the store: run `stability grid --figure 4` and `--figure 5`"
    return f"{summary_of(verdicts)}: best error of ViT_C vs ViT_P, {'; '.join(parts)}"


def claims_table(trials: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per claim: the claim and what the store measures of it."""
    label = edf_protocol(trials)
    edf = experiments.of_protocol(trials, label) if label else trials.iloc[:0]
    s = Sweeps(edf)
    noise = max((v for (m, _), v in s.noise.items() if s.pair and m in s.pair and np.isfinite(v)), default=np.nan)
    rows = [
        ("ViT_C converges faster (Figures 2-3)", convergence(trials, noise)),
        ("smaller optimizer gap for ViT_C", optimizer_gap(s)),
        ("steeper lr/wd EDF for ViT_C (Figures 4-5)", steeper_edf(edf, s, n_resamples=n_resamples, seed=seed)),
        ("better peak for ViT_C", better_peak(s)),
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
        noise = (
            f"{r.noise_std:.2f} [{r.noise_std_lo:.2f}, {r.noise_std_hi:.2f}] ({int(r.seeds)})"
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
