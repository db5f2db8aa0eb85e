"""`stability report`: one self-contained HTML file of a results store, to share.

Everything a reader needs beside the EDFs, per sweep set: simultaneous bands and seed-noise
floors, error against each sampled dimension, expected-best curves (one estimator, named),
importances, comparisons (tests named, p-values Holm-adjusted within each named family: the
pairs of one protocol and optimizer), Figures 2-5 where the store holds their runs
(once per protocol), each sweep's protocol and its failed trials (left out, and counted), and
what the store still lacks with the command that fills it. A sweep has one colour in every
figure of the page (``figures.store_colors``). Figures are
embedded as base64 PNGs, so the file opens offline; it loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from analysis import budget, experiments, power, stats, transfer
from analysis import figures as figs
from analysis.figure_files import HOW_TO, figure_protocols, missing_parts
from analysis.importance import importance
from analysis.loading import UnreadableResultWarning, load_trials

# space: the sweep's dimensions, its own lr/wd intervals among them (not part of the protocol)
PROTOCOL_COLUMNS = ["sweep", "model", "optimizer", "preset", "dataset", "image_size", "patch_size", "epochs",
                    "batch_size", "seed", "sampler", "space"]  # fmt: skip
STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1,h2,h3{font-weight:600}table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
img{max-width:100%}.note{color:#555}li{margin:.2em 0}"""


def png(fig) -> str:
    """The figure as an <img> with its PNG inline."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, na_rep="")


def section(title: str, *parts: str, level: int = 2) -> str:
    return f"<h{level}>{html.escape(title)}</h{level}>\n" + "\n".join(parts)


def protocol_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per sweep: its protocol (label and fields), its trials and how many failed."""
    rows = experiments.with_protocol(trials)
    first = rows.drop_duplicates("sweep")[[c for c in PROTOCOL_COLUMNS if c in rows]].set_index("sweep")
    per_sweep = rows.groupby("sweep")
    first.insert(0, "protocol", per_sweep["protocol"].agg(lambda p: "/".join(sorted(set(p)))))
    first["trials"] = per_sweep.size()
    first["failed"] = per_sweep["status"].agg(lambda s: int((s == "failed").sum()))
    return first.reset_index()


def counted_sentence(n: int, failed: int) -> str:
    """How many trials a sweep's figures hold, and how many failed ones they leave out."""
    left_out = f"; {failed} failed trial(s) (infrastructure faults) left out" if failed else ""
    return f'<p class="note">{n} trials drawn (diverged ones count with error 100){left_out}.</p>'


def sweep_parts(sweep: str, g: pd.DataFrame, failed: int = 0) -> str:
    """One EDF sweep: its trial count, its dimensions figure and its hyperparameter importances."""
    try:
        names = list(figs.varied_dimensions({sweep: g})[0])  # a dimension fixed at one value explains nothing
        if not names:
            raise ValueError("no dimension took more than one value")
        scores = importance(g, params=names)
        ranked = ", ".join(f"{k} {v:.2f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1]))
        said = f"<p>Importance of each sampled hyperparameter (PED-ANOVA, sums to 1): {html.escape(ranked)}</p>"
    except Exception as e:  # too few trials for the evaluator: say so, draw the rest
        said = f'<p class="note">Importance not computed: {html.escape(str(e) or type(e).__name__)}</p>'
    return section(sweep, counted_sentence(len(g), failed), png(figs.figure_dimensions(g)), said, level=3)


def paper_figures(trials: pd.DataFrame, figure: str, n_resamples: int, colors: dict[str, tuple]) -> list[str]:
    """A paper figure where the store has runs of it (so drawing it shows data), once per protocol
    of its runs (grid runs for 2 and 3, the optimizer's EDF sweeps for 4 and 5), never one curve
    or panel of two; a protocol whose grid runs all failed says so."""
    held = figure_protocols(trials, figure)
    failed = experiments.failed_protocols(trials) if figure in ("2", "3") else {}
    parts = []
    for p in held:
        title = f"Figure {figure}" + (f" (protocol {p})" if len(held) > 1 else "")
        note = [f'<p class="note">All {failed[p]} runs of protocol {html.escape(p)} failed.</p>'] if p in failed else []
        fig = figs.FIGURES[figure](experiments.of_protocol(trials, p), n_resamples, colors)
        parts.append(section(title, *note, png(fig), level=3))
    return parts


def optimizer_parts(
    trials: pd.DataFrame, optim: str, n_resamples: int, colors: dict[str, tuple], replace: bool = False
) -> list[str]:
    """The EDF and expected-best figures of one optimizer's sweeps: once per protocol of them, so
    that sweeps of two protocols never share a panel (headed by the protocol where several)."""
    held = experiments.edf_protocols(trials, optim)
    parts = []
    for p in held:
        mine = experiments.of_protocol(trials, p)
        figures = [png(figs.figure_edfs(mine, optim, n_resamples=n_resamples, colors=colors)),
                   png(figs.figure_expected_best(mine, optim, colors=colors, replace=replace))]  # fmt: skip
        parts += [section(f"Protocol {p}", *figures, level=3)] if len(held) > 1 else figures
    return parts


def build(trials: pd.DataFrame, results: str, *, n_resamples: int = 1000, replace: bool = False) -> str:
    sets = experiments.edf_sets(trials)
    body = [
        f"<h1>Stability report: {html.escape(str(results))}</h1>",
        f'<p class="note">{len(trials)} trials in {trials["sweep"].nunique()} sweep(s); written '
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by <code>stability report</code>.</p>",
    ]
    body.append(
        section(
            "Protocol of each sweep",
            "<p>Runs compare only within one protocol (data, image and patch size, batch, preset, seed, "
            "recipe fields and search space beyond each model's lr/wd intervals); <code>failed</code>: "
            "trials that failed (infrastructure faults), left out of every figure and table below.</p>",
            table(protocol_table(trials)),
        )
    )
    failed = experiments.failed_counts(trials)
    colors = figs.store_colors(trials)
    summary = experiments.stability_table(trials, n_resamples=n_resamples)
    if not summary.empty:
        body.append(
            section(
                "Stability summary",
                "<p>Per EDF sweep: the share of trials within 1/2/4/8 points of the best, the median and mean "
                "delta, the area under the EDF up to 10 points, the mean of min(delta, 10) "
                "(<code>capped_mean_delta</code>), each with a 95% interval for its expected value "
                "at the sweep's size (the draws resampled, the best redrawn from the spread of the lowest trials; "
                "distances in the sweep's <code>metric</code>: points of top-1 error for the built-in trainer); "
                "<code>best_err</code>: the sweep's best value of its metric; "
                "<code>failed</code>: trials left out (infrastructure faults), <code>diverged</code>: trials counted "
                "at the metric's diverged value (error 100 for top-1 error); "
                "<code>seeds</code>, <code>noise_std</code> (with its 95% interval, <code>noise_std_lo</code>/"
                "<code>noise_std_hi</code>) and <code>noise_range</code>: the spread of the best (lr, wd) across "
                "seeds, where <code>stability noise</code> measured it; <code>lr_sensitivity</code> and "
                "<code>wd_sensitivity</code>: Wortsman et al.'s (2023) sensitivity, the mean over the values of "
                "lr (or wd) of the best outcome there, capped at the outcome at initialisation (chance error), "
                "minus the sweep's best, over a grid's values or <code>*_points</code> equal-width bins of log lr "
                "(or log wd) across the sampled interval.</p>",
                table(summary),
                *grid_sensitivity(trials),
            )
        )
    for optim in figs.optimizer_order({v["optimizer"].iloc[0] for v in sets.values()}):
        mine = {k: v for k, v in sets.items() if v["optimizer"].iloc[0] == optim}
        name = figs.optim_name(optim)
        parts = [
            "<p>EDFs of Δ top-1 error (another metric: the distance to the best in its direction) with 95% "
            "simultaneous bands (the whole expected EDF lies inside its band; dotted: seed-noise floors), then "
            f"the expected best of k random trials, drawn {stats.estimator_name(replace)}, with one standard "
            "deviation.</p>",
            *optimizer_parts(trials, optim, n_resamples, colors, replace),
        ]
        parts += [sweep_parts(sweep, g, failed.get(sweep, 0)) for sweep, g in sorted(mine.items())]
        body.append(section(f"{name} sweeps", *parts))
    pairs = experiments.comparisons(trials, n_resamples=n_resamples)
    if not pairs.empty:
        words = "".join(f"<li>{html.escape(s)}</li>" for s in pairs["in_words"])
        shown = pairs.drop(columns=["in_words"])
        tests = ", ".join(sorted(set(pairs["test"])))
        families = "; ".join(sorted(set(pairs["holm_family"])))
        said = (
            f"<p>Pairs of sweeps of one protocol and optimizer. Tests: {html.escape(tests)}. Each tests equal "
            "stability whatever the two sweeps' levels (no expected difference of mean deltas), and its p-value "
            "and the 95% interval of each sentence are read off one resampling, so they agree. "
            "<code>p_holm</code>: Holm-adjusted within each family of pairs drawn together in one figure "
            f"(<code>holm_family</code>: {html.escape(families)}). The seed-noise floor is the spread of the "
            "compared difference when every trial is re-run under the measured seed noise (with its 95% interval "
            "and the seeds behind it); the noise is measured at each sweep's best only, so the floor assumes the "
            "same noise at every draw.</p>"
        )
        body.append(section("Comparisons (same optimizer and protocol)", said, f"<ul>{words}</ul>", table(shown),
                            *power_parts(pairs, sets)))  # fmt: skip
    body += budget_parts(trials, n_resamples)
    moves = transfer.transfer_table(trials)
    if not moves.empty:
        body.append(section("Transfer", "<p>Tuning on sweep <code>a</code> and training <code>b</code> (one model at "
                            "two lengths, or one family at two sizes): the optimum's shift in log2 lr and wd, the "
                            "rank correlation over the draws both tried, and the regret of b at a's optimum (the "
                            "same draw, or b's nearest trial), in b's metric.</p>", table(moves)))  # fmt: skip
    paper, lacking = [], []
    for f in ("2", "3", "4", "5"):
        gaps = missing_parts(trials, f)
        if gaps:
            lacking.append(f"<li>Figure {f}: no {html.escape(', '.join(gaps))}; to fill it: "
                           f"<code>{html.escape(HOW_TO[f])}</code></li>")  # fmt: skip
        paper += paper_figures(trials, f, n_resamples, colors)
    if paper:
        body.append(section("The paper's figures", *paper))
    if lacking:
        body.append(section("What the store still lacks", f"<ul>{''.join(lacking)}</ul>"))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Stability report</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def grid_sensitivity(trials: pd.DataFrame) -> list[str]:
    """The ``--sampler grid`` sweeps' exact lr and wd sensitivity, where the store holds some."""
    found = experiments.sensitivity_table(trials)
    if found.empty:
        return []
    return ["<p>Grid sweeps (<code>--sampler grid</code>): the same sensitivities, exact over the grid's values.</p>",
            table(found)]  # fmt: skip


def power_parts(pairs: pd.DataFrame, sets: dict[str, pd.DataFrame]) -> list[str]:
    """Beside the comparisons, per family of pairs: the difference in mean delta that N trials per
    sweep would detect with 80% power, simulated from the family's sweeps pooled (``analysis.power``)."""
    parts = [
        "<p>How many trials: the smallest difference in mean delta (the tested summary, in the metric's points) "
        "that the comparison test detects with 80% power at alpha 0.05, for N trials per sweep, simulated from "
        "the family's sweeps as a pilot (paired where its comparisons are: their pairs of distances to their bests "
        "pooled; else the distances pooled; 100 simulated comparisons of 100 resamples per step: "
        "<code>stability power</code> simulates more).</p>"
    ]
    for family, group in pairs.groupby("holm_family", sort=True):
        found = power.table_of(power.family_pilot(sets, group), sims=100, n_resamples=100)
        parts += [f"<h3>{html.escape(str(family))}</h3>", table(found)]
    return parts


def budget_parts(trials: pd.DataFrame, n_resamples: int) -> list[str]:
    """The "Budgets" section: trials to target per sweep, the performance profile over them where
    a study compares methods across workloads, and each method's odds of being best at budget k."""
    k_table = budget.budget_table(trials)
    if k_table.empty:
        return []
    wide = k_table.pivot_table(index=["sweep", "trials"], columns="delta", values="k_star", sort=False).reset_index()
    parts = [
        "<p>Trials to target k*(δ): the smallest number of random trials whose expected best (drawn without "
        "replacement) is within δ of the sweep's best; sweeps of one protocol counted on the draws they share "
        "(their first <code>trials</code>).</p>",
        table(wide),
    ]
    fig = figs.figure_profile(k_table)
    if fig is not None:
        parts += [
            "<p>Performance profiles over k* (Dolan and Moré 2002): for each method, the share of workloads where "
            "its k* is within τ times the best method's; the area under the profile, normalised to 1, in the "
            "legend and the table.</p>",
            png(fig),
            table(budget.profile_areas(k_table)),
        ]
    odds = budget.probability_table(trials, n_resamples=min(n_resamples, 200))
    if not odds.empty:
        parts += [
            "<p>Probability of being best at budget k (Sivaprasad et al. 2020): the share of bootstrap "
            "resamples of each sweep's trials in which a method's expected best of k is the lowest, per "
            "workload.</p>",
            table(odds.pivot_table(index=["workload", "k"], columns="method", values="probability").reset_index()),
        ]
    return [section("Budgets", *parts)]


def write_report(
    results: str | os.PathLike,
    out: str | os.PathLike,
    *,
    n_resamples: int = 1000,
    replace: bool = False,
    first: int | None = None,
) -> Path | None:
    """Write the report; None when the store holds no trial. ``replace``: expected-best curves drawn
    with replacement (Dodge et al. 2019) instead of without (unbiased); ``first``: each sweep's
    first K trials only (``load_trials``), said at the top."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableResultWarning)  # `stability status` names them
        trials = load_trials(results, first=first)
    if trials.empty:
        return None
    where = str(results) if first is None else f"{results}, each sweep's first {first} trials"
    text = build(trials, where, n_resamples=n_resamples, replace=replace)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
