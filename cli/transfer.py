"""`stability transfer`: what tuning one sweep says about another of the same space."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from stability.errors import UserError


def command(args: argparse.Namespace) -> int:
    from analysis import experiments, load_trials, transfer

    if not Path(args.results).is_dir():
        raise UserError(f"no results folder {args.results!r}; run `stability sweep` first or pass --results")
    if (args.source is None) != (args.target is None):
        raise UserError("--from and --to name a pair together; give both, or neither for every pair of the store")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable files: `stability status` names them
        trials = load_trials(args.results)
    sets = experiments.edf_sets(trials) if not trials.empty else {}
    pairs = None if args.source is None else [(args.source, args.target)]
    missing = [n for pair in pairs or [] for n in pair if n not in sets]
    if missing:
        raise UserError(
            f"no EDF sweep {missing[0]!r} in {args.results!r}; it holds {', '.join(sorted(sets)) or 'none'}"
        )
    table = transfer.transfer_table(trials, pairs) if sets else None
    if table is None or table.empty:
        print("no pair of sweeps of one model at two lengths, or one family at two sizes; name one with --from/--to")
        return 0
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
