"""`stability train`: one run with a progress line per epoch, written to the results store."""

from __future__ import annotations

from stability.trainer import TrainConfig, train


def run(cfg: TrainConfig, results: str) -> int:
    from sweeps.store import Store

    cfg = cfg.resolved()
    store = Store(results)
    store.check_writable()
    print(
        f"train {cfg.model} with {cfg.optim}: lr {cfg.lr:.4g} (at batch 2048), wd {cfg.wd:.4g}, "
        f"{cfg.epochs} epochs of {cfg.dataset} at {cfg.image_size} px",
        flush=True,
    )

    def progress(p: dict) -> None:
        print(
            f"epoch {p['epoch']:>3}/{cfg.epochs}  loss {p['train_loss']:.4f}  lr {p['lr']:.4g}  "
            f"err {p['top1_err']:.2f}% (raw {p['top1_err_raw']:.2f}%)  {p['images_per_s']:.0f} img/s",
            flush=True,
        )

    result = train(cfg, checkpoint_dir=store.checkpoint_dir(cfg.sweep, cfg.trial_id), on_epoch=progress)
    store.write_trial(cfg.sweep, result.row, result.curve)
    row = result.row
    print(
        f"{row['status']}: top-1 error {row['top1_err']:.2f}% (EMA), {row['top1_err_raw']:.2f}% (raw); "
        f"{store.trial_path(cfg.sweep, cfg.trial_id)}"
    )
    return 0
