"""`stability import` and `stability export --optuna`: sweeps run elsewhere into a store, and a
store's sweeps out as Optuna studies (docs/external.md). The reading and writing is
the ``external`` package; this module checks the flags of each source and says what was done."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from stability.errors import UserError

if TYPE_CHECKING:  # the readers (pandas, Optuna, Ray) load when a command runs, not with the parser
    import external
    from store import Store

# Flags that only some sources take (the argparse name is the flag's), and the sources that take each.
ONLY = {"--study": ("optuna",), "--param": ("tune", "csv"), "--mode": ("tune", "csv"), "--direction": ("tune", "csv")}


def source_of(args: argparse.Namespace) -> external.Source:
    """Read the source the flags name, after checking that each flag belongs to it."""
    import external

    kind = "optuna" if args.optuna else "tune" if args.tune else "csv"
    for flag, takes in ONLY.items():
        if getattr(args, flag[2:]) not in (None, []) and kind not in takes:
            raise UserError(f"{flag} does not apply to --{kind}")
    if kind == "optuna":
        return external.read_optuna(args.optuna, args.study, metric=args.metric, diverged=args.diverged)
    direction = direction_of(args, kind)
    if not args.metric:
        raise UserError(f"--{kind} needs --metric (the {'reported key' if kind == 'tune' else 'column'} to import)")
    params = external.parse_params(args.param)
    if kind == "tune":
        mode = "min" if direction == "minimize" else "max"
        return external.read_tune(args.tune, metric=args.metric, mode=mode, params=params, diverged=args.diverged)
    return external.read_csv(args.csv, metric=args.metric, direction=direction, params=params, diverged=args.diverged)


def direction_of(args: argparse.Namespace, kind: str) -> str:
    """--mode min|max (Tune's words) or --direction minimize|maximize (Optuna's): either, not two."""
    given = {d for d in ({"min": "minimize", "max": "maximize"}.get(args.mode), args.direction) if d}
    if len(given) > 1:
        raise UserError("--mode and --direction disagree")
    if not given:
        raise UserError(f"--{kind} needs {'--mode min|max' if kind == 'tune' else '--direction minimize|maximize'}")
    return given.pop()


def import_(args: argparse.Namespace) -> int:
    import external
    from store import Store

    store = Store(args.results)
    source = source_of(args)
    imported = external.plan_import(source, store, name=args.name, model=args.model, optimizer=args.optimizer)
    verb = "would import" if args.dry_run else "imported"
    if not args.dry_run:
        external.write_import(store, imported)
    describe(imported, verb, store)
    if args.dry_run:
        print("dry run: nothing written")
    return 0


def describe(imported: external.Imported, verb: str, store: Store) -> None:
    counts, n = imported.counts(), len(imported.rows)
    metric = imported.source.metric
    print(
        f"{verb} {n} trial(s) from {imported.source.source} as sweep {imported.sweep!r} in {store.root}: "
        f"{counts['ok']} ok, {counts['diverged']} diverged, {counts['failed']} failed"
    )
    print(f"metric: {metric.name} ({metric.direction}; a diverged trial counts as {metric.diverged:g})")
    print("space: " + (" ".join(f"{k}={v}" for k, v in imported.source.space.items()) or "none"))
    for reason, k in sorted(imported.failures().items()):
        print(f"  {k} failed, kept as failed and never as results: {reason}")
    print(ADAPTIVE)


# An EDF reads the share of a space's random draws near the best; trials an adaptive search chose
# are no such draws, and the analysis cannot tell them apart.
ADAPTIVE = (
    "note: its EDF counts these trials as random draws of the space; trials an adaptive sampler chose (TPE, "
    "ASHA's survivors, ...) crowd near the optimum and make a space look more stable than it is"
)


def export(args: argparse.Namespace) -> int:
    import external
    from store import Store

    studies = external.plan_export(Store(args.results), args.sweep or None)
    external.write_export(studies, args.optuna)
    for s in studies:
        states = ", ".join(f"{k} {v}" for k, v in sorted(s.states().items())) or "no trials"
        print(f"exported sweep {s.name!r} as study {s.name!r} ({s.direction}; {states}) to {args.optuna}")
        if s.not_run:
            print(f"  {s.not_run} planned trial(s) without a result were not exported")
        if s.unreadable:
            print(f"  {s.unreadable} unreadable result file(s) were skipped")
    journal = external.journal_path(args.optuna)
    where = str(journal) if journal is not None else external.storage_url(args.optuna)
    print(f"open them with: optuna-dashboard {where} --host 127.0.0.1")
    return 0
