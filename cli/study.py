"""`stability study FILE.toml`: a whole comparison from one file, resumed like a sweep, ending
with its comparison figure.

A study is one EDF sweep per (model, optimizer), all drawn from one space at one scale, named
``<study>-<model>-<optimizer>``; or, with ``trainer`` (a registered trainable, or a list of
them), one sweep per trainable over its own hyperparameters, named ``<study>-<trainer>``. Paths
in the file (imports, data_dir) are relative to the file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import models
from cli import sweeps as commands
from stability.errors import UserError
from stability.imports import load_imports
from store import check_name
from store.space import space_from_json
from sweeps import plan
from sweeps.space import SAMPLERS, Space, read_toml, space_from_table

SCALE_KEYS = ("dataset", "epochs", "image_size", "patch_size", "batch_size")
KEYS = {"name", "imports", "models", "optimizers", "trainer", "trials", "seed", "sampler", "preset", "data_dir"}
KEYS |= {"space"}
# What a study of trainables leaves to them: the built-in trainer's models, optimizers and data.
NOT_FOR_TRAINABLES = ("models", "optimizers", "preset", "data_dir", "dataset", "image_size", "patch_size", "batch_size")
KEYS |= set(SCALE_KEYS)


@dataclass(frozen=True)
class Study:
    name: str
    models: list[str]
    optimizers: list[str]
    trials: int | None  # None: the preset's number (``plan.preset_trials``)
    seed: int
    sampler: str
    preset: str | None
    scale: dict
    space: Space
    imports: list[str] = field(default_factory=list)
    data_dir: str | None = None
    trainers: list[str] = field(default_factory=list)  # registered trainables; then no models or optimizers


def typed(doc: dict, key: str, kind, where: str, default=None):
    value = doc.get(key, default)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if value is not None and not ok:
        raise UserError(f"{where}: {key} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def strings(doc: dict, key: str, where: str, required: bool = False) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or (required and not value):
        raise UserError(f"{where}: {key} must be a {'non-empty ' if required else ''}list of strings")
    return value


def read_study(path: str | Path) -> Study:
    """The study file, checked: one ``error:`` line for the first thing wrong."""
    path = Path(path)
    doc, where = read_toml(path), str(path)
    unknown = sorted(set(doc) - KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; a study file has {', '.join(sorted(KEYS))}")
    here = path.parent

    def beside(p: str) -> str:
        return str((here / p).resolve()) if p.endswith(".py") or "/" in p else p

    optimizers = strings(doc, "optimizers", where) or ["adamw", "sgd"]
    sampler = typed(doc, "sampler", str, where, "random")
    if sampler not in SAMPLERS or sampler == "grid":
        raise UserError(f"{where}: sampler must be random or sobol (a study compares EDFs), got {sampler!r}")
    data_dir = typed(doc, "data_dir", str, where)
    scale = {k: typed(doc, k, str if k == "dataset" else int, where) for k in SCALE_KEYS}
    imports = [beside(p) for p in strings(doc, "imports", where)]
    load_imports(imports)  # before the space is read: an imported optimizer brings its hyperparameters
    trainers = trainers_of(doc, where)
    return Study(
        name=check_name(typed(doc, "name", str, where, path.stem), "study name"),
        models=[] if trainers else strings(doc, "models", where, required=True),
        optimizers=optimizers,
        trials=typed(doc, "trials", int, where),
        seed=typed(doc, "seed", int, where, 0),
        sampler=sampler,
        preset=typed(doc, "preset", str, where),
        scale={k: v for k, v in scale.items() if v is not None},
        space=space_from_table(doc.get("space", {}), where),
        imports=imports,
        data_dir=str((here / data_dir).resolve()) if data_dir else None,
        trainers=trainers,
    )


def trainers_of(doc: dict, where: str) -> list[str]:
    """``trainer = "NAME"`` or a list of names: registered trainables, with none of the built-in
    trainer's keys beside them."""
    value = doc.get("trainer", [])
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(v, str) for v in names):
        raise UserError(f"{where}: trainer must be a name or a list of names of registered trainables")
    clash = [k for k in NOT_FOR_TRAINABLES if k in doc]
    if names and clash:
        raise UserError(f"{where}: a study of trainables has no {', '.join(clash)}: the trainable brings its own")
    for name in names:
        plan.check_trainer(name)
    return names


def plan_study(study: Study, gpu: bool) -> tuple[plan.Scale | None, dict[str, pd.DataFrame]]:
    """The study's scale (None for trainables) and its sweeps' manifests."""
    if study.trainers:
        return None, {
            f"{study.name}-{t}": plan.trainable_manifest(
                f"{study.name}-{t}", t, trials=study.trials or 64, seed=study.seed, epochs=study.scale.get("epochs"),
                sampler=study.sampler, space=study.space, imports=study.imports,
            )
            for t in study.trainers
        }  # fmt: skip
    scale = plan.choose_scale(study.preset, gpu, **study.scale)
    for m in study.models:
        if m not in models.names():
            raise UserError(f"unknown model {m!r}: register it in a module listed in imports; see `stability models`")
    sweeps = {}
    for m in study.models:
        for o in study.optimizers:
            name = f"{study.name}-{m}-{o}"
            sweeps[name] = plan.edf_manifest(
                name,
                m,
                o,
                scale,
                trials=plan.preset_trials(scale.preset, study.trials),
                seed=study.seed,
                sampler=study.sampler,
                space=study.space,
                imports=study.imports,
            )
    return scale, sweeps


def describe(study: Study, scale: plan.Scale, sweeps: dict[str, pd.DataFrame]) -> str:
    """The plan: what runs at which scale, and each sweep's space (lr and wd may be a family's)."""

    def space(manifest: pd.DataFrame) -> str:
        return ", ".join(f"{k}={dim}" for k, dim in space_from_json(manifest["space"].iloc[0]).items())

    if scale is None:
        lines = [
            f"study {study.name}: {len(study.trainers)} trainable(s), {study.trials or 64} trials each, "
            f"{study.sampler} sampler, seed {study.seed}"
        ]
    else:
        lines = [
            f"study {study.name}: {len(study.models)} model(s) x {len(study.optimizers)} optimizer(s), "
            f"{plan.preset_trials(scale.preset, study.trials)} trials each, {study.sampler} sampler, seed {study.seed}",
            f"scale: {scale.dataset}, {scale.image_size} px / patch {scale.patch_size}, {scale.epochs} epoch(s), "
            f"batch {scale.batch_size} (preset {scale.preset})",
        ]
    lines += [f"  {name:44} {len(m):>4} trials  {space(m)}" for name, m in sweeps.items()]
    return "\n".join(lines)


def run(args, check_only: bool = False) -> int:
    """``check_only``: every check that needs no cluster, then stop (`stability slurm`)."""
    study = read_study(args.file)
    args.imports = [*study.imports, *args.imports]
    if args.data_dir is None:
        args.data_dir = study.data_dir
    scale, sweeps = plan_study(study, gpu=False)  # every check that needs no cluster, first
    commands.resources_from(args, commands.NO_CLUSTER)
    if check_only:
        return 0
    if args.dry_run and (study.preset is not None or study.trainers):  # nothing the cluster decides
        print(describe(study, scale, sweeps))
        return 0

    def show(scale: plan.Scale | None, sweeps: dict, gpu: bool) -> None:
        print(describe(study, scale, sweeps))

    commands.launch(args, functools.partial(plan_study, study), show, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    return draw(args, list(sweeps), study.name)


def draw(args, names: list[str], study: str) -> int:
    """The comparison figure of the study's sweeps (whatever else the store holds)."""
    from analysis import figures
    from analysis.loading import load_trials

    trials = load_trials(args.results)
    mine = trials[trials["sweep"].isin(names)] if not trials.empty else trials
    if mine.empty:
        raise UserError(f"the study's sweeps have no results in {args.results}")
    fig = figures.figure_comparison(mine, n_resamples=args.resamples)
    print(f"wrote {figures.save(fig, args.out, study)}")
    return 0
