"""`stability power`: how many trials a comparison needs, simulated from a pilot sweep (or two)."""

from __future__ import annotations

import argparse

from cli.stored_sweeps import edf_sweeps


def command(args: argparse.Namespace) -> int:
    from analysis import power

    _, sets = edf_sweeps(args.results, args.sweep)
    pilot = power.sweeps_pilot({s: sets[s] for s in dict.fromkeys(args.sweep)})
    table = power.table_of(pilot, args.trials, sims=args.sims, seed=args.seed)
    how = f"{len(pilot)} pairs of the same draws, paired test" if pilot.ndim == 2 else f"{pilot.size} trials pooled"
    print(f"pilot: {', '.join(args.sweep)} ({how}); the comparison test at alpha {power.ALPHA}, "
          f"{power.POWER:.0%} power, {args.sims} simulated comparisons per step")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0
