"""The one registry of models: the paper's zoo and a researcher's own register the same way.

A builder is ``fn(*, num_classes, image_size, in_chans, patch_size=None) -> nn.Module``,
registered under a name with the family that the sweep defaults (Table 4's optimum and
intervals) are looked up by. A user's module registers itself when it is imported
(``--import``); every trial process imports the same modules before it builds a model.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

Builder = Callable[..., nn.Module]

# Outputs that count as activations when a module has no analytic ``complexity()``: the same
# layer kinds the zoo's analytic counts sum (convs, linears and pooling, as pycls counts them).
MEASURED_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                   nn.AdaptiveMaxPool2d)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    stem: str
    build: Builder


class Registry:
    """The entries of one kind of thing (models, optimizers) by name, each registered once.

    Importing the same module again (a trial process importing a shipped copy of a user's
    file) re-registers the same builder, which is allowed; another builder under a taken name
    is an error. ``entries`` is the one dict of them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[str, Any] = {}

    def add(self, name: str, entry) -> None:
        """Register ``entry`` (it has a ``build`` function) under ``name``."""
        old = self.entries.get(name)
        if old is not None and _source(old.build) != _source(entry.build):
            raise ValueError(f"{self.kind} {name!r} is already registered (by {old.build.__module__})")
        self.entries[name] = entry

    def get(self, name: str):
        try:
            return self.entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.entries)}") from None

    def names(self) -> list[str]:
        return list(self.entries)

    def decorator(self, name: str, make: Callable[[Callable], Any]) -> Callable[[Callable], Callable]:
        """What each kind's ``register`` returns: a decorator that adds ``make(fn)`` under ``name``."""

        def decorate(fn: Callable) -> Callable:
            self.add(name, make(fn))
            return fn

        return decorate

    def hyperparameter_names(self) -> list[str]:
        """Every entry's hyperparameters (for optimizers and trainables: the store's columns that may hold them)."""
        return sorted({h for e in self.entries.values() for h in e.hyperparameters})


def _source(fn) -> tuple[str, str]:
    return fn.__module__, fn.__qualname__


_REGISTRY = Registry("model")
_ENTRIES: dict[str, Entry] = _REGISTRY.entries


def register(name: str, *, family: str, stem: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator: register ``fn`` as model ``name`` of ``family`` (``stem`` defaults to the family);
    once per name (``Registry``)."""
    if not name or not family:
        raise ValueError("a model needs a name and a family")
    return _REGISTRY.decorator(name, lambda fn: Entry(name, family, stem or family, fn))


entry: Callable[[str], Entry] = _REGISTRY.get
names: Callable[[], list[str]] = _REGISTRY.names


def family(name: str) -> str:
    return entry(name).family


def stem(name: str) -> str:
    return entry(name).stem


def create(
    name: str, *, num_classes: int = 1000, image_size: int = 224, patch_size: int | None = None, in_chans: int = 3
) -> nn.Module:
    """Build a registered model. ``patch_size`` (total stem stride) means something to ViTs only."""
    return entry(name).build(num_classes=num_classes, image_size=image_size, in_chans=in_chans, patch_size=patch_size)


def complexity(
    name: str, *, num_classes: int = 1000, image_size: int = 224, patch_size: int | None = None, in_chans: int = 3
) -> dict:
    """flops (multiply-adds), params and acts, and where they come from (``complexity_source``).

    ``analytic``: the module's own ``complexity()`` (the zoo). ``measured``: params by
    ``numel``, flops and acts from one forward pass of a single image (``measure``). Both on
    the meta device (no memory, no compute) where the model allows it, else on the CPU.
    """
    dims = dict(num_classes=num_classes, image_size=image_size, patch_size=patch_size, in_chans=in_chans)
    try:
        return _complexity(name, dims, "meta")
    except ValueError:
        raise  # the builder refuses these dimensions, on any device
    except Exception:  # an operation the meta device cannot run (a data-dependent step, .item())
        return _complexity(name, dims, "cpu")


class _SkipInitializers(TorchFunctionMode):
    """Skips ``torch.nn.init``'s fills while a model is built on the meta device, where they have
    nothing to fill. It also spares a command's start the 0.8 s import of torch._dynamo, which
    the meta kernel of ``normal_`` pulls in."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def _complexity(name: str, dims: dict, device: str) -> dict:
    with torch.device(device), _SkipInitializers() if device == "meta" else contextlib.nullcontext():
        model = create(name, **dims)
        if hasattr(model, "complexity"):
            cost = model.complexity()
            return {"flops": cost.flops, "params": cost.params, "acts": cost.acts, "complexity_source": "analytic"}
        image = torch.zeros(1, dims["in_chans"], dims["image_size"], dims["image_size"])
    return {**measure(model.eval(), image), "complexity_source": "measured"}


def measure(model: nn.Module, image: torch.Tensor) -> dict[str, int]:
    """Count one forward pass of ``image`` (a batch of one). FlopCounterMode counts 2 flops per
    multiply-add; the zoo's convention (and the paper's) counts multiply-adds, hence the halving.
    acts: the summed outputs of the ``MEASURED_LAYERS``, per image."""
    acts = 0

    def add_output(module, inputs, output) -> None:
        nonlocal acts
        acts += output[0].numel() if output.dim() > 1 else output.numel()  # per image (batch of one)

    hooks = [m.register_forward_hook(add_output) for m in model.modules() if isinstance(m, MEASURED_LAYERS)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(image)
    finally:
        for h in hooks:
            h.remove()
    return {"flops": counter.get_total_flops() // 2, "params": sum(p.numel() for p in model.parameters()), "acts": acts}


def import_module(spec: str) -> str:
    """Import a user's module: a ``.py`` file (loaded under its file name) or a dotted module on
    the path. Returns the module's name; a file already loaded is not executed twice."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        module_name = path.stem
        loaded = sys.modules.get(module_name)
        if loaded is not None:
            if Path(getattr(loaded, "__file__", "") or "").resolve() != path:
                raise ImportError(
                    f"{spec}: a different module named {module_name!r} is already loaded; rename the file"
                )
            return module_name
        if not path.is_file():
            raise ImportError(f"no such file {spec!r}")
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot import {spec!r} as a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[module_name] = module
        try:
            loader_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module_name
    importlib.import_module(spec)
    return spec


def import_in_worker(spec: str) -> str:
    """In a trial process: a file import by path where this node has the file, else the copy
    Ray shipped under the file's module name (``runtime_env`` ``py_modules``)."""
    if (spec.endswith(".py") or "/" in spec) and not Path(spec).is_file():
        stem = Path(spec).stem
        try:
            return import_module(stem)
        except ModuleNotFoundError as e:
            if e.name != stem:
                raise
            raise ImportError(f"no such file {spec!r} (nor a copy shipped as module {stem!r})") from None
    return import_module(spec)
