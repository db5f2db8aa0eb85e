"""`stability sweep`, `stability grid` and `stability status`."""

from __future__ import annotations

from stability.errors import UserError
from sweeps import engine, plan
from sweeps.space import parse_range
from sweeps.store import Store


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def announce(scale: plan.Scale, explicit: bool, gpu: bool) -> None:
    why = "" if explicit else (" (a GPU is visible)" if gpu else " (no GPU found)")
    print(f"protocol: {scale.preset}{why}: {plan.PRESET_NOTES[scale.preset]}")
    if scale.preset != "paper":
        print("the paper's protocol: add --preset paper --data-dir /path/to/imagenet (train/ and val/ class folders)")


def scale_from(args, gpu: bool, epochs: int | None) -> plan.Scale:
    """The preset named by --preset (or the machine's default) with the scale flags on top."""
    return plan.choose_scale(
        args.preset,
        gpu,
        dataset=args.dataset,
        epochs=epochs,
        image_size=args.image_size,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
    )


def sweep(args) -> int:
    gpu = has_gpu()
    scale = scale_from(args, gpu, epochs=args.epochs)
    announce(scale, args.preset is not None, gpu)
    lr_range = parse_range(args.lr_range, "--lr-range") if args.lr_range else None
    wd_range = parse_range(args.wd_range, "--wd-range") if args.wd_range else None
    name = args.name or f"{args.model}-{args.optim}-{scale.preset}"
    manifest = plan.edf_manifest(
        name,
        args.model,
        args.optim,
        scale,
        trials=args.trials,
        seed=args.seed,
        sampler=args.sampler,
        lr_range=lr_range,
        wd_range=wd_range,
    )
    resources = resources_from(args, gpu)
    preflight(scale, resources)
    engine.run(Store(args.results), name, manifest, resources)
    print_status(Store(args.results), [name])
    return 0


def split_list(text: str | None, cast=str) -> list | None:
    if not text:
        return None
    try:
        return [cast(v) for v in text.split(",") if v]
    except ValueError:
        raise UserError(f"expected a comma-separated list, got {text!r}") from None


def grid(args) -> int:
    from sweeps.grid import describe, plan_grid

    gpu = has_gpu()
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
        trials=args.trials,
        seed=args.seed,
        sampler=args.sampler,
    )
    announce(scale, args.preset is not None, gpu)
    print(describe(sweeps))
    if args.dry_run:
        return 0
    store, resources = Store(args.results), resources_from(args, gpu)
    preflight(scale, resources)
    for name, manifest in sweeps.items():
        engine.run(store, name, manifest, resources)
    print_status(store, list(sweeps))
    return 0


def preflight(scale: plan.Scale, resources: engine.Resources) -> None:
    """The data check, before any sweep of a command touches the store (the engine checks the cluster)."""
    from stability.data import check_available

    check_available(scale.dataset, resources.data_dir, scale.image_size)


def worker_flags(args, gpu: bool) -> tuple[int, float]:
    """(workers, GPUs per worker) from --workers and --gpus-per-worker, checked; 0 workers: no Ray Train."""
    per_worker = args.gpus_per_worker if args.gpus_per_worker is not None else (1.0 if gpu else 0.0)
    workers = args.workers if args.workers is not None else 0
    if (args.workers is not None and args.workers < 1) or args.accumulate < 1 or per_worker < 0:
        raise UserError("--workers and --accumulate must be at least 1, and --gpus-per-worker >= 0")
    if workers and per_worker > 0 and not gpu and not getattr(args, "address", None):
        raise UserError("--gpus-per-worker > 0 but no GPU is visible on this machine")
    return workers, per_worker if workers else 0.0


def resources_from(args, gpu: bool) -> engine.Resources:
    gpus = args.gpus_per_trial if args.gpus_per_trial is not None else (1.0 if gpu else 0.0)
    if args.cpus_per_trial <= 0 or gpus < 0:
        raise UserError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if args.pack is not None and args.pack < 1:
        raise UserError(f"--pack must be at least 1, got {args.pack}")
    if gpus > 0 and not gpu and not args.address:
        raise UserError("--gpus-per-trial > 0 but no GPU is visible on this machine")
    workers, per_worker = worker_flags(args, gpu)
    if (workers or args.accumulate > 1) and args.pack not in (None, 1):
        raise UserError("--pack excludes --workers and --accumulate: populations are for trials smaller than a GPU")
    return engine.Resources(
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=0.0 if workers else gpus,
        workers=workers,
        gpus_per_worker=per_worker,
        accumulate=args.accumulate,
        compile=args.compile,
        address=args.address,
        data_dir=args.data_dir,  # made absolute by the parser
        max_failures=args.max_failures,
        pack=args.pack,
    )


def summarize(store: Store, sweep: str) -> dict:
    manifest = store.read_manifest(sweep)
    trials, bad = store.read_trials(sweep)
    counts = trials["status"].value_counts()
    ok = trials[trials["status"] == "ok"]
    best = ok.loc[ok["top1_err"].idxmin()] if not ok.empty else None
    return {
        "sweep": sweep,
        "planned": len(manifest),
        "done": int(counts.get("ok", 0)),
        "diverged": int(counts.get("diverged", 0)),
        "failed": int(counts.get("failed", 0)),
        "remaining": len(manifest) - len(trials),
        "unreadable": [str(p) for p in bad],
        "best": None
        if best is None
        else f"{best['trial_id']} err {best['top1_err']:.2f}% lr={best['lr']:.3g} wd={best['wd']:.3g}",
    }


def print_status(store: Store, sweeps: list[str] | None = None) -> int:
    names = sweeps or store.sweeps()
    if not names:
        print(f"no sweeps in {store.root}")
        return 0
    print(f"{'sweep':40} {'planned':>7} {'done':>5} {'diverged':>8} {'failed':>6} {'remaining':>9}  best")
    for name in names:
        s = summarize(store, name)
        print(
            f"{name:40} {s['planned']:>7} {s['done']:>5} {s['diverged']:>8} {s['failed']:>6} {s['remaining']:>9}  "
            f"{s['best'] or '-'}"
        )
        for path in s["unreadable"]:
            print(f"  unreadable result file: {path} (set aside and re-run on the next resume)")
    return 0
