"""`stability figures`: Figures 2-5, the comparison and the summary tables from a results store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stability.errors import UserError


def command(args: argparse.Namespace) -> int:
    from analysis.figure_files import HOW_TO, make_figures

    if not Path(args.results).is_dir():
        raise UserError(f"no results folder {args.results!r}; run `stability sweep` first or pass --results")
    wanted = ["2", "3", "4", "5", "compare"] if args.figure == "all" else [args.figure]
    if args.protocol is not None:
        check_protocol(args.results, args.protocol, wanted)
    report = make_figures(
        args.results, args.out, wanted, args.format, args.resamples, protocol=args.protocol, first=args.first
    )
    for line in report["unreadable"]:
        print(f"warning: {line}", file=sys.stderr)
    if report["empty"]:
        raise UserError(f"no trial results in {args.results!r}; run `stability sweep` first")
    for path in report["written"]:
        print(f"wrote {path}")
    for line in report["notes"]:
        print(line)
    for figure, parts in report["missing"].items():
        if parts:
            print(f"figure {figure}: the store has no {', '.join(parts)}; to fill it: {HOW_TO[figure]}")
    return 0


def check_protocol(results: str, label: str, figures: list[str]) -> None:
    """A --protocol under which the store holds no runs of the wanted figures is a user error,
    before anything is drawn."""
    import warnings

    from analysis import load_trials
    from analysis.figure_files import figure_protocols

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unreadable files are reported by the drawing itself
        trials = load_trials(results)
    held = sorted({p for f in figures for p in figure_protocols(trials, f)}) if not trials.empty else []
    if label not in held:
        raise UserError(
            f"--protocol {label!r}: the store holds the runs of figure(s) {', '.join(figures)} under "
            f"{', '.join(held) or 'no protocol'}"
        )
