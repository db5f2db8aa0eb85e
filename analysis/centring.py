"""Where a model's (lr, wd) optimum lies, from a coarse grid (`stability sweep --sampler grid`).

An EDF compares how much of an interval lands near its best, so the interval should have the
optimum near its centre; the laptop preset centres its intervals on optima read off coarse
grids with this rule (docs/laptop.md). Written by hand because it is a rule of this study (a
parabola through three grid points), not a model fit that a library offers.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.experiments import usable

NOISE_POINTS = 1.0  # about the test-set noise of one error at 2,000 test images (binomial, ~20%)


def grid_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Top-1 error of a coarse grid's trials: one row per lr, one column per wd (a diverged trial
    at 100); the mean where a point was trained more than once."""
    rows = usable(trials)
    return rows.pivot_table(index="lr", columns="wd", values="top1_err", aggfunc="mean").sort_index()


def grid_optimum(table: pd.DataFrame) -> tuple[float, float]:
    """The (lr, wd) a grid table points to. lr: the best lr's (each lr scored by its best error
    over the wds), moved by a parabola in log lr through it and its neighbours, at most half a
    grid step, and not at all at the grid's edge or where the three points do not curve up. wd:
    the better column averaged over the two best lrs, where the columns differ by a point or
    more; else the geometric mean of the grid's wds (its centre)."""
    by_lr = table.min(axis=1)
    lrs = list(by_lr.index)
    i = int(by_lr.to_numpy().argmin())
    lr = float(lrs[i])
    if 0 < i < len(lrs) - 1:
        (x0, x1, x2), (y0, y1, y2) = (math.log(v) for v in lrs[i - 1 : i + 2]), by_lr.iloc[i - 1 : i + 2]
        a, b = (x1 - x0) * (y1 - y2), (x1 - x2) * (y1 - y0)  # the vertex of the parabola through the three
        if a - b < 0:  # the three curve up (a minimum between them)
            vertex = x1 - 0.5 * ((x1 - x0) * a - (x1 - x2) * b) / (a - b)
            lr = math.exp(min(max(vertex, x1 - 0.5 * (x1 - x0)), x1 + 0.5 * (x2 - x1)))
    mean = table.loc[by_lr.nsmallest(min(2, len(lrs))).index].mean()
    wds = [float(w) for w in mean.index]
    if len(wds) > 1 and mean.max() - mean.min() >= NOISE_POINTS:
        return lr, float(mean.idxmin())
    return lr, math.exp(sum(map(math.log, wds)) / len(wds))
