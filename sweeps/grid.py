"""`stability grid`: the paper's experiment grids for Figures 2-5 (sections 5.1-5.3).

Figures 2 and 3 are one sweep each: every (model, optimizer, epochs) point at its Table 4
optimum, with the same absolute warm-up at every length (``grid_warmup``). Figures 4 and 5
are one 64-trial EDF sweep per model, named as `stability sweep` names them, so a grid and
single sweeps share results.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

import models as zoo
from stability import recipe
from stability.config import default_lr_wd
from stability.errors import UserError
from sweeps import plan

VITS = ["vit_p_1gf", "vit_p_4gf", "vit_p_18gf", "vit_c_1gf", "vit_c_4gf", "vit_c_18gf"]
CNNS = ["regnety_1gf", "regnety_4gf", "regnety_16gf"]

PAPER_EPOCHS = [50, 100, 200, 400]


def grid_warmup(scale: plan.Scale) -> float:
    """The paper warms up for 5 epochs at every length of its grid (5 of the 50-epoch base; 1.25%
    of 400), so a rescaled grid keeps one absolute warm-up: 5/50 of the preset's base length.
    (The recipe's own default, a tenth of each run, would make the long runs warm up longer and
    the curve measure something else.)"""
    return recipe.WARMUP_EPOCHS / PAPER_EPOCHS[0] * scale.epochs


def grid_epochs(scale: plan.Scale, given: list[int] | None) -> list[int]:
    """The paper's 50/100/200/400, rescaled so that 50 maps to the preset's epochs."""
    return given or [max(1, round(e * scale.epochs / 50)) for e in PAPER_EPOCHS]


def figure_points(figure: int, models: list[str], optims: list[str] | None) -> list[tuple[str, str]]:
    """(model, optimizer) pairs of a figure: Figure 2 trains ViTs with AdamW and CNNs with SGD;
    Figure 3 trains every model with AdamW and SGD, or with every optimizer given in ``optims``
    (any registered one); Figures 4 / 5 use AdamW / SGD."""
    if figure == 2:
        default = {m: ["adamw"] if zoo.family(m).startswith("ViT") else ["sgd"] for m in models}
    elif figure == 3:
        default = {m: optims or ["adamw", "sgd"] for m in models}
    else:
        default = {m: ["adamw" if figure == 4 else "sgd"] for m in models}
    return [(m, o) for m in models for o in default[m] if optims is None or o in optims]


def plan_grid(
    figure: int,
    scale: plan.Scale,
    *,
    models: list[str] | None = None,
    epochs: list[int] | None = None,
    optims: list[str] | None = None,
    trials: int = 64,
    seed: int = 0,
    sampler: str = "random",
    imports: list[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """The figure's sweeps, name -> manifest."""
    if figure not in (2, 3, 4, 5):
        raise UserError(f"--figure must be 2, 3, 4 or 5, got {figure}")
    chosen = models or plan.PRESET_MODELS.get(scale.preset, VITS + CNNS)
    for m in chosen:
        plan.check_model(m, scale)
    for o in optims or []:
        plan.check_optimizer(o)
    points = figure_points(figure, chosen, optims)
    if not points:
        raise UserError("the chosen --models and --optims leave no experiment in this figure")
    if figure in (4, 5):
        if epochs and len(epochs) != 1:
            raise UserError("figures 4 and 5 use one schedule length; give one --epochs value")
        scale = replace(scale, epochs=epochs[0]) if epochs else scale
        return {
            f"{m}-{o}-{scale.preset}": plan.edf_manifest(
                f"{m}-{o}-{scale.preset}", m, o, scale, trials=trials, seed=seed, sampler=sampler, imports=imports
            )
            for m, o in points
        }
    name = f"figure{figure}-{scale.preset}"
    warmup = grid_warmup(scale)
    rows = []
    for m, o in points:
        best = plan.preset_optimum(scale.preset, m, o) or default_lr_wd(m, zoo.family(m), o)
        if best is None:
            raise UserError(
                f"{m} (family {zoo.family(m)}) has no Table 4 optimum or {o} interval to train Figures 2 and 3 at"
            )
        for e in grid_epochs(scale, epochs):
            row = plan.manifest_row(name, len(rows), m, o, *best, scale, seed, epochs=e, imports=imports)
            rows.append({**row, "warmup_epochs": warmup})
    return {name: pd.DataFrame(rows)}


def describe(sweeps: dict[str, pd.DataFrame]) -> str:
    lines = [f"{'sweep':36} {'trials':>6}  models x optimizers x epochs"]
    for name, m in sweeps.items():
        combos = m.groupby(["model", "optimizer"])["epochs"].apply(lambda e: "/".join(map(str, sorted(set(e)))))
        what = ", ".join(f"{model} {opt} e{eps}" for (model, opt), eps in combos.items())
        lines.append(f"{name:36} {len(m):>6}  {what}")
    vit = sum(int(m["family"].str.startswith("ViT").sum()) for m in sweeps.values())
    own = sum(int((m["family"] == "trainable").sum()) for m in sweeps.values())
    total = sum(len(m) for m in sweeps.values())
    kinds = f"{vit} ViT, {total - vit - own} CNN" + (f", {own} of your trainables" if own else "")
    lines.append(f"total: {total} trials ({kinds}) in {len(sweeps)} sweep(s)")
    return "\n".join(lines)
