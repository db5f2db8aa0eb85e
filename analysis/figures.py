"""Figures 2-5 of the paper in one visual language.

One colour per family (ViT_P, ViT_C, RegNetY) in Figures 2 and 3; in every per-sweep panel one
colour per sweep, the same in every figure of a store (``store_colors``: the family's where the
model is the only one of its family in the store's EDF sweeps); AdamW up-triangles, SGD
down-triangles; carried-forward points of diverged long runs dashed; EDF 95% simultaneous bands
shaded. Runs of two protocols are never joined into one curve, and every figure that leaves
failed trials out says how many. Every function takes the trials table and returns a
matplotlib Figure (drawing what the table holds); ``save`` writes it as PNG, PDF or SVG.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.patches import Patch

from analysis import budget, experiments, sensitivity, stats
from store import schema

COLORS = dict(zip(experiments.FAMILIES, sns.color_palette("colorblind", 3), strict=True))
# The paper's optimizers keep its up/down triangles; any other takes the next free marker of
# OTHER_MARKERS, by name order among the optimizers drawn (``optim_markers``).
MARKERS = {"adamw": "^", "sgd": "v"}
OTHER_MARKERS = ("o", "s", "D", "P", "X", "*", "h", "p")
OPTIM_NAMES = {
    "adamw": "AdamW",
    "sgd": "SGD",
    "muon": "Muon",
    "lion": "Lion",
    "schedulefree_adamw": "Schedule-Free AdamW",
}


def optim_name(optim: str) -> str:
    """An optimizer's name in titles and legends (a registered name where it has no display name)."""
    return OPTIM_NAMES.get(optim, optim)


def optimizer_order(optims) -> list[str]:
    """The paper's AdamW and SGD first, then any other optimizer by name."""
    return [o for o in MARKERS if o in set(optims)] + sorted(set(optims) - set(MARKERS))


def optim_markers(optims) -> dict[str, str]:
    """A distinct marker per optimizer: the paper's triangles for AdamW and SGD, then the others'."""
    others = sorted(set(optims) - set(MARKERS))
    return {**MARKERS, **{o: OTHER_MARKERS[i % len(OTHER_MARKERS)] for i, o in enumerate(others)}}


COLUMN_WIDTH = 6.75  # inches: a two-column paper's full text width
BAND_LABEL = "95% simultaneous band"
EDF_MAX = 20.0  # the paper's EDF axis (points of top-1 error above a sweep's best)
STYLE = {"font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7, "lines.linewidth": 1.4}


def _axes(ncols: int, nrows: int = 1, height: float = 2.1, width: float = COLUMN_WIDTH):
    return plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False)


def _two_rows(top: int, bottom: int, height: float):
    """A figure of ``top`` equal panels over ``bottom`` equal panels, each row the full width
    (Figures 4 and 5: three hyperparameter panels over one EDF panel per model size)."""
    fig = plt.figure(figsize=(COLUMN_WIDTH, 2 * height))
    grid = fig.add_gridspec(2, top * bottom)
    upper = [fig.add_subplot(grid[0, i * bottom : (i + 1) * bottom]) for i in range(top)]
    lower = [fig.add_subplot(grid[1, j * top : (j + 1) * top]) for j in range(bottom)]
    return fig, upper, lower


def edf_range(sets: dict[str, pd.DataFrame]) -> np.ndarray:
    """The EDF panels' x grid: the paper's 0-20 points where some delta reaches 20, else up to the
    largest delta (rounded up to a whole point), so that no panel is mostly empty axis. Another
    metric than top-1 error has no paper axis: up to its largest finite distance to the best."""
    scores = (experiments.scored(g)["metric_score"] for g in sets.values() if len(g))  # sets of any caller
    finite = [d[np.isfinite(d)] for d in map(stats.deltas, scores)]
    largest = max((float(d.max()) for d in finite if d.size), default=EDF_MAX)
    if not _top1(sets):
        return np.linspace(0.0, largest * 1.05 if largest > 0 else 1.0, 201)
    top = min(EDF_MAX, max(1.0, math.ceil(largest + 0.5)))
    return np.linspace(0.0, top, 201)


def sets_metric(sets: dict[str, pd.DataFrame]) -> schema.Metric:
    """The one metric of the sets drawn in a panel (a protocol has one; ``schema.metric_of_frame``)."""
    return schema.metric_of_frame(pd.concat(list(sets.values()))) if sets else schema.TOP1_ERR


def _top1(sets: dict[str, pd.DataFrame]) -> bool:
    return sets_metric(sets) == schema.TOP1_ERR


def delta_label(metric: schema.Metric) -> str:
    """The EDF axis: the distance of a trial to its sweep's best, in the metric's direction."""
    return "Δ top-1 error (points)" if metric == schema.TOP1_ERR else f"distance to the best {metric.name}"


def edf_title(metric: schema.Metric) -> str:
    return "EDF of Δ top-1 error" if metric == schema.TOP1_ERR else f"EDF of the distance to the best {metric.name}"


def _log_axis(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def _empty(ax, what: str) -> None:
    ax.text(
        0.5, 0.5, f"no {what}\nin this store", ha="center", va="center", transform=ax.transAxes, fontsize=7, color="0.4"
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _shared_legend(fig, axes) -> None:
    """One legend for the whole figure, below its panels, so that no panel's data is covered."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        ncol = 6 if max(map(len, entries)) <= 24 else 2  # long labels (protocols named) take two columns
        rows = -(-len(entries) // ncol)
        fig.set_figheight(fig.get_figheight() + 0.2 * (rows - 1))  # the panels keep their height
        bottom = (0.1 + 0.2 * rows) / fig.get_figheight()  # inches kept free for the legend
        fig.tight_layout(rect=(0, bottom, 1, 1))
        fig.legend(
            list(entries.values()),
            list(entries),
            loc="lower center",
            ncol=min(len(entries), ncol),
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )


def _series(ax, g: pd.DataFrame, y: str, color, marker: str, label: str) -> None:
    """One line over epochs; a segment ending at a carried-forward point is dashed."""
    g = g.sort_values("epochs")
    xs, ys, carried = g["epochs"].to_numpy(), g[y].to_numpy(), g["carried"].to_numpy()
    for i in range(1, len(xs)):
        ax.plot(xs[i - 1 : i + 1], ys[i - 1 : i + 1], color=color, linestyle="--" if carried[i] else "-")
    ax.plot(xs[~carried], ys[~carried], linestyle="none", marker=marker, color=color, label=label, markersize=5)
    if carried.any():
        ax.plot(
            xs[carried],
            ys[carried],
            linestyle="none",
            marker=marker,
            markerfacecolor="white",
            color=color,
            markersize=5,
        )


def _epoch_axis(ax, epochs) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(e) for e in epochs))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()


def _epoch_panels(frame: pd.DataFrame, y: str, what: str, ylabel, note: str) -> plt.Figure:
    """One panel per model size, one series per (protocol, family, optimizer) over schedule length:
    two protocols' runs are never joined into one curve (the legend names the protocol where a
    frame holds several; ``of_protocol`` draws one). ``note`` goes above the panels."""
    panels = experiments.panel_sizes(set(frame["size"]) if not frame.empty else set())
    fig, axes = _axes(len(panels), width=COLUMN_WIDTH * max(len(panels), 2) / 3)
    several = frame["protocol"].nunique() > 1 if not frame.empty else False
    markers = optim_markers(frame["optimizer"] if not frame.empty else [])
    for ax, size in zip(axes[0], panels, strict=True):
        g = frame[frame["size"] == size] if not frame.empty else frame
        ax.set_title(size)
        if g.empty:
            _empty(ax, what)
            continue
        for (protocol, family, optim), s in g.groupby(["protocol", "family", "optimizer"]):
            label = f"{family} {optim_name(optim)}" + (f" [{protocol}]" if several else "")
            _series(ax, s, y, COLORS.get(family), markers[optim], label)
        _epoch_axis(ax, g["epochs"])
        ax.set_xlabel("epochs")
        ax.set_ylabel(ylabel(g))
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    _shared_legend(fig, axes[0])
    return fig


def grid_note(trials: pd.DataFrame, frame: pd.DataFrame) -> str:
    """Above Figures 2 and 3: the protocol drawn, and how many failed grid runs are left out."""
    protocols = sorted(set(frame["protocol"])) if not frame.empty else []
    parts = [f"protocol {protocols[0]}"] if len(protocols) == 1 and protocols[0] != "unspecified" else []
    failed = len(experiments.failed_grid_runs(trials))
    if failed:
        parts.append(f"{failed} failed run{'s' if failed > 1 else ''} left out")
    return "; ".join(parts)


@plt.rc_context(STYLE)
def figure2(trials: pd.DataFrame):
    """Training-length deltas err(E) - err(longest) vs E, per model size (Figure 2)."""
    frame = experiments.training_length_deltas(trials)

    def ylabel(g: pd.DataFrame) -> str:
        longest = set(g["reference_epochs"])
        return f"err(E) - err({int(longest.pop())})" if len(longest) == 1 else "err(E) - err(longest E)"

    fig = _epoch_panels(frame, "delta", "training-length runs", ylabel, grid_note(trials, frame))
    for ax in fig.get_axes():
        if ax.get_lines():
            ax.axhline(0, color="0.7", linewidth=0.8)
    return fig


@plt.rc_context(STYLE)
def figure3(trials: pd.DataFrame):
    """Top-1 error vs epochs, AdamW and SGD, per model size (Figure 3)."""
    frame = experiments.error_vs_epochs(trials)
    return _epoch_panels(frame, "top1_err", "optimizer runs", lambda g: "top-1 error (%)", grid_note(trials, frame))


def edf_note(sets: dict[str, pd.DataFrame]) -> str:
    """Above Figures 4 and 5: the protocol drawn (``stability figures`` draws one figure per
    protocol; a frame of several says how many it overlays)."""
    labels = sorted(set().union(*(set(schema.protocol_labels(g)) for g in sets.values()))) if sets else []
    if len(labels) > 1:
        return f"sweeps of {len(labels)} protocols overlaid"
    return f"protocol {labels[0]}" if labels and labels[0] != "unspecified" else ""


@plt.rc_context(STYLE)
def figure_edf(trials: pd.DataFrame, optim: str, *, n_resamples: int = 1000, colors: dict[str, tuple] | None = None):
    """Figures 4 (AdamW) and 5 (SGD): error vs lr, wd and lr*wd for the 4GF models with a bar at
    each model's best trial; below, EDFs of delta error per model size with 95% simultaneous bands
    (and each sweep's seed-noise floor where measured). ``colors``: the store's (``store_colors``),
    for a frame that holds part of it (one protocol), so that a sweep keeps its colour."""
    floors = experiments.noise_floors(trials).set_index("sweep")["noise_std"].to_dict()
    every = experiments.top1_sets(trials)
    sets = {k: v for k, v in every.items() if v["optimizer"].iloc[0] == optim}
    size_of = {k: experiments.SIZE_OF.get(v["model"].iloc[0]) for k, v in sets.items()}
    colors = colors or store_colors(trials)
    failed = experiments.failed_counts(trials)
    panels = experiments.panel_sizes({experiments.SIZE_OF.get(v["model"].iloc[0]) for v in every.values()})
    fig, upper, lower = _two_rows(3, len(panels), height=2.2)
    # the 4GF models, as in the paper; a store without them shows its smallest size instead
    sizes = [z for z in panels if z in size_of.values()]
    shown = "4GF" if "4GF" in sizes or not sizes else sizes[0]
    four = {k: v for k, v in sets.items() if size_of[k] == shown}
    grid = np.linspace(0.0, EDF_MAX, 201)  # the paper's axis, so that Figures 4 and 5 compare
    for ax, (name, values) in zip(upper, LR_WD, strict=True):
        ax.set_title(f"{shown} models: error vs {name}")
        if not four:
            _empty(ax, f"{shown} {optim_name(optim)} sweeps")
            continue
        _optimum_scatter(ax, four, values, colors, optim_markers([optim])[optim])
        ax.set_xlabel(name)
        ax.set_ylabel(sets_metric(four).label)
    for ax, size in zip(lower, panels, strict=True):
        ax.set_title(f"{size}: {edf_title(sets_metric(sets))}")
        chosen = {k: v for k, v in sets.items() if size_of[k] == size}
        if not chosen:
            _empty(ax, f"{size} {optim_name(optim)} sweeps")
            continue
        _edf_curves(ax, chosen, floors, n_resamples, colors, failed, grid)
    note = edf_note(sets)
    if note:
        fig.suptitle(note, fontsize=8)
    fig.tight_layout()
    _shared_legend(fig, upper)
    return fig


LR_WD = [("lr", lambda g: g["lr"]), ("wd", lambda g: g["wd"]), ("lr·wd", lambda g: g["lr"] * g["wd"])]


def _optimum_scatter(ax, sets: dict[str, pd.DataFrame], values, colors: dict[str, tuple], marker: str) -> None:
    """Each sweep's error against one hyperparameter, with a bar at its best trial, on a log axis."""
    for sweep, g in sorted(sets.items()):
        color, v = colors[sweep], values(g)
        ax.scatter(v, g["metric_value"], s=9, color=color, marker=marker, label=_set_label(sweep, g, sets), alpha=0.8)
        ax.axvline(v.loc[g["metric_score"].idxmin()], color=color, linewidth=1.0, alpha=0.8)
    _log_axis(ax)


def _set_label(sweep: str, g: pd.DataFrame, sets: dict[str, pd.DataFrame]) -> str:
    """The model's name, or the sweep's where two sets of one model share the panel."""
    model = g["model"].iloc[0]
    return model if sum(v["model"].iloc[0] == model for v in sets.values()) == 1 else sweep


def _counted_label(sweep: str, g: pd.DataFrame, sets: dict[str, pd.DataFrame], failed: dict[str, int]) -> str:
    """A sweep's legend entry with its trial count and the failed trials left out, if any."""
    return f"{_set_label(sweep, g, sets)} ({experiments.counted(len(g), failed.get(sweep, 0))})"


def sweep_colors(sets: dict[str, pd.DataFrame]) -> dict[str, tuple]:
    """One colour per sweep of a store's EDF sets (``experiments.edf_sets`` of the whole store), a
    function of those sets alone, so that every figure and panel of the store gives a sweep the
    same colour whichever part of the store it draws (one optimizer, one protocol, one size).

    One model's sweeps of different optimizers share a colour (a model that has two sweeps of one
    optimizer gives each its own). A model gets its family's colour where it is the only model of
    its family among the sets (so no panel of any figure can hold a rival of that colour), else
    the next of a palette unlike the families' three, in sorted order; all are distinct."""
    keys = {sweep: _colour_key(sweep, g, sets) for sweep, g in sorted(sets.items())}
    family_of = {keys[sweep]: str(g["family"].iloc[0]) for sweep, g in sets.items()}
    families = Counter(family_of.values())
    own = {k for k, f in family_of.items() if families[f] == 1 and f in COLORS}
    spare = iter(_palette(len(family_of) - len(own)))
    by_key = {k: COLORS[family_of[k]] if k in own else next(spare) for k in sorted(family_of)}
    return {sweep: by_key[k] for sweep, k in keys.items()}


def _colour_key(sweep: str, g: pd.DataFrame, sets: dict[str, pd.DataFrame]) -> tuple[str, str]:
    """What shares a colour: the model, where it has one sweep of this sweep's optimizer; else the sweep."""
    optim, model = g["optimizer"].iloc[0], g["model"].iloc[0]
    mine = [v for v in sets.values() if v["optimizer"].iloc[0] == optim and v["model"].iloc[0] == model]
    return ("model", model) if len(mine) == 1 else ("sweep", sweep)


def _palette(n: int) -> list[tuple]:
    """n distinct colours unlike the families' three: colorblind ones first, then evenly spaced hues."""
    colorblind = sns.color_palette("colorblind", 10)
    first = [colorblind[i] for i in (4, 9, 5, 7, 3, 8, 6)]
    return (first + list(sns.color_palette("husl", max(0, n - len(first)))))[:n]


def store_colors(trials: pd.DataFrame) -> dict[str, tuple]:
    """The one sweep -> colour mapping of a trials table (``sweep_colors`` of all its EDF sets):
    what every per-sweep figure of a store uses, also one drawn on a part of the store."""
    return sweep_colors(experiments.edf_sets(trials))


def _edf_curves(
    ax,
    sets: dict[str, pd.DataFrame],
    floors: dict[str, float],
    n_resamples: int,
    colors: dict | None = None,
    failed: dict[str, int] | None = None,
    grid: np.ndarray | None = None,
) -> None:
    """EDFs of delta error with 95% simultaneous bands on ``grid`` (``stats.edf_band``: the whole
    expected EDF lies inside its band, so two bands that do not overlap anywhere differ; default
    grid: ``edf_range`` of ``sets``; panels compared side by side pass one grid); a sweep's
    seed-noise floor (the standard deviation of its best (lr, wd) across seeds) as a dotted line of
    its colour. The legend gives each sweep's n and the failed trials its EDF leaves out, and
    names the band."""
    colors = colors or sweep_colors(sets)
    grid = edf_range(sets) if grid is None else grid
    for sweep, g in sorted(sets.items()):
        color = colors[sweep]
        lo, hi = stats.edf_band(g["metric_score"], grid, n_resamples=n_resamples)
        ax.fill_between(grid, lo, hi, color=color, alpha=0.2, step="post", linewidth=0)
        ax.step(
            grid,
            stats.edf_at(g["metric_score"], grid),
            where="post",
            color=color,
            label=_counted_label(sweep, g, sets, failed or {}),
        )
        if np.isfinite(floors.get(sweep, np.nan)):
            ax.axvline(floors[sweep], color=color, linestyle=":", linewidth=1.0)
    ax.set_xlim(0, grid[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel(delta_label(sets_metric(sets)))
    ax.set_ylabel("cumulative fraction")
    handles, _ = ax.get_legend_handles_labels()
    band = Patch(facecolor="0.5", alpha=0.2, linewidth=0, label=BAND_LABEL)
    ax.legend(handles=[*handles, band], frameon=False, loc="lower right")


def _optimizer_sets(trials: pd.DataFrame, optim: str) -> dict[str, pd.DataFrame]:
    """One optimizer's EDF sets."""
    return {k: v for k, v in experiments.edf_sets(trials).items() if v["optimizer"].iloc[0] == optim}


@plt.rc_context(STYLE)
def figure_edfs(trials: pd.DataFrame, optim: str, *, n_resamples: int = 1000, colors: dict[str, tuple] | None = None):
    """Every EDF sweep of one optimizer in one panel, for any store (no paper layout): how much
    of each sweep's space lands near its best. Dotted lines: seed-noise floors. ``colors``: as
    in ``figure_edf``."""
    sets, colors = _optimizer_sets(trials, optim), colors or store_colors(trials)
    floors = experiments.noise_floors(trials).set_index("sweep")["noise_std"].to_dict()
    fig, axes = _axes(1, height=3.0)
    ax = axes[0][0]
    ax.set_title(f"{optim_name(optim)}: {edf_title(sets_metric(sets))} per sweep")
    if sets:
        _edf_curves(ax, sets, floors, n_resamples, colors, experiments.failed_counts(trials))
    else:
        _empty(ax, f"{optim_name(optim)} sweeps")
    fig.tight_layout()
    return fig


@plt.rc_context(STYLE)
def figure_expected_best(
    trials: pd.DataFrame, optim: str, *, colors: dict[str, tuple] | None = None, replace: bool = False
):
    """Expected best error of k random trials against k, per sweep of one optimizer, with one
    standard deviation shaded: how many trials a model needs. One estimator for every curve
    (``stats.expected_best``): without replacement (unbiased) unless ``replace``; the axis says
    which. ``colors``: as in ``figure_edf``."""
    sets, colors = _optimizer_sets(trials, optim), colors or store_colors(trials)
    failed = experiments.failed_counts(trials)
    fig, axes = _axes(1, height=3.0)
    ax = axes[0][0]
    metric = sets_metric(sets)
    best = "top-1 error" if metric == schema.TOP1_ERR else metric.name
    ax.set_title(f"{optim_name(optim)}: expected best {best} of k random trials")
    if not sets:
        _empty(ax, f"{optim_name(optim)} sweeps")
    for sweep, g in sorted(sets.items()):
        # where diverged trials count as infinite, the best of k is infinite for small k (and for
        # every k with replacement): only its finite points are drawn
        curve = stats.expected_best(g["metric_score"], range(1, len(g) + 1), replace=replace)
        curve = curve[np.isfinite(curve["mean"])]
        mean, color = metric.sign * curve["mean"], colors[sweep]  # back in the metric's own direction
        ax.plot(curve["k"], mean, color=color, label=_counted_label(sweep, g, sets, failed))
        ax.fill_between(curve["k"], mean - curve["std"], mean + curve["std"], color=color, alpha=0.2)
    if sets:
        _log_axis(ax)
        ax.set_xlabel(f"trials k, drawn {stats.estimator_name(replace)}")
        ax.set_ylabel(f"expected best {metric.label}")
        ax.legend(frameon=False, loc="upper right")
    fig.tight_layout()
    return fig


def _dimension_values(g: pd.DataFrame, name: str, kind: str) -> pd.Series:
    """A sampled dimension's values on an axis: categories for a choice, numbers otherwise."""
    return g[name].astype(str) if kind == "choice" else g[name].astype(float)


@plt.rc_context(STYLE)
def figure_dimensions(g: pd.DataFrame):
    """One sweep: its metric against every sampled dimension (log axis where sampled log), with
    a bar at the best trial; diverged trials at the metric's diverged value (100 for top-1 error)."""
    from analysis.importance import sweep_space

    g = experiments.scored(g)
    metric = schema.metric_of_frame(g)
    varied, fixed = varied_dimensions({g["sweep"].iloc[0]: g})
    space = {name: dim for name, dim in sweep_space(g).items() if name in varied}
    fig, axes = _axes(max(1, len(space)), height=2.2, width=max(COLUMN_WIDTH, DIMENSION_PANEL_WIDTH * len(space)))
    color = COLORS.get(g["family"].iloc[0])
    best = g.loc[g["metric_score"].idxmin()]
    if not space:
        _empty(axes[0][0], "dimension sampled at more than one value")
    for ax, (name, dim) in zip(axes[0], space.items(), strict=False):
        ax.scatter(
            _dimension_values(g, name, dim[0]),
            g["metric_value"],
            s=9,
            color=color,
            marker=optim_markers([best["optimizer"]])[best["optimizer"]],
            alpha=0.8,
        )
        if dim[0] != "choice":
            ax.axvline(float(best[name]), color=color, linewidth=1.0)
        if dim[0] == "log":
            _log_axis(ax)
        ax.set_xlabel(name)
        ax.set_ylabel(metric.label)
    what = "error" if metric == schema.TOP1_ERR else metric.name
    fig.suptitle(f"{g['sweep'].iloc[0]}: {what} against each sampled dimension", fontsize=9)
    fig.tight_layout()
    if fixed:
        fig.text(0.01, 0.0, fixed_note(fixed), fontsize=7, color="0.3", va="top")
    return fig


def varied_dimensions(sets: dict[str, pd.DataFrame]) -> tuple[dict[str, str], dict[str, list]]:
    """The sampled dimensions of ``sets`` (name -> kind) that take more than one value among
    their trials, and those fixed at one (name -> the value(s) each sweep fixed them at): a
    fixed dimension says nothing about stability and gets no panel, only a line."""
    from analysis.importance import sweep_space

    kinds: dict[str, str] = {}
    for g in sets.values():
        for name, dim in sweep_space(g).items():
            kinds.setdefault(name, dim[0])
    varied, fixed = {}, {}
    for name, kind in kinds.items():
        values = pd.concat([g[name] for g in sets.values() if name in g] or [pd.Series(dtype=object)]).dropna()
        if values.astype(str).nunique() > 1:
            varied[name] = kind
        else:
            fixed[name] = sorted(set(values.astype(str)))
    return varied, fixed


def fixed_note(fixed: dict[str, list]) -> str:
    return "fixed: " + ", ".join(f"{k} = {' | '.join(v) or '-'}" for k, v in fixed.items()) if fixed else ""


EDF_PANEL_WIDTH, DIMENSION_PANEL_WIDTH = 3.4, 2.0  # inches: the EDF keeps its size with any number of dimensions


@plt.rc_context(STYLE)
def figure_comparison(trials: pd.DataFrame, *, n_resamples: int = 1000, colors: dict[str, tuple] | None = None):
    """Any store's EDF sweeps compared, no paper layout: a row per optimizer (and metric, where the
    store's sweeps measure several) with the EDFs of the distance to each sweep's best (simultaneous
    bands, one x range for the rows of a metric), then the metric against
    every dimension the sweeps vary, all sweeps of the row overlaid in their colours (log axis
    where the space samples log). Dimensions sampled at one value are named in a line below.
    ``colors``: as in ``figure_edf``."""
    sets = experiments.edf_sets(trials)
    rows = comparison_rows(sets)
    kinds, fixed = varied_dimensions(sets)
    colors = colors or store_colors(trials)
    failed = experiments.failed_counts(trials)
    floors = experiments.noise_floors(trials).set_index("sweep")["noise_std"].to_dict()
    widths = [EDF_PANEL_WIDTH] + [DIMENSION_PANEL_WIDTH] * len(kinds)
    fig, axes = plt.subplots(
        len(rows),
        len(widths),
        figsize=(sum(widths), 2.4 * len(rows)),
        squeeze=False,
        gridspec_kw={"width_ratios": widths},
    )
    grids = {m: edf_range({k: v for k, v in sets.items() if sets_metric({k: v}) == m}) for m, _ in rows}
    for row, (metric, optim) in zip(axes, rows, strict=True):
        chosen = {k: v for k, v in sets.items() if v["optimizer"].iloc[0] == optim and sets_metric({k: v}) == metric}
        grid = grids[metric]
        row[0].set_title(f"{optim_name(optim)}: {edf_title(metric)}")
        if not chosen:
            _empty(row[0], "EDF sweeps")
            continue
        _edf_curves(row[0], chosen, floors, n_resamples, colors, failed, grid)
        row[0].get_legend().remove()
        for ax, (name, kind) in zip(row[1:], kinds.items(), strict=True):
            for sweep, g in sorted(chosen.items()):
                if name in g and g[name].notna().any():
                    ax.scatter(_dimension_values(g, name, kind), g["metric_value"], s=9, color=colors[sweep], alpha=0.8)
            if kind == "log":
                _log_axis(ax)
            ax.set_xlabel(name)
            ax.set_ylabel(metric.label)
            if name in sensitivity.HYPERPARAMETERS:
                _sensitivity_notes(ax, chosen, name, colors)
    fig.tight_layout()
    if fixed:
        fig.text(0.01, 0.0, fixed_note(fixed), fontsize=7, color="0.3", va="top")
    _sweep_legend(fig, axes)
    return fig


def _sensitivity_notes(ax, chosen: dict[str, pd.DataFrame], name: str, colors: dict[str, tuple]) -> None:
    """Each sweep's sensitivity to the panel's lr or wd (``analysis.sensitivity``), in its colour,
    in the panel's corner: how much worse than its best a sweep is on average across the values."""
    found = [(sweep, sensitivity.sweep_sensitivity(g, name)[0]) for sweep, g in sorted(chosen.items())]
    for i, (sweep, value) in enumerate((sweep, v) for sweep, v in found if np.isfinite(v)):
        ax.text(0.98, 0.97 - 0.09 * i, f"{name} sensitivity {value:.2f}", transform=ax.transAxes, ha="right",
                va="top", fontsize=6, color=colors[sweep])  # fmt: skip


def figure_profile(table: pd.DataFrame):
    """Performance profiles over trials to target (``budget.performance_profile``), one panel per
    δ: for each method the share of workloads where its k* is within τ times the best method's,
    as a step line from τ = 1 to the largest ratio, its normalised area in the legend. None where
    no axis is compared."""
    deltas = [d for d in dict.fromkeys(table["delta"]) if not budget.performance_profile(table, d).empty]
    if not deltas:
        return None
    fig, axes = plt.subplots(1, len(deltas), figsize=(3.4 * len(deltas), 2.8), squeeze=False)
    for ax, delta in zip(axes[0], deltas, strict=True):
        profile = budget.performance_profile(table, delta)
        top = max(2.0, float(profile["tau"].max()))
        for method, p in profile.groupby("method"):
            taus, rhos = [1.0, *p["tau"], top], [0.0, *p["rho"], p["rho"].iloc[-1]]
            label = f"{optim_name(method)} (area {p['area'].iloc[0]:.2f})"
            ax.step(taus, rhos, where="post", label=label)
        ax.set_xlim(1, top)  # linear in tau, as the area is measured
        ax.set_ylim(0, 1.02)
        ax.set_title(f"within {delta} of the best", fontsize=9)
        ax.set_xlabel("τ (k* over the best method's k*)")
        ax.set_ylabel("share of workloads")
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    fig.tight_layout()
    return fig


def comparison_rows(sets: dict[str, pd.DataFrame]) -> list[tuple[schema.Metric, str]]:
    """The comparison figure's rows: one per (metric, optimizer) of the sets, top-1 error first and
    then by the metric's name, each metric's optimizers AdamW and SGD first (a row never holds two
    metrics: their distances do not compare)."""
    pairs = {(schema.metric_of_frame(g), g["optimizer"].iloc[0]) for g in sets.values()}
    metrics = sorted({m for m, _ in pairs}, key=lambda m: (m != schema.TOP1_ERR, m.name))
    rows = [(m, o) for m in metrics for o in optimizer_order({o for n, o in pairs if n == m})]
    return rows or [(schema.TOP1_ERR, "adamw")]


def _sweep_legend(fig, axes) -> None:
    """One legend above the panels naming every sweep drawn in the first column."""
    entries: dict[str, object] = {}
    for row in axes:
        handles, labels = row[0].get_legend_handles_labels()
        entries.update(zip(labels, handles, strict=True))
    if entries:
        fig.legend(
            list(entries.values()), list(entries), loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False
        )


# figure -> (trials, n_resamples, colors) -> Figure; colors: the store's, where t is part of it
FIGURES = {
    "2": lambda t, n, c=None: figure2(t),
    "3": lambda t, n, c=None: figure3(t),
    "4": lambda t, n, c=None: figure_edf(t, "adamw", n_resamples=n, colors=c),
    "5": lambda t, n, c=None: figure_edf(t, "sgd", n_resamples=n, colors=c),
    "compare": lambda t, n, c=None: figure_comparison(t, n_resamples=n, colors=c),
}


def save(fig, out_dir: str | os.PathLike, name: str, fmt: str = "png") -> Path:
    path = Path(out_dir) / f"{name}.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=200, bbox_inches="tight")
    plt.close(fig)
    return path
