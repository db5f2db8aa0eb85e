"""The checkpoint format: one file per trial, written whole, read back on any device.

A single run and each population member write the same layout (``trial_state``), so a trial
resumes from its last epoch alone or in any population. Format 1 (torch's positional optimizer
state) still loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from store import set_aside
from store.files import write_atomic

CHECKPOINT = "last.pt"
CHECKPOINT_FORMAT = 2  # per-trial, optimizer state by parameter name (``trial_state``)


def trial_state(*, identity: str, epoch: int, model: dict, ema: dict, optimizer: dict, stream: dict, curve: list,
                wall: float, status: str = "ok", diverged_epoch: int | None = None,
                optimizer_groups: list[dict] | None = None) -> dict:  # fmt: skip
    """One trial's checkpoint: weights and EMA as state dicts, the optimizer's state per parameter
    *name* (not torch's positional index, which depends on how groups were built), its groups'
    settings (where an optimizer keeps state there: Schedule-Free's step count and mode), the
    data stream's generators, and the curve so far. A single run and each population member
    write this same layout, so a trial continues from its last epoch whatever pack it resumes in."""
    return {
        "format": CHECKPOINT_FORMAT,
        "identity": identity,
        "epoch": epoch,
        "model": model,
        "ema": ema,
        "optimizer": optimizer,
        "optimizer_groups": optimizer_groups,
        **stream,
        "curve": curve,
        "wall": wall,
        "status": status,
        "diverged_epoch": diverged_epoch,
    }


def optimizer_index_names(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[int, str]:
    """torch's state-dict index of each parameter (its position across the groups) -> its name."""
    name_of = {id(p): n for n, p in model.named_parameters()}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return {i: name_of[id(p)] for i, p in enumerate(params)}


def optimizer_state_dict(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, by_name: dict, groups: list[dict] | None = None
) -> dict:
    """The optimizer's state dict with its per-parameter state taken from a checkpoint keyed by
    name, and its groups' saved settings where the checkpoint has them; torch's own
    ``load_state_dict`` then places each value (device, dtype, CPU steps)."""
    current = optimizer.state_dict()
    if "param_groups" in by_name:  # a checkpoint written before per-name states: torch's own layout
        return by_name
    index = {n: i for i, n in optimizer_index_names(optimizer, model).items()}
    param_groups = current["param_groups"]
    if groups is not None and len(groups) == len(param_groups):
        param_groups = [
            {**g, **{k: v for k, v in saved.items() if k not in DEVICE_SETTINGS}}
            for saved, g in zip(groups, param_groups, strict=True)
        ]
    return {"state": {index[n]: s for n, s in by_name.items()}, "param_groups": param_groups}


# Group settings that say how a step runs on this device, not what the optimizer has learned: a
# checkpoint from a GPU resumes on a CPU with the CPU's.
DEVICE_SETTINGS = {"params", "fused", "foreach", "capturable", "differentiable"}


def save_checkpoint(state: dict, folder: Path) -> None:
    """Write atomically and durably: fsynced under a temporary name, then renamed into place, so
    a crash mid-write leaves the previous checkpoint."""
    write_atomic(folder / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(folder: Path, identity: str, *, quarantine: Path | None = None) -> dict | None:
    """The folder's checkpoint (on the CPU; loading copies it where it belongs) if it belongs to
    ``identity``; None if there is none or it is another run's. One that cannot be read is set
    aside in ``quarantine`` (default: ``quarantine/`` beside the folder) with one line, and the
    trial restarts from epoch 0: a torn or corrupt file must never fail a trial for good."""
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "identity" not in state or "epoch" not in state:
            raise ValueError("not a checkpoint")
    except OSError:
        raise  # a transient read error (NFS): the attempt fails, and its retry reads the file again
    except Exception as e:  # what a torn or overwritten file raises varies (EOF, the zip reader, the unpickler)
        aside = set_aside(path, quarantine or folder.parent / "quarantine")
        print(
            f"unreadable checkpoint {path} ({type(e).__name__}) set aside in {aside}; "
            f"{folder.name} restarts from epoch 0",
            file=sys.stderr,
            flush=True,
        )
        return None
    return state if state["identity"] == identity else None
