"""`stability train`: one run with a progress line per epoch, written to the results store."""

from __future__ import annotations

from stability import optimizers
from stability.config import TrainConfig
from stability.errors import UserError
from stability.trainer import train

# Flags that are the config's fields of the same name.
CONFIG_FLAGS = ("model", "optim", "lr", "wd", "epochs", "dataset", "data_dir", "batch_size", "image_size", "patch_size",
                "seed", "device", "accumulate", "compile")  # fmt: skip


def command(args) -> int:
    """`stability train` with its flags."""
    cfg = TrainConfig(
        **{name: getattr(args, name) for name in CONFIG_FLAGS},
        autoaugment=not args.no_autoaugment,
        mixing=not args.no_mixing,
        imports=tuple(args.imports),
    )
    return run(cfg, args.results, args)


def run(cfg: TrainConfig, results: str, args) -> int:
    from cli.sweeps import trackers_from
    from store import Store
    from sweeps import plan

    cfg = cfg.resolved()
    plan.check_model(cfg.model, plan.Scale(cfg.dataset, cfg.image_size, cfg.patch_size, cfg.epochs, cfg.batch_size))
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(cfg, name)}")
    store = Store(results)
    store.check_writable()
    store.checkpoint_dir(cfg.sweep, cfg.trial_id)  # its names are checked before anything trains
    scaled = optimizers.entry(cfg.optim).lr_scaling != "none"
    print(
        f"train {cfg.model} with {cfg.optim}: lr {cfg.lr:.4g}{' (at batch 2048)' if scaled else ''}, wd {cfg.wd:.4g}, "
        f"{cfg.epochs} epochs of {cfg.dataset} at {cfg.image_size} px",
        flush=True,
    )
    trackers = trackers_from(args)
    if args.dry_run:
        return 0
    drawn = {"trial_id": cfg.trial_id, "model": cfg.model, "optimizer": cfg.optim, "lr": cfg.lr, "wd": cfg.wd,
             "epochs": cfg.epochs, "batch_size": cfg.batch_size, "seed": cfg.seed}  # fmt: skip
    log = trackers.open(store.sweep_dir(cfg.sweep), drawn) if trackers.kinds else None

    def progress(p: dict) -> None:
        if log is not None:
            log.log(p)
        print(
            f"epoch {p['epoch']:>3}/{cfg.epochs}  loss {p['train_loss']:.4f}  lr {p['lr']:.4g}  "
            f"err {p['top1_err']:.2f}% (raw {p['top1_err_raw']:.2f}%)  {p['images_per_s']:.0f} img/s",
            flush=True,
        )

    folder = store.checkpoint_dir(cfg.sweep, cfg.trial_id)
    if args.workers is not None:
        result = train_on_local_ray(cfg, args, folder, store.sweep_dir(cfg.sweep))
    else:
        result = train(cfg, checkpoint_dir=folder, on_epoch=progress, quarantine=store.quarantine_dir(cfg.sweep))
    store.write_trial(cfg.sweep, result.row, result.curve)
    row = result.row
    if log is not None:
        log.close(row["status"])
    print(
        f"{row['status']}: top-1 error {row['top1_err']:.2f}% (EMA), {row['top1_err_raw']:.2f}% (raw); "
        f"{store.trial_path(cfg.sweep, cfg.trial_id)}"
    )
    return 0


def train_on_local_ray(cfg: TrainConfig, args, folder, sweep_dir):
    """--workers N: the run goes through Ray Train on a local Ray; each worker takes the GPU Ray
    gives it, if any (``--device cpu`` asks for none)."""
    from dataclasses import replace

    from cli.sweeps import worker_flags
    from sweeps import cluster, workers

    with cluster.connect(None, list(cfg.imports)) as info:
        n, gpus = worker_flags(args, cfg.device != "cpu" and info.gpus > 0)
        workers.check_capacity(n, 1.0, gpus)
        return workers.train_with_workers(
            replace(cfg, threads=1),
            workers=n,
            cpus_per_worker=1.0,
            gpus_per_worker=gpus,
            checkpoint_dir=folder,
            sweep_dir=sweep_dir,
        )
