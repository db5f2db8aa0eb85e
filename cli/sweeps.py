"""`stability sweep`, `stability grid`, `stability noise` and `stability status`."""

from __future__ import annotations

import os
import shlex

import pandas as pd

from stability.errors import UserError
from store import Store, schema
from store.space import Dimension
from sweeps import cluster, engine, lock, plan
from sweeps.space import Space, parse_range, parse_space_flags, read_space_file
from sweeps.trackers import Trackers


def announce(scale: plan.Scale, explicit: bool, gpu: bool) -> None:
    why = "" if explicit else (" (the cluster has GPUs)" if gpu else " (the cluster has no GPU)")
    print(f"protocol: {scale.preset}{why}: {plan.PRESET_NOTES[scale.preset]}")
    fields = ("dataset", "image_size", "patch_size", "epochs", "batch_size")
    if any(getattr(scale, f) != plan.PRESETS[scale.preset][f] for f in fields):  # the note is the preset's
        print(
            f"  as your flags set it: {scale.dataset}, {scale.image_size} px / patch {scale.patch_size}, "
            f"{scale.epochs} epoch(s), batch {scale.batch_size}"
        )
    if scale.preset != "paper":
        print("the paper's protocol: add --preset paper --data-dir /path/to/imagenet (train/ and val/ class folders)")


def scale_from(args, gpu: bool, epochs: int | None) -> plan.Scale:
    """The preset named by --preset (or the cluster's default) with the scale flags on top."""
    return plan.choose_scale(
        args.preset,
        gpu,
        dataset=args.dataset,
        epochs=epochs,
        image_size=args.image_size,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
    )


def space_from(args) -> Space:
    """--space-file, then --space flags on top; --lr-range / --wd-range are lr=log:A,B / wd=log:C,D."""
    space = read_space_file(args.space_file) if args.space_file else {}
    space.update(parse_space_flags(args.space))
    for name, given in (("lr", args.lr_range), ("wd", args.wd_range)):
        if given:
            if name in space:
                raise UserError(f"--{name}-range and a --space/--space-file entry for {name}: give one")
            space[name] = Dimension("log", *parse_range(given, f"--{name}-range"))
    return space


def plan_sweep(args, gpu: bool) -> tuple[plan.Scale | None, str, pd.DataFrame]:
    """The sweep's scale (None for a trainable, which brings its own data), name and manifest."""
    if args.trainer:
        return None, *plan_trainable(args)
    if not (args.model and args.optim):
        raise UserError("a sweep needs --model and --optim (the built-in trainer), or --trainer NAME (your own)")
    scale = scale_from(args, gpu, epochs=args.epochs)
    name = args.name or f"{args.model}-{args.optim}-{scale.preset}"
    manifest = plan.edf_manifest(
        name,
        args.model,
        args.optim,
        scale,
        trials=plan.preset_trials(scale.preset, args.trials),
        seed=args.seed,
        sampler=args.sampler,
        space=space_from(args),
        imports=args.imports,
    )
    return scale, name, checked_grid_size(args, manifest)


def checked_grid_size(args, manifest: pd.DataFrame) -> pd.DataFrame:
    """``--sampler grid`` trains every point of its space once: more --trials than points (a
    grid sweep extended) is a mistake, said before anything runs."""
    if args.sampler == "grid" and args.trials is not None and args.trials > len(manifest):
        raise UserError(
            f"--sampler grid trains each of its space's {len(manifest)} points once; it cannot be extended "
            f"to --trials {args.trials} (sample the space with --sampler random or sobol to add trials)"
        )
    return manifest


# Flags of the built-in trainer's data and model that a trainable's sweep does not take.
NOT_FOR_TRAINABLES = ("model", "optim", "preset", "dataset", "batch_size", "image_size", "patch_size", "lr_range",
                      "wd_range", "workers", "gpus_per_worker", "data_dir", "pack", "compile")  # fmt: skip


def plan_trainable(args) -> tuple[str, pd.DataFrame]:
    """A sweep of a registered trainable (``--trainer``): its space over the trainable's own
    hyperparameters, its epochs (default: the trainable's)."""
    given = [f"--{k.replace('_', '-')}" for k in NOT_FOR_TRAINABLES if getattr(args, k, None)]
    given += ["--accumulate"] if getattr(args, "accumulate", 1) != 1 else []
    if given:
        raise UserError(f"--trainer sweeps its own training function: {', '.join(given)} do(es) not apply")
    name = args.name or args.trainer
    manifest = plan.trainable_manifest(
        name,
        args.trainer,
        trials=args.trials or 64,
        seed=args.seed,
        epochs=args.epochs,
        sampler=args.sampler,
        space=space_from(args),
        imports=args.imports,
    )
    return name, checked_grid_size(args, manifest)


# Planning for a cluster without GPUs runs every check of the flags that needs no cluster, so a
# mistyped flag is refused at once, before Ray starts.
NO_CLUSTER = cluster.ClusterInfo("(none)", 0, 0.0, 0.0)


def sweep(args, check_only: bool = False) -> int:
    """``check_only``: every check that needs no cluster, then stop (`stability slurm`)."""
    scale, name, manifest = plan_sweep(args, gpu=False)
    resources_from(args, NO_CLUSTER)
    if check_only:
        return 0
    if args.dry_run:
        from sweeps.grid import describe

        if scale is not None:
            announce(scale, args.preset is not None, False)
        print(describe({name: manifest}))
        return 0

    def plan_for(gpu: bool) -> tuple[plan.Scale | None, dict[str, pd.DataFrame]]:
        scale, name, manifest = plan_sweep(args, gpu)
        return scale, {name: manifest}

    def show(scale: plan.Scale | None, sweeps: dict, gpu: bool) -> None:
        if scale is not None:
            announce(scale, args.preset is not None, gpu)

    launch(args, plan_for, show)
    return 0


def launch(args, plan_for, show=None, imports: list[str] | None = None, dry_run: bool = False) -> bool:
    """Join the cluster and run the sweeps that ``plan_for(gpu)`` plans for it (``gpu``: it has
    GPUs); ``show`` prints the plan once the cluster is joined.

    Without ``--address`` (and without a Ray of more than this machine already joined) the
    cluster is this machine, whose GPUs are known before a local Ray starts: every check that
    needs no cluster (the results root is writable, the data is there and parses, each name is
    free or holds the same definition) runs first, and Ray starts only when they pass and a
    trial is pending; the checks that read the store run again under the driver's lock. On a
    cluster the data is checked there, the only place that sees it. Returns whether the sweeps
    ran: not for a dry run, nor when nothing was pending (said, with the sweeps' status; the
    stored retry command is left as it was).
    """
    imports = args.imports if imports is None else imports
    store = Store(args.results)
    gpus = None if args.address or cluster.joined_remote_ray() else cluster.local_gpus()
    if gpus is not None:
        gpu = gpus > 0
        scale, sweeps = plan_for(gpu)
        if dry_run:
            if show is not None:
                show(scale, sweeps, gpu)
            return False
        store.check_writable()
        resources = resources_from(args, NO_CLUSTER)
        engine.preflight(scale, resources, imports=tuple(imports))
        if not engine.anything_pending(store, sweeps, resources.retry_failed):
            for name, manifest in sweeps.items():
                print(f"sweep {name}: all {len(manifest)} trials already have results; nothing to run")
            print_status(store, list(sweeps))
            return False
    elif not dry_run:
        store.check_writable()
    with cluster.connect(args.address, imports) as info:
        print(info.describe(), flush=True)
        scale, sweeps = plan_for(info.gpus > 0)
        if show is not None:
            show(scale, sweeps, info.gpus > 0)
        if not dry_run:
            run_sweeps(args, info, scale, sweeps, imports, data_checked=gpus is not None)
    return not dry_run


def split_list(text: str | None, cast=str) -> list | None:
    if not text:
        return None
    try:
        return [cast(v) for v in text.split(",") if v]
    except ValueError:
        raise UserError(f"expected a comma-separated list, got {text!r}") from None


def plan_figure(args, gpu: bool) -> tuple[plan.Scale, dict[str, pd.DataFrame]]:
    from sweeps.grid import plan_grid

    scale = scale_from(args, gpu, epochs=None)
    epochs = split_list(args.epochs, int)
    if epochs and min(epochs) < 1:
        raise UserError(f"--epochs values must be at least 1, got {args.epochs}")
    sweeps = plan_grid(
        args.figure,
        scale,
        models=split_list(args.models),
        epochs=epochs,
        optims=split_list(args.optims),
        trials=plan.preset_trials(scale.preset, args.trials),
        seed=args.seed,
        sampler=args.sampler,
        imports=args.imports,
    )
    return scale, sweeps


def grid(args, check_only: bool = False) -> int:
    """``check_only``: every check that needs no cluster, then stop (`stability slurm`)."""
    from sweeps.grid import describe

    scale, sweeps = plan_figure(args, gpu=False)
    resources_from(args, NO_CLUSTER)
    if check_only:
        return 0
    if args.dry_run and args.preset is not None:
        announce(scale, True, False)
        print(describe(sweeps))
        return 0

    def show(scale: plan.Scale, sweeps: dict, gpu: bool) -> None:
        announce(scale, args.preset is not None, gpu)
        print(describe(sweeps))

    launch(args, lambda gpu: plan_figure(args, gpu), show, dry_run=args.dry_run)
    return 0


def noise(args) -> int:
    """`stability noise`: the sweep's best (lr, wd) re-trained under --seeds other seeds, as a sweep
    of its own (``<sweep>-noise``) whose rows name the sweep in ``noise_of``; the sweep's own
    ``--import`` modules are imported here and in its trials."""
    from stability.imports import load_imports

    store = Store(args.results)
    manifest = store.read_manifest(args.sweep)
    if manifest is None:
        raise UserError(f"no sweep {args.sweep!r} in {store.root}; see `stability status`")
    if (manifest["sampler"] == "imported").any() if "sampler" in manifest else False:
        raise UserError(f"sweep {args.sweep!r} was imported (`stability import`): it has no trainer here to re-run")
    trials, _ = store.read_trials(args.sweep)
    ok = trials[trials["status"] == "ok"]
    if ok.empty:
        raise UserError(f"sweep {args.sweep!r} has no finished trial yet; run it first")
    best_id = ok.loc[schema.scores(ok).idxmin(), "trial_id"]
    best = manifest.set_index("trial_id").loc[best_id].to_dict() | {"trial_id": best_id}
    load_imports(schema.imports_of(best))  # its optimizer's hyperparameters are columns to carry over
    sweeps = {f"{args.sweep}-noise": plan.noise_manifest(args.sweep, best, args.seeds)}
    resources_from(args, NO_CLUSTER)
    scale = None if schema.present(best.get("trainer")) else plan.scale_of(best)
    drawn = engine.drawn(best)
    print(f"noise floor of {args.sweep}: its best trial {best_id} ({drawn}) under {args.seeds} other seeds")
    if args.dry_run:
        return 0
    launch(args, lambda gpu: (scale, sweeps), imports=schema.imports_of(best))
    return 0


def run_sweeps(
    args,
    info: cluster.ClusterInfo,
    scale: plan.Scale | None,
    sweeps: dict[str, pd.DataFrame],
    imports: list[str],
    data_checked: bool,
) -> None:
    """On the joined cluster: check what the cluster decides (and the data, unless ``launch``
    checked it before Ray started), then lock the sweeps and run them one after another.
    ``scale``: the built-in trainer's data; None for a trainable's sweeps (it brings its own)."""
    store, resources = Store(args.results), resources_from(args, info)
    if not data_checked:
        trainers = sorted({t for m in sweeps.values() if "trainer" in m for t in m["trainer"].dropna()})
        engine.preflight(scale, resources, remote=info.remote, imports=tuple(imports), trainers=trainers)
    placement = engine.place(resources, store, remote=info.remote)
    if placement.gpu_memory is not None:
        print(f"GPU memory per trial: {placement.gpu_memory / 2**30:.1f} GiB (packs are sized to it)", flush=True)
    command = retry_command(getattr(args, "command_line", None))
    with lock.hold([store.sweep_dir(name) for name in sweeps]) as lease:
        for name, manifest in sweeps.items():
            resources.trackers.prepare(store.sweep_dir(name))
            engine.run(store, name, manifest, resources, placement, lease=lease, command=command)
    print_status(store, list(sweeps))


def retry_command(command_line: str | None) -> str | None:
    """The command that ran the sweeps, as one that retries their failed trials, from the folder
    it ran in (its paths may be relative)."""
    if command_line is None:
        return None
    words = shlex.join(w for w in shlex.split(command_line) if w != "--no-retry-failed")
    return f"cd {shlex.quote(os.getcwd())} && {words}"


def worker_flags(args, gpu: bool) -> tuple[int, float]:
    """(workers, GPUs per worker) from --workers and --gpus-per-worker, checked; 0 workers: no Ray Train.
    ``gpu``: the cluster has GPUs, so a worker gets one by default."""
    per_worker = args.gpus_per_worker if args.gpus_per_worker is not None else (1.0 if gpu else 0.0)
    workers = args.workers if args.workers is not None else 0
    if (args.workers is not None and args.workers < 1) or args.accumulate < 1 or per_worker < 0:
        raise UserError("--workers and --accumulate must be at least 1, and --gpus-per-worker >= 0")
    return workers, per_worker if workers else 0.0


def resources_from(args, info: cluster.ClusterInfo) -> engine.Resources:
    """What each trial asks of the cluster; GPUs by default where the cluster has them."""
    gpu = info.gpus > 0
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if gpu else 0.0)
    if args.cpus_per_trial <= 0 or gpus < 0:
        raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.pack is not None and args.pack < 1:
        raise UserError(f"--pack must be at least 1, got {args.pack}")
    workers, per_worker = worker_flags(args, gpu)
    if (workers or args.accumulate > 1) and args.pack not in (None, 1):
        raise UserError("--pack excludes --workers and --accumulate: populations are for trials smaller than a GPU")
    return engine.Resources(
        trackers=trackers_from(args),
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=0.0 if workers else gpus,
        workers=workers,
        gpus_per_worker=per_worker,
        accumulate=args.accumulate,
        compile=args.compile,
        data_dir=args.data_dir,  # made absolute by the parser
        max_failures=args.max_failures,
        pack=args.pack,
        retry_failed=not args.no_retry_failed,
    )


def trackers_from(args) -> Trackers:
    """--log and --mlflow-uri, checked: each tracker's library is there (an optional extra), and
    the run is not spread over Ray Train workers (whose curves these trackers do not reach)."""
    import importlib.util

    kinds = tuple(dict.fromkeys(getattr(args, "log", None) or ()))
    library = {"tensorboard": "tensorboardX", "mlflow": "mlflow"}
    for kind in kinds:
        if importlib.util.find_spec(library[kind]) is None:
            raise UserError(f"--log {kind} needs {library[kind]}: pip install 'edf-sweep-engine[{kind}]'")
    if kinds and getattr(args, "workers", None):
        raise UserError("--log does not reach trials spread over --workers yet; leave one of them out")
    if getattr(args, "mlflow_uri", None) and "mlflow" not in kinds:
        raise UserError("--mlflow-uri goes with --log mlflow")
    return Trackers(kinds, getattr(args, "mlflow_uri", None))


def summarize(store: Store, sweep: str) -> dict:
    manifest = store.read_manifest(sweep)
    trials, bad = store.read_trials(sweep)
    counts = trials["status"].value_counts()
    ok = trials[trials["status"] == "ok"]
    best = ok.loc[schema.scores(ok).idxmin()] if not ok.empty else None
    return {
        "sweep": sweep,
        "planned": len(manifest),
        "done": int(counts.get("ok", 0)),
        "diverged": int(counts.get("diverged", 0)),
        "failed": int(counts.get("failed", 0)),
        "remaining": len(manifest) - len(trials),
        "unreadable": [str(p) for p in bad],
        "imported": bool("sampler" in manifest and (manifest["sampler"] == "imported").any()),
        "best": None if best is None else best_line(best.to_dict()),
    }


def best_line(best: dict) -> str:
    """A sweep's best trial in `status`: its id, its outcome in the sweep's metric, lr and wd."""
    metric = schema.metric_of(best)
    if metric == schema.TOP1_ERR:
        return f"{best['trial_id']} err {best['top1_err']:.2f}% lr={best['lr']:.3g} wd={best['wd']:.3g}"
    drawn = " ".join(f"{k}={best[k]:.3g}" for k in ("lr", "wd") if schema.present(best.get(k)))
    return f"{best['trial_id']} {metric.name} {best[metric.name]:.4g} {drawn}".rstrip()


def status(args) -> int:
    return print_status(Store(args.results))


def print_status(store: Store, sweeps: list[str] | None = None) -> int:
    names = sweeps or store.sweeps()
    if not names:
        print(f"no sweeps in {store.root}")
        return 0
    print(f"{'sweep':40} {'planned':>7} {'done':>5} {'diverged':>8} {'failed':>6} {'remaining':>9}  best")
    retries = []
    for name in names:
        s = summarize(store, name)
        if s["failed"] and s["imported"]:
            retries.append(f"{name}: {s['failed']} trial(s) imported as failed (failed, pruned or unfinished at the "
                           "source); nothing here re-runs them")  # fmt: skip
        elif s["failed"]:
            command = store.read_command(name) or "the command that ran it"
            retries.append(f"{name}: {s['failed']} failed trial(s), kept with their checkpoints; retry: {command}")
        print(
            f"{name:40} {s['planned']:>7} {s['done']:>5} {s['diverged']:>8} {s['failed']:>6} {s['remaining']:>9}  "
            f"{s['best'] or '-'}"
        )
        for path in s["unreadable"]:
            print(f"  unreadable result file: {path} (set aside and re-run on the next resume)")
    for line in retries:
        print(line)
    return 0
