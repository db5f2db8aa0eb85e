"""`stability report`: one self-contained HTML page of a results store."""

from __future__ import annotations

import argparse
from pathlib import Path

from stability.errors import UserError


def command(args: argparse.Namespace) -> int:
    from analysis import report

    if not Path(args.results).is_dir():
        raise UserError(f"no results folder {args.results!r}; run `stability sweep` first or pass --results")
    written = report.write_report(
        args.results, args.out, n_resamples=args.resamples, replace=args.with_replacement, first=args.first
    )
    if written is None:
        raise UserError(f"no trial results in {args.results!r}; run `stability sweep` first")
    print(f"wrote {written}")
    return 0
