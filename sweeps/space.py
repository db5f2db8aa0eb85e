"""Search spaces over recipe hyperparameters, and the seeded manifest draws of an Optuna sampler.

A space maps sweepable field names (``store.schema.SWEEPABLE``, and the sweep's optimizer's
hyperparameters) to dimensions (``store.space``): from ``--space NAME=DIST`` flags, a ``[space]``
table of a TOML file, or the optimizer's default (lr, wd) intervals of the model's family
(Table 4's for the paper's pair). One sampler draws every dimension of the
whole manifest at once, seeded, so a sweep's trials are fixed before any of them runs.
"""

from __future__ import annotations

import math
import tomllib
import warnings
from pathlib import Path

import optuna

from stability import optimizers, recipe, trainables
from stability.errors import UserError
from store.schema import SWEEPABLE
from store.space import Dimension, parse_dimension, quiet_optuna

SAMPLERS = ("random", "sobol", "grid")
Space = dict[str, Dimension]


def parse_range(text: str, flag: str) -> tuple[float, float]:
    """'A,B' with 0 < A < B, both finite."""
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"{flag} must be two numbers 'A,B', got {text!r}") from None
    if not (0 < lo < hi < float("inf")):
        raise UserError(f"{flag} must satisfy 0 < A < B (log-uniform), got {text!r}")
    return lo, hi


def dimension(name: str, text: str, where: str) -> Dimension:
    """One checked dimension: a sweepable field, a valid DIST, values the field may take. An
    optimizer's hyperparameter is checked against the sweep's optimizer (``check_optimizer_space``)."""
    hyper = optimizers.hyperparameter_names()
    own = trainables.hyperparameter_names()
    if name not in SWEEPABLE and name not in hyper and name not in own:
        raise UserError(
            f"{where}: {name!r} cannot be swept; sweepable: {', '.join(SWEEPABLE)}, the optimizers' "
            f"hyperparameters ({', '.join(hyper)}; see `stability optimizers`)"
            + (f", and the trainables' ({', '.join(own)})" if own else "")
        )
    try:
        dim = parse_dimension(text)
    except ValueError as e:
        raise UserError(f"{where}: {name}: {e}") from None
    if name not in SWEEPABLE:
        return dim
    if SWEEPABLE[name] is int and dim.kind in ("log", "uniform"):
        raise UserError(f"{where}: {name} takes integers: use int:A,B or choice:a|b")
    if SWEEPABLE[name] is bool and dim.kind != "choice":
        raise UserError(f"{where}: {name} is true or false: use choice:true|false")
    for value in dim.values():
        problem = recipe.field_problem(name, int(value) if dim.kind == "int" else value)
        if problem:
            raise UserError(f"{where}: {problem}")
    return dim


def parse_space_flags(items: list[str] | None) -> Space:
    """``--space NAME=DIST`` flags (repeatable)."""
    space: Space = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--space takes NAME=DIST (e.g. lr=log:1e-4,1e-2), got {item!r}")
        space[name.strip()] = dimension(name.strip(), text.strip(), "--space")
    return space


def read_toml(path: str | Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"no such file {str(path)!r}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"{path}: not a readable TOML file ({e})") from None


def space_from_table(table, where: str) -> Space:
    """A ``[space]`` table: ``name = "DIST"`` per line."""
    if not isinstance(table, dict):
        raise UserError(f'{where}: [space] must be a table of name = "DIST"')
    space: Space = {}
    for name, text in table.items():
        if not isinstance(text, str):
            raise UserError(f'{where}: {name} = {text!r}: write the distribution as a string, e.g. "log:1e-4,1e-2"')
        space[name] = dimension(name, text, where)
    return space


def read_space_file(path: str | Path) -> Space:
    """``--space-file FILE.toml``: its ``[space]`` table."""
    doc = read_toml(path)
    if "space" not in doc:
        raise UserError(f"{path}: no [space] table")
    return space_from_table(doc["space"], str(path))


def check_optimizer_space(space: Space, optim: str) -> None:
    """Every dimension that is not a trial field is a hyperparameter of ``optim``, of its type,
    with both ends (every choice) values it may take."""
    for name, dim in space.items():
        if name not in SWEEPABLE:
            check_registered(optimizers, optim, name, dim)


def check_registered(registry, owner: str, name: str, dim: Dimension) -> None:
    """A dimension over a hyperparameter of a registered optimizer or trainable (``registry``: its
    module): both ends (every choice) pass the hyperparameter's rule, and the kind fits its type."""
    for value in dim.values():
        problem = registry.problem(owner, name, int(value) if dim.kind == "int" else value)
        if problem:
            raise UserError(f"space: {problem}")
    kind = registry.entry(owner).hyperparameters[name].kind
    if kind is int and dim.kind in ("log", "uniform"):
        raise UserError(f"space: {owner} {name} takes integers: use int:A,B or choice:a|b")
    if kind is bool and dim.kind != "choice":
        raise UserError(f"space: {owner} {name} is true or false: use choice:true|false")


def check_trainable_space(space: Space, trainer: str) -> None:
    """Every dimension is a hyperparameter of the trainable (or its epochs), of its type, with both
    ends (every choice) values its rule allows."""
    for name, dim in space.items():
        if name != "epochs":
            check_registered(trainables, trainer, name, dim)
        elif dim.kind in ("log", "uniform") or min(dim.values()) < 1:
            raise UserError("space: epochs takes integers >= 1: use int:A,B or choice:a|b")


def complete_space(space: Space, model: str, family: str, optim: str, default=None) -> Space:
    """The space with lr and wd first, log-uniform over ``default`` ((lr lo, hi), (wd lo, hi): a
    preset's own) or else the optimizer's default intervals of the family (Table 4's for the
    paper's pair), wherever the space leaves them out. Without default intervals both must be
    given. Every other dimension is a trial field or a hyperparameter of ``optim``."""
    check_optimizer_space(space, optim)
    missing = [p for p in ("lr", "wd") if p not in space]
    default = default or optimizers.entry(optim).interval(family)
    if missing and default is None:
        raise UserError(
            f"{model} is of family {family!r}, for which {optim} has no default lr/wd interval: give its space "
            f"with --space lr=log:A,B --space wd=log:C,D (or --lr-range/--wd-range, or [space] in a study file)"
        )
    table = dict(zip(("lr", "wd"), default or ((), ()), strict=True))
    lead = {p: space.get(p) or Dimension("log", *table[p]) for p in ("lr", "wd")}
    return {**lead, **{k: v for k, v in space.items() if k not in lead}}


def grid_size(space: Space) -> int:
    """The number of points of a space of choices (``--sampler grid`` trains each once)."""
    ranges = [name for name, dim in space.items() if dim.kind != "choice"]
    if ranges:
        raise UserError(
            f"--sampler grid needs every dimension as choice:a|b|c; {', '.join(ranges)} "
            f"{'is a range' if len(ranges) == 1 else 'are ranges'} (give lr and wd as choices too)"
        )
    return math.prod(len(dim.choices) for dim in space.values())


def make_sampler(kind: str, seed: int, space: Space | None = None) -> optuna.samplers.BaseSampler:
    if kind == "grid":
        return optuna.samplers.GridSampler({name: list(dim.choices) for name, dim in (space or {}).items()}, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "sobol":  # experimental: draw() ignores its ExperimentalWarning
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    raise UserError(f"unknown sampler {kind!r}; choose {' or '.join(SAMPLERS)}")


def draw(space: Space, n: int, seed: int, sampler: str = "random") -> list[dict]:
    """n points of the space, every dimension drawn by one sampler seeded with ``seed``.

    A Sobol sampler covers the numeric dimensions jointly; choices are drawn independently
    (Optuna's QMC sampler does so for categorical dimensions). The grid sampler visits every
    point of a space of choices once, in a seeded order; ``n`` is then the grid's size.
    """
    if sampler == "grid":
        n = grid_size(space)
    if n < 1:
        raise UserError(f"--trials must be at least 1, got {n}")
    distributions = {name: dim.distribution() for name, dim in space.items()}
    points = []
    with warnings.catch_warnings(), quiet_optuna():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # QMC: "categorical dimensions sampled independently"
        study = optuna.create_study(sampler=make_sampler(sampler, seed, space))
        for _ in range(n):
            trial = study.ask(distributions)
            points.append(dict(trial.params))
            if sampler != "grid":  # the grid counts running trials as visited; its last tell would stop the study
                study.tell(trial, 0.0)  # QMC sampling moves on only past finished trials
    return points
