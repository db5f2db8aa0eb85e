"""`stability models`: the registry with our complexity counts beside the paper's; a model
without an analytic count is marked (measured)."""

from __future__ import annotations

import json

import models
from stability.errors import UserError
from stability.paper import COMPLEXITY


def model_rows(image_size: int) -> list[dict]:
    rows = []
    for name in models.names():
        try:
            cost = models.complexity(name, image_size=image_size)
        except ValueError as e:
            raise UserError(f"{name} at image size {image_size}: {e}") from None
        row = {"name": name, "family": models.family(name), "stem": models.stem(name), **cost}
        row["source"] = row.pop("complexity_source")
        paper = COMPLEXITY.get(name) if image_size == 224 else None
        row["paper"] = dict(zip(("flops", "params", "acts"), paper, strict=True)) if paper else None
        rows.append(row)
    return rows


def render_table(rows: list[dict]) -> str:
    """Four significant digits, so that the nano zoo's thousandths of a GF read as well as the 36GF."""
    head = f"{'name':14} {'family':8} {'stem':8} {'flops(B)':>9} {'params(M)':>10} {'acts(M)':>8}"
    head += "   paper: flops params acts"
    lines = [head, "-" * len(head)]
    for r in rows:
        p = r["paper"]
        paper = f"{p['flops']:>12.1f} {p['params']:>6.1f} {p['acts']:>4.1f}" if p else f"{'-':>12}"
        measured = "  (measured)" if r["source"] == "measured" else ""
        lines.append(
            f"{r['name']:14} {r['family']:8} {r['stem']:8} {r['flops'] / 1e9:#9.4g} "
            f"{r['params'] / 1e6:#10.4g} {r['acts'] / 1e6:8.3f}   {paper}{measured}"
        )
    return "\n".join(lines)


def command(args) -> int:
    if args.image_size < 1:
        raise UserError(f"--image-size must be a positive integer, got {args.image_size}")
    rows = model_rows(args.image_size)
    keys = ("name", "family", "stem", "flops", "params", "acts", "source")
    print(json.dumps([{k: r[k] for k in keys} for r in rows]) if args.json else render_table(rows))
    return 0
