"""`stability power`: how many trials a comparison needs, simulated from a pilot sweep (or two)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from stability.errors import UserError


def command(args: argparse.Namespace) -> int:
    from analysis import experiments, load_trials, power

    if not Path(args.results).is_dir():
        raise UserError(f"no results folder {args.results!r}; run `stability sweep` first or pass --results")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable files: `stability status` names them
        trials = load_trials(args.results)
    sets = experiments.edf_sets(trials) if not trials.empty else {}
    missing = [s for s in args.sweep if s not in sets]
    if missing:
        held = ", ".join(sorted(sets)) or "none"
        raise UserError(f"no EDF sweep {missing[0]!r} in {args.results!r}; it holds {held}")
    pilot = power.sweeps_pilot({s: sets[s] for s in dict.fromkeys(args.sweep)})
    table = power.table_of(pilot, args.trials, sims=args.sims, seed=args.seed)
    how = f"{len(pilot)} pairs of the same draws, paired test" if pilot.ndim == 2 else f"{pilot.size} trials pooled"
    print(f"pilot: {', '.join(args.sweep)} ({how}); the comparison test at alpha {power.ALPHA}, "
          f"{power.POWER:.0%} power, {args.sims} simulated comparisons per step")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0
