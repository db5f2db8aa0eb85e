"""The one registry of optimizers: the paper's SGD and AdamW, Muon, Lion, Schedule-Free AdamW and a
researcher's own register the same way.

An entry is a builder ``fn(groups, *, lr, schedule, **hyperparameters) -> torch.optim.Optimizer``
registered under a name with what a sweep needs to know of it: its hyperparameters (defaults and
the one rule that checks a run's value and both ends of a space), how its lr scales with the
batch, its default lr/wd intervals per model family (where known), which parameters it decays
(its group policy), and whether it brings its own schedule or train/eval modes. A user's module
registers its optimizers when imported (``--import``), in every trial process, as models do.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from models.registry import Registry
from stability import recipe
from stability.paper import FAMILY_INTERVALS, INTERVALS
from store.schema import reserved_columns

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.LayerNorm, nn.GroupNorm)
# How an lr given at batch 2048 (Table 4's normalization) becomes the lr at the batch used: the
# paper's linear rule, the square-root rule often used for Adam-type optimizers, or none (the
# lr is used as given, at any batch).
LR_SCALINGS = ("linear", "sqrt", "none")
# The update rules ``stability.population`` writes out for K members at once.
POPULATION_RULES = ("sgd", "adamw")


@dataclass(frozen=True)
class Hyperparameter:
    """One sweepable hyperparameter of an optimizer: its default, its type (float, int or bool),
    and what values it may take (``rule`` says it in words, ``ok`` checks it)."""

    default: float | int | bool
    rule: str
    ok: Callable[[object], bool]
    kind: type = float


def unit(default: float) -> Hyperparameter:
    """A coefficient in [0, 1): momentum, a beta."""
    return Hyperparameter(default, "a number in [0, 1)", lambda v: recipe.finite_number(v) and 0 <= v < 1)


def count(default: int, low: int = 1) -> Hyperparameter:
    """An integer >= ``low``: Newton-Schulz steps."""
    return Hyperparameter(
        default, f"an integer >= {low}", lambda v: recipe.finite_number(v) and v >= low and float(v).is_integer(), int
    )


@dataclass(frozen=True)
class Schedule:
    """What a builder may need of the run's schedule (an optimizer that brings its own)."""

    warmup_steps: int
    total_steps: int


Builder = Callable[..., torch.optim.Optimizer]
# A group policy: (model, wd) -> torch param groups; each group may carry a "role" (which
# optimizer of a hybrid takes it; default: the entry's name), recorded in the trial row.
GroupPolicy = Callable[[nn.Module, float], list[dict]]


def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Parameter names with and without weight decay: the paper's policy, no decay on norms and biases."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            if isinstance(module, NORM_TYPES) or name == "bias":
                no_decay.add(f"{module_name}.{name}" if module_name else name)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    return [n for n in names if n not in no_decay], [n for n in names if n in no_decay]


def decay_groups(model: nn.Module, wd: float) -> list[dict]:
    """The paper's groups: weights decayed by ``wd``; norms and biases not decayed."""
    params = dict(model.named_parameters())
    decay, no_decay = decay_split(model)
    return [
        {"params": [params[n] for n in decay], "weight_decay": wd},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]


def classifier(model: nn.Module) -> nn.Module | None:
    """The layer that produces the logits: the model's last ``nn.Linear`` (every model of the zoo
    ends in one; a model may name another by a ``classifier`` attribute)."""
    named = getattr(model, "classifier", None)
    if isinstance(named, nn.Module):
        return named
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def hybrid_groups(model: nn.Module, wd: float) -> list[dict]:
    """Muon's groups: the 2-D weight matrices of hidden linear layers go to Muon; everything else
    (the stem's convolutions, embeddings and tokens, norms, biases, the classifier) to AdamW,
    with the paper's decay policy on both."""
    head = classifier(model)
    head_params = {id(p) for p in head.parameters()} if head is not None else set()
    hidden = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, nn.Linear) and m is not head and m.weight.ndim == 2 and m.weight.requires_grad
    }
    groups = []
    for group in decay_groups(model, wd):
        muon = [p for p in group["params"] if id(p) in hidden and id(p) not in head_params]
        rest = [p for p in group["params"] if id(p) not in hidden or id(p) in head_params]
        groups += [{**group, "params": muon, "role": "muon"}, {**group, "params": rest, "role": "adamw"}]
    return [g for g in groups if g["params"]]


@dataclass(frozen=True)
class Entry:
    name: str
    build: Builder
    hyperparameters: dict[str, Hyperparameter]
    lr_scaling: str  # LR_SCALINGS: "linear" or "sqrt" (lr given at batch 2048), "none" (used as given)
    intervals: dict[str, tuple[tuple[float, float], tuple[float, float]]]  # "vit" / "cnn" -> (lr, wd) ranges
    source: str  # where the intervals come from
    groups: GroupPolicy = decay_groups
    own_schedule: bool = False  # the trainer holds the lr constant; the optimizer schedules itself
    modes: bool = False  # optimizer.train() / .eval() around training and evaluation (Schedule-Free)
    vectorized: bool = False  # stability.population trains several trials of it as one population
    recipe: dict = field(default_factory=dict)  # recipe fields whose default this optimizer changes
    about: str = ""

    def defaults(self) -> dict:
        return {k: h.default for k, h in self.hyperparameters.items()}

    def interval(self, family: str) -> tuple[tuple[float, float], tuple[float, float]] | None:
        """The default (lr, wd) intervals for a model family (its kind, as Table 4 groups families), or None."""
        kind = FAMILY_INTERVALS.get(family)
        return self.intervals.get(kind) if kind else None

    def scaled_lr(self, lr: float, batch_size: int) -> float:
        """The lr used at ``batch_size`` under this entry's rule (``LR_SCALINGS``)."""
        if self.lr_scaling == "linear":
            return recipe.scaled_lr(lr, batch_size)
        if self.lr_scaling == "sqrt":
            return lr * math.sqrt(batch_size / recipe.REFERENCE_BATCH)
        return lr


_REGISTRY = Registry("optimizer")
_ENTRIES: dict[str, Entry] = _REGISTRY.entries


def register(
    name: str,
    *,
    hyperparameters: dict[str, Hyperparameter] | None = None,
    lr_scaling: str = "linear",
    intervals: dict | None = None,
    source: str = "",
    groups: GroupPolicy = decay_groups,
    own_schedule: bool = False,
    modes: bool = False,
    vectorized: bool = False,
    recipe: dict | None = None,
    about: str = "",
) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn`` as optimizer ``name``, once per name (``models.registry.Registry``,
    as models are).
    ``intervals``: {"vit": ((lr lo, hi), (wd lo, hi)), "cnn": ...}; without them a sweep of this
    optimizer must be given its lr and wd space."""
    if not name:
        raise ValueError("an optimizer needs a name")
    if lr_scaling not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {', '.join(LR_SCALINGS)}, got {lr_scaling!r}")
    clash = sorted(set(hyperparameters or {}) & reserved_columns())
    if clash:
        raise ValueError(f"optimizer {name!r}: hyperparameter name(s) {', '.join(clash)} are trial columns")
    if vectorized and name not in POPULATION_RULES:
        raise ValueError(f"optimizer {name!r}: only {', '.join(POPULATION_RULES)} have a population path")

    return _REGISTRY.decorator(name, lambda fn: Entry(
        name, fn, dict(hyperparameters or {}), lr_scaling, dict(intervals or {}), source, groups,
        own_schedule, modes, vectorized, dict(recipe or {}), about,
    ))  # fmt: skip


entry: Callable[[str], Entry] = _REGISTRY.get
names: Callable[[], list[str]] = _REGISTRY.names
hyperparameter_names: Callable[[], list[str]] = _REGISTRY.hyperparameter_names


def owners(hyperparameter: str) -> list[str]:
    """The registered optimizers that have ``hyperparameter``."""
    return [e.name for e in _ENTRIES.values() if hyperparameter in e.hyperparameters]


def problem(optim: str, name: str, value) -> str | None:
    """Why ``value`` cannot be hyperparameter ``name`` of ``optim``, or None if it can."""
    hyper = entry(optim).hyperparameters
    if name not in hyper:
        mine = ", ".join(hyper) or "none"
        others = owners(name)
        where = f" (it belongs to {', '.join(others)})" if others else ""
        return f"{name!r} is not a hyperparameter of {optim}{where}; {optim}'s: {mine}"
    h = hyper[name]
    return None if h.ok(value) else f"{optim} {name} must be {h.rule}, got {value!r}"


def build(
    optim: str, model: nn.Module, *, lr: float, wd: float, schedule: Schedule, values: dict, fused: bool = False
) -> torch.optim.Optimizer:
    """The run's optimizer over the model's groups (the entry's policy), its hyperparameters
    at ``values`` over the entry's defaults; ``fused`` goes to a builder that takes it."""
    e = entry(optim)
    extra = {"fused": True} if fused and "fused" in inspect.signature(e.build).parameters else {}
    return e.build(e.groups(model, wd), lr=lr, schedule=schedule, **{**e.defaults(), **values}, **extra)


def group_summary(optimizer: torch.optim.Optimizer, optim: str) -> list[dict]:
    """Which parameters each optimizer got and whether they are decayed: one record per group."""
    return [
        {
            "role": g.get("role", optim),
            "decay": bool(g["weight_decay"] > 0),  # a wd read from a manifest is a numpy number
            "tensors": len(g["params"]),
            "params": int(sum(p.numel() for p in g["params"])),
        }
        for g in optimizer.param_groups
    ]


class Hybrid:
    """Two optimizers over disjoint groups that step together and look like one to the trainer:
    ``param_groups`` and the positional state dict run over the first's groups, then the
    second's, so the checkpoint (state per parameter name) treats it like any other optimizer.
    Written here because torch has no optimizer that chains two update rules."""

    def __init__(self, first: torch.optim.Optimizer, second: torch.optim.Optimizer) -> None:
        self.parts = [first, second]

    @property
    def param_groups(self) -> list[dict]:
        """The parts' groups as they are now (loading a state dict replaces a part's group dicts)."""
        return self.parts[0].param_groups + self.parts[1].param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    def _sizes(self) -> list[int]:
        return [sum(len(g["params"]) for g in part.param_groups) for part in self.parts]

    def state_dict(self) -> dict:
        first, second = (part.state_dict() for part in self.parts)
        offset = self._sizes()[0]
        state = {**first["state"], **{i + offset: s for i, s in second["state"].items()}}
        groups = first["param_groups"] + [
            {**g, "params": [i + offset for i in g["params"]]} for g in second["param_groups"]
        ]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        offset = self._sizes()[0]
        split = len(self.parts[0].param_groups)
        groups = state_dict["param_groups"]
        first = {k: v for k, v in state_dict["state"].items() if k < offset}
        second = {k - offset: v for k, v in state_dict["state"].items() if k >= offset}
        self.parts[0].load_state_dict({"state": first, "param_groups": groups[:split]})
        self.parts[1].load_state_dict(
            {
                "state": second,
                "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in groups[split:]],
            }
        )


# --- the built-in optimizers ----------------------------------------------------------------------

VIT_ADAMW, CNN_ADAMW = INTERVALS["vit"]["adamw"], INTERVALS["cnn"]["adamw"]
TABLE4 = "Table 4 of Xiao et al. (2021)"


@register(
    "sgd",
    hyperparameters={"momentum": unit(0.9)},
    intervals={"vit": INTERVALS["vit"]["sgd"], "cnn": INTERVALS["cnn"]["sgd"]},
    source=TABLE4,
    vectorized=True,
    about="the paper's SGD: Nesterov momentum, wd on weights only",
)
def sgd(groups, *, lr, schedule, momentum, fused=False):
    extra = {"fused": True} if fused else {}
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0, **extra)


@register(
    "adamw",
    hyperparameters={"beta2": unit(0.999)},
    intervals={"vit": VIT_ADAMW, "cnn": CNN_ADAMW},
    source=TABLE4,
    vectorized=True,
    about="the paper's AdamW: betas (0.9, beta2), wd on weights only",
)
def adamw(groups, *, lr, schedule, beta2, fused=False):
    extra = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), **extra)


def _scaled(interval, lr_factor: float, wd_factor: float):
    (lr_lo, lr_hi), (wd_lo, wd_hi) = interval
    return (lr_lo * lr_factor, lr_hi * lr_factor), (wd_lo * wd_factor, wd_hi * wd_factor)


@register(
    "muon",
    hyperparameters={"momentum": unit(0.95), "ns_steps": count(5), "beta2": unit(0.999)},
    # lr is matched to AdamW's update RMS (torch's "match_rms_adamw"), so AdamW's intervals carry over
    intervals={"vit": VIT_ADAMW, "cnn": CNN_ADAMW},
    source="AdamW's Table 4 intervals (Muon's lr matched to AdamW's update RMS); see docs/optimizers.md",
    groups=hybrid_groups,
    about="torch.optim.Muon on hidden 2-D weight matrices (Nesterov, Newton-Schulz); AdamW on the rest",
)
def muon(groups, *, lr, schedule, momentum, ns_steps, beta2):
    matrices = [g for g in groups if g["role"] == "muon"]
    rest = torch.optim.AdamW([g for g in groups if g["role"] != "muon"], lr=lr, betas=(0.9, beta2))
    if not matrices:  # a CNN without hidden linear layers: AdamW alone (its rows' param_groups say so)
        return rest
    first = torch.optim.Muon(matrices, lr=lr, momentum=momentum, ns_steps=int(ns_steps), adjust_lr_fn="match_rms_adamw")
    return Hybrid(first, rest)


@register(
    "lion",
    hyperparameters={"beta1": unit(0.9), "beta2": unit(0.99)},
    # The Lion paper's rule: lr 3-10x below AdamW's and wd 3-10x above, keeping lr x wd
    intervals={"vit": _scaled(VIT_ADAMW, 0.1, 10), "cnn": _scaled(CNN_ADAMW, 0.1, 10)},
    source="AdamW's Table 4 intervals with lr / 10 and wd x 10 (Chen et al. 2023's rule); see docs/optimizers.md",
    about="Lion (lion-pytorch): the sign of an interpolated momentum; decoupled wd",
)
def lion(groups, *, lr, schedule, beta1, beta2):
    from lion_pytorch import Lion

    return Lion(groups, lr=lr, betas=(beta1, beta2))


@register(
    "schedulefree_adamw",
    hyperparameters={"beta1": unit(0.9), "beta2": unit(0.999)},
    # its authors' advice: 1-10x the lr of a scheduled AdamW; the geometric middle, x sqrt(10)
    intervals={"vit": _scaled(VIT_ADAMW, math.sqrt(10), 1), "cnn": _scaled(CNN_ADAMW, math.sqrt(10), 1)},
    source="AdamW's Table 4 intervals with lr x sqrt(10) (the schedulefree authors' 1-10x advice); "
    "see docs/optimizers.md",
    own_schedule=True,
    modes=True,
    recipe={"ema": False},
    about="Schedule-Free AdamW (schedulefree): no cosine (its own averaging; warm-up as the recipe's); "
    "evaluated at its averaged weights, no model EMA unless asked",
)
def schedulefree_adamw(groups, *, lr, schedule, beta1, beta2):
    from schedulefree import AdamWScheduleFree

    return AdamWScheduleFree(groups, lr=lr, betas=(beta1, beta2), warmup_steps=schedule.warmup_steps)
