"""`stability optimizers`: the optimizer registry, with each entry's hyperparameters and defaults,
lr scaling, default lr/wd intervals per model family and where those come from."""

from __future__ import annotations

import json

from stability import optimizers


def optimizer_rows() -> list[dict]:
    rows = []
    for name in optimizers.names():
        e = optimizers.entry(name)
        rows.append(
            {
                "name": name,
                "hyperparameters": {k: {"default": h.default, "rule": h.rule} for k, h in e.hyperparameters.items()},
                "lr_scaling": e.lr_scaling,
                "intervals": {kind: {"lr": list(lr), "wd": list(wd)} for kind, (lr, wd) in e.intervals.items()},
                "source": e.source,
                "own_schedule": e.own_schedule,
                "population": e.vectorized,
                "about": e.about,
            }
        )
    return rows


def render(rows: list[dict]) -> str:
    blocks = []
    for r in rows:
        hyper = ", ".join(f"{k}={h['default']:g}" for k, h in r["hyperparameters"].items()) or "none"
        lines = [f"{r['name']}: {r['about']}" if r["about"] else r["name"]]
        lines.append(f"  hyperparameters: {hyper}")
        scaling = {
            "linear": "linear in the batch (lr given at batch 2048)",
            "sqrt": "with the square root of the batch (lr given at batch 2048)",
            "none": "none (lr used as given)",
        }[r["lr_scaling"]]
        lines.append(f"  lr scaling: {scaling}" + ("; brings its own schedule" if r["own_schedule"] else ""))
        for kind, iv in r["intervals"].items():
            lines.append(f"  {kind:3} lr {iv['lr'][0]:.3g}..{iv['lr'][1]:.3g}  wd {iv['wd'][0]:.3g}..{iv['wd'][1]:.3g}")
        if not r["intervals"]:
            lines.append("  no default intervals: a sweep needs --space lr=... --space wd=...")
        if r["source"]:
            lines.append(f"  intervals from: {r['source']}")
        lines.append(f"  packed populations: {'yes' if r['population'] else 'no (trials train one at a time)'}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def command(args) -> int:
    rows = optimizer_rows()
    print(json.dumps(rows) if args.json else render(rows))
    return 0
