"""`stability bench`: run the chosen benchmarks and print each number beside its reference.

It prints ratios and asserts nothing about speed: on a CPU it runs tiny sizes so that CI
exercises the harness; the numbers that matter come from a GPU.
"""

from __future__ import annotations

import argparse

from stability.errors import UserError


def _check(args: argparse.Namespace) -> None:
    for name in ("image_size", "batch_size", "steps", "trials", "epochs", "pack"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def main(args: argparse.Namespace) -> int:
    import models
    from stability.trainer import resolve_device

    _check(args)
    if args.model not in models.names():
        raise UserError(f"unknown model {args.model!r}; see `stability models`")
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    image = args.image_size or (224 if gpu else 32)
    batch = args.batch_size or (256 if gpu else 16)
    wanted = ["step", "data", "population", "sweep"] if args.what == "all" else [args.what]
    if args.dry_run:
        print(f"bench {', '.join(wanted)}: {args.model} at {image} px, batch {batch}, on {device}")
        return 0
    if "step" in wanted:
        from benchmarks import step

        r = step.run(
            args.model, image_size=image, batch_size=batch, steps=args.steps, device=device, compile_model=args.compile
        )
        print(
            f"step  {r['model']} {image}px batch {batch} on {r['device']} ({r['fast_path']}): "
            f"{r['fast_images_per_s']:.1f} img/s vs reference {r['reference_images_per_s']:.1f} img/s; "
            f"ratio {r['ratio']:.2f}x; MFU {100 * r['fast_mfu']:.1f}% vs {100 * r['reference_mfu']:.1f}% "
            f"of {r['matmul_tflops']:.2f} TFLOP/s measured matmul"
        )
    if "data" in wanted:
        from benchmarks import data_path

        small = 32 if gpu else min(image, 16)
        r = data_path.run(
            args.model, dataset=args.dataset, image_size=small, batch_size=batch, device=device, data_dir=args.data_dir
        )
        print(
            f"data  {r['model']} {small}px batch {batch}: {args.dataset} with full augmentation "
            f"{r['real_augmented_images_per_s']:.1f} img/s vs synthetic {r['synthetic_images_per_s']:.1f} img/s; "
            f"ratio {r['ratio']:.2f}"
        )
    if "population" in wanted:
        from benchmarks import population

        r = population.run(
            args.model,
            image_size=image if gpu else 8,
            batch_size=batch,
            pack=args.pack,
            device=device,
            train=8192 if gpu else 128,
        )
        for kernels in ("vmap", "packed"):
            if kernels in r:
                side = r[kernels]
                print(
                    f"population {r['model']} {r['image_size']}px batch {r['batch_size']} on {r['device']}: "
                    f"{r['pack']} trials as one population ({kernels}) {side['images_per_s']:.1f} img/s "
                    f"(all members) vs one trial {r['single_images_per_s']:.1f} img/s; ratio {side['ratio']:.2f}x; "
                    f"peak memory {side['peak_gib']:.1f} GiB"
                )
    if "sweep" in wanted:
        from benchmarks import sweep_wall
        from sweeps import engine, plan

        scale = plan.choose_scale(
            None, gpu, dataset=args.dataset, image_size=32 if gpu else 8, patch_size=4, batch_size=256 if gpu else 64
        )
        engine.preflight(scale, engine.Resources(data_dir=args.data_dir))
        r = sweep_wall.run(
            args.model,
            trials=args.trials,
            epochs=args.epochs,
            scale=scale,
            gpu=gpu,
            pack=args.pack,
            data_dir=args.data_dir,
        )
        concurrent = (
            f"; {r['pack']} concurrent trials (fractional GPUs) {r['concurrent_s']:.1f} s, "
            f"ratio {r['concurrent_ratio']:.2f}x"
            if "concurrent_s" in r
            else ""
        )
        print(
            f"sweep {r['model']} {r['trials']} trials x {r['epochs']} epochs of {r['dataset']}: "
            f"one at a time {r['one_at_a_time_s']:.1f} s vs populations of {r['pack']} {r['population_s']:.1f} s; "
            f"ratio {r['population_ratio']:.2f}x{concurrent}"
        )
    return 0
