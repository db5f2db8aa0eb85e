"""`stability transfer`: what tuning one sweep says about another of the same space."""

from __future__ import annotations

import argparse

from cli.stored_sweeps import edf_sweeps
from stability.errors import UserError


def command(args: argparse.Namespace) -> int:
    from analysis import transfer

    if (args.source is None) != (args.target is None):
        raise UserError("--from and --to name a pair together; give both, or neither for every pair of the store")
    pairs = None if args.source is None else [(args.source, args.target)]
    trials, sets = edf_sweeps(args.results, [n for pair in pairs or [] for n in pair])
    table = transfer.transfer_table(trials, pairs) if sets else None
    if table is None or table.empty:
        print("no pair of sweeps of one model at two lengths, or one family at two sizes; name one with --from/--to")
        return 0
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0
