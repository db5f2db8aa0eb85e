"""A search space's dimensions, as a user writes them and as the store keeps them.

A dimension is written ``log:A,B`` (log-uniform), ``uniform:A,B``, ``int:A,B`` (integers,
both ends included) or ``choice:a|b|c``; the store keeps a sweep's space as JSON in the
``space`` column, ``{"lr": ["log", A, B], "autoaugment": ["choice", [true, false]]}``, from
which analysis rebuilds the Optuna distributions (importance needs them).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

KINDS = ("log", "uniform", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple = ()

    def distribution(self):
        """The Optuna distribution that draws (and rebuilds) this dimension."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "choice":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high))
        return FloatDistribution(self.low, self.high, log=self.kind == "log")

    def values(self) -> list:
        """The values a field may take: the ends of a range, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def to_json(self) -> list:
        if self.kind == "choice":
            return ["choice", list(self.choices)]
        if self.kind == "int":
            return ["int", int(self.low), int(self.high)]
        return [self.kind, self.low, self.high]

    def __str__(self) -> str:
        if self.kind == "choice":
            return "choice:" + "|".join(json.dumps(v) if isinstance(v, bool) else str(v) for v in self.choices)
        return f"{self.kind}:{self.to_json()[1]:g},{self.to_json()[2]:g}"


def choice_value(text: str):
    """A choice as written: true/false, an integer, a number, else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_dimension(text: str) -> Dimension:
    """``KIND:ARGS``; a ValueError says what is wrong."""
    kind, sep, args = text.partition(":")
    if not sep or kind not in KINDS:
        raise ValueError(f"{text!r} is not one of log:A,B  uniform:A,B  int:A,B  choice:a|b|c")
    if kind == "choice":
        choices = tuple(choice_value(v) for v in args.split("|") if v.strip())
        if not choices or len(set(map(repr, choices))) != len(choices):
            raise ValueError(f"{text!r}: choice needs one or more distinct values a|b|c")
        return Dimension("choice", choices=choices)
    parts = args.split(",")
    try:
        low, high = (int(p) if kind == "int" else float(p) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r}: {kind} needs two {'integers' if kind == 'int' else 'numbers'} A,B") from None
    if not (math.isfinite(low) and math.isfinite(high)) or (low > high if kind == "int" else low >= high):
        raise ValueError(f"{text!r}: needs A < B (A <= B for int), both finite")
    if kind == "log" and low <= 0:
        raise ValueError(f"{text!r}: log needs 0 < A < B")
    return Dimension(kind, float(low), float(high))


def from_json(value: list) -> Dimension:
    kind = value[0]
    if kind == "choice":
        return Dimension("choice", choices=tuple(value[1]))
    return Dimension(kind, float(value[1]), float(value[2]))


def space_to_json(space: dict[str, Dimension]) -> str:
    return json.dumps({name: dim.to_json() for name, dim in space.items()})


def space_from_json(text: str) -> dict[str, Dimension]:
    return {name: from_json(value) for name, value in json.loads(text).items()}


def stored_space(rows) -> dict[str, Dimension]:
    """The space a sweep's rows (a DataFrame) were drawn from: the ``space`` column it stored; for
    stores written before the space was recorded, lr and wd over what was drawn (log-uniform, as
    Table 4 samples them; uniform where a value is not positive)."""
    stored = rows["space"].dropna() if "space" in rows else []
    if len(stored):
        return space_from_json(stored.iloc[0])
    space = {}
    for name in ("lr", "wd"):
        values = rows[name].astype(float).dropna() if name in rows else []
        if len(values):
            low, high = float(values.min()), float(values.max())
            space[name] = Dimension("log" if low > 0 else "uniform", low, high)
    return space


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs each study it creates or loads; the commands say what they did themselves.
    Its log level is restored after, for a caller (a notebook) that has set its own."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
