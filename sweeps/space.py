"""Search spaces (Table 4) and the seeded (lr, wd) manifest drawn by an Optuna sampler."""

from __future__ import annotations

import warnings

import optuna

from stability.errors import UserError

SAMPLERS = ("random", "sobol")


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


def make_sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "sobol":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    raise UserError(f"unknown sampler {kind!r}; choose {' or '.join(SAMPLERS)}")


def draw_pairs(
    lr_range: tuple[float, float], wd_range: tuple[float, float], n: int, seed: int, sampler: str = "random"
) -> list[tuple[float, float]]:
    """n (lr, wd) pairs, each log-uniform and independent, from a sampler seeded with ``seed``."""
    if n < 1:
        raise UserError(f"--trials must be at least 1, got {n}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {
        "lr": optuna.distributions.FloatDistribution(*lr_range, log=True),
        "wd": optuna.distributions.FloatDistribution(*wd_range, log=True),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(sampler=make_sampler(sampler, seed))
        pairs = []
        for _ in range(n):
            trial = study.ask(space)
            pairs.append((trial.params["lr"], trial.params["wd"]))
            study.tell(trial, 0.0)  # QMC sampling moves on only past finished trials
    return pairs
