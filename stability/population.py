"""Population training: K trials of one architecture that differ only in (lr, wd), as one batched model.

The trials of a sweep share their seed, so they start from the same weights and see the same
batches, in the same order, with the same augmentation. A population draws each batch once
and trains its K members on it together, every layer as one batched kernel over the member
dimension, so each kernel launch does K times the work: ViTs through the packed kernels of
``stability.packed`` (compiled with ``--compile``), other models under ``torch.func.vmap``.
Small models on a large GPU are bound by launches and per-step overheads, not by FLOPs, which
is where packing wins. Each member's curve equals its separate run up to floating-point
rounding (tests/test_population.py checks this against ``train`` on the CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from models.vit import Attention
from stability import optimizers, packed, recipe
from stability.checkpoint import load_checkpoint, save_checkpoint, trial_state
from stability.config import TrainConfig
from stability.data import FolderData, TensorData
from stability.distributed import swap_batchnorm
from stability.errors import UserError
from stability.stream import Stream
from stability.trainer import CompiledOrEager, TrainResult, initial_model, load_data, resolve_device, result_row
from store.schema import PER_MEMBER

BETA1, EPS = 0.9, 1e-8  # AdamW's constants in the "adamw" entry; momentum and beta2 come from the config


def check_population(cfgs: list[TrainConfig]) -> None:
    """Members must agree on everything that defines a run except the per-member fields."""
    if not cfgs:
        raise UserError("a population needs at least one trial")
    shared = [{k: v for k, v in c.identity().items() if k not in PER_MEMBER} for c in cfgs]
    if any(s != shared[0] for s in shared):
        raise UserError(
            "population members must share model, optimizer, data, schedule and seed; only lr and wd may differ"
        )
    if cfgs[0].optim not in optimizers.POPULATION_RULES:
        raise UserError(f"{cfgs[0].optim} has no population path; train its trials one at a time")
    if cfgs[0].accumulate > 1:
        raise UserError("populations do not accumulate gradients; train these trials one at a time")
    ids = [c.trial_id for c in cfgs]
    if len(set(ids)) != len(ids):
        raise UserError("population members need distinct trial ids")


class FloatBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm on an input of its statistics' dtype. Under vmap on CUDA, batch norm rejects a
    bf16 input with float32 running statistics (an H100 reported it); without vmap it takes the
    mix, so the only change is that its output stays float32 until the next autocast layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.to(self.running_var.dtype))


class Population:
    """K members' weights, BN buffers, EMA and optimizer state, each stored as one flat tensor.

    The flat layout holds each parameter as a contiguous [K, *shape] block, so the model sees
    ordinary stacked weights while the optimizer and the EMA update every member's every
    parameter in a handful of elementwise kernels. The update rules are written out here
    because torch.optim takes one lr and wd per parameter group, not one per member; they
    follow torch.optim.SGD (Nesterov) and torch.optim.AdamW step for step.
    """

    def __init__(
        self, cfgs: list[TrainConfig], data: TensorData | FolderData, device: torch.device, *, pack_kernels: bool = True
    ) -> None:
        self.cfgs, self.device, self.k = cfgs, device, len(cfgs)
        cfg = cfgs[0]
        self.stream = Stream(cfg, data, device)
        self.data, self.batch, self.steps_per_epoch = self.stream.data, self.stream.batch, self.stream.steps_per_epoch
        self.model = initial_model(cfg, data, device)  # each member's separate run starts here too
        self.packed = pack_kernels and packed.supports(self.model)
        forward = packed.PackedViT(self.model, self.k) if self.packed else self._vmapped()
        # vmap is not compiled: the packed kernels are the path tested under torch.compile
        self.forward = CompiledOrEager(forward) if cfg.compile and self.packed else forward
        self.layout, self.flat, self.base_lr, self.wd = self._flatten()
        # Each parameter is a leaf view into ``flat`` whose .grad is the matching view of
        # ``flat_grad``: backward accumulates in place, straight into the flat gradient.
        self.flat_grad = torch.zeros_like(self.flat)
        self.params = self.views(self.flat)
        grads = self.views(self.flat_grad)
        for name, param in self.params.items():
            param.requires_grad_(True)
            param.grad = grads[name]
        self.buffers = {n: b.unsqueeze(0).repeat(self.k, *([1] * b.dim())) for n, b in self.model.named_buffers()}
        self.ema_flat = self.flat.detach().clone()
        self.ema_buffers = {n: b.clone() for n, b in self.buffers.items()}
        self.moments: list[torch.Tensor] = []  # SGD: [momentum]; AdamW: [first, second]
        hyper = cfg.hyperparameters()
        self.momentum, self.beta2 = hyper.get("momentum"), hyper.get("beta2")
        self.epoch = 0
        self.curves: list[list[dict]] = [[] for _ in cfgs]
        self.status: list[str] = ["ok"] * self.k
        self.diverged_epoch: list[int | None] = [None] * self.k
        self.wall = 0.0

    def _flatten(self):
        decay, _ = optimizers.decay_split(self.model)
        params = dict(self.model.named_parameters())
        layout, offset = {}, 0
        for name, p in params.items():
            layout[name] = (offset, p.shape)
            offset += self.k * p.numel()
        flat = torch.empty(offset, device=self.device)
        base_lr = torch.empty(offset, device=self.device)
        wd = torch.zeros(offset, device=self.device)
        lrs = torch.tensor([recipe.scaled_lr(c.lr, self.batch) for c in self.cfgs], device=self.device)
        wds = torch.tensor([c.wd for c in self.cfgs], device=self.device)
        for name, p in params.items():
            start = layout[name][0]
            block = slice(start, start + self.k * p.numel())
            flat[block].view(self.k, -1).copy_(p.detach().reshape(1, -1))
            base_lr[block].view(self.k, -1).copy_(lrs[:, None])
            if name in decay:
                wd[block].view(self.k, -1).copy_(wds[:, None])
        return layout, flat, base_lr, wd

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: flat[o : o + self.k * shape.numel()].view(self.k, *shape) for n, (o, shape) in self.layout.items()}

    def _vmapped(self) -> Callable[..., torch.Tensor]:
        """Any model as K members under torch.func.vmap; ViTs use packed kernels instead."""
        for module in self.model.modules():
            if isinstance(module, Attention):
                # Under vmap the fused kernels' backward fails on CUDA (an H100 reported "LSE is not
                # correctly aligned"; the math backend, a bf16 softmax-backward dtype error).
                module.fused = False
        swap_batchnorm(self.model, FloatBatchNorm2d)

        def member(p: dict, b: dict, images: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, (p, b), (images,))

        def members(params: dict, buffers: dict, x: torch.Tensor, *, train: bool) -> torch.Tensor:
            self.model.train(train)
            return vmap(member, in_dims=(0, 0, None), randomness="error")(params, buffers, x)

        return members

    # --- the recipe's steps, vectorized over members --------------------------------------------

    @torch.no_grad()
    def optimizer_step(self, step: int, factor: float) -> None:
        grad, p = self.flat_grad, self.flat
        lr = self.base_lr * factor
        if self.cfgs[0].optim == "sgd":
            grad = grad + self.wd * p
            if not self.moments:
                self.moments = [grad.clone()]
            else:
                self.moments[0].mul_(self.momentum).add_(grad)
            p.sub_(lr * (grad + self.momentum * self.moments[0]))
            return
        if not self.moments:
            self.moments = [torch.zeros_like(p), torch.zeros_like(p)]
        m, v = self.moments
        b1, b2 = BETA1, self.beta2
        t = step + 1
        p.mul_(1 - lr * self.wd)
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(EPS)
        p.addcdiv_(m * lr, denom, value=-1 / (1 - b1**t))

    @torch.no_grad()
    def ema_update(self, alpha: float) -> None:
        pairs = [(self.ema_flat, self.flat)] + [(self.ema_buffers[n], b) for n, b in self.buffers.items()]
        for dst, src in pairs:
            if alpha >= 1.0 or not dst.is_floating_point():
                dst.copy_(src)
            else:
                dst.lerp_(src, alpha)

    def train_epoch(self) -> list[float]:
        """One pass over the shared batches; each member's mean loss (NaN where it diverged)."""
        losses = torch.zeros(self.k, device=self.device)
        for i, (x, y) in enumerate(self.stream.batches(self.epoch)):
            step = self.epoch * self.steps_per_epoch + i
            x, target = self.stream.prepare(x, y)
            with self.stream.autocast():
                out = self.forward(self.params, self.buffers, x, train=True)
            loss = -(target * torch.log_softmax(out.float(), dim=-1)).sum(-1).mean(-1)  # soft CE per member
            self.flat_grad.zero_()
            loss.sum().backward()  # members share no weights: each gets its own loss's gradient
            self.optimizer_step(step, self.stream.lr_factor(step))
            losses += loss.detach()
            alpha = self.stream.ema_alpha(step)
            if alpha is not None:
                self.ema_update(alpha)
        return [v if math.isfinite(v) else float("nan") for v in (losses / self.steps_per_epoch).tolist()]

    @torch.no_grad()
    def evaluate(self, flat: torch.Tensor, buffers: dict[str, torch.Tensor]) -> list[float]:
        """Each member's top-1 error (percent) on the test split."""
        wrong = torch.zeros(self.k, device=self.device, dtype=torch.long)
        total = 0
        for x, y in self.stream.test_batches(size=max(64, 1024 // max(1, self.k // 16))):
            with self.stream.autocast():
                pred = self.forward(self.views(flat), buffers, x, train=False).argmax(-1)
            wrong += (pred != y).sum(-1)
            total += y.numel()
        return (100.0 * wrong.double() / total).tolist()

    # --- checkpoints: one file per member, in a single run's layout -------------------------

    def member_state(self, k: int) -> dict:
        """Member ``k``'s checkpoint as its separate run would write it (``checkpoint.trial_state``);
        slices are cloned, since saving a view would save the whole population's storage."""
        keys = list(self.model.state_dict())

        def weights(flat: torch.Tensor, buffers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            params = self.views(flat)
            return {n: (params[n] if n in params else buffers[n])[k].clone() for n in keys}

        return trial_state(
            identity=json.dumps(self.cfgs[k].identity(), sort_keys=True),
            epoch=self.epoch,
            model=weights(self.flat, self.buffers),
            ema=weights(self.ema_flat, self.ema_buffers),
            optimizer=self.member_optimizer(k),
            stream=self.stream.state(),
            curve=self.curves[k],
            wall=self.wall,
            status=self.status[k],
            diverged_epoch=self.diverged_epoch[k],
        )

    def moment_keys(self) -> list[str]:
        """torch.optim's names of the per-parameter states this population keeps in ``moments``."""
        return ["momentum_buffer"] if self.cfgs[0].optim == "sgd" else ["exp_avg", "exp_avg_sq"]

    def member_optimizer(self, k: int) -> dict[str, dict[str, torch.Tensor]]:
        """Member ``k``'s optimizer state per parameter name, as torch.optim.SGD / AdamW keep it."""
        if not self.moments:
            return {}
        views = [self.views(m) for m in self.moments]
        steps = float(self.epoch * self.steps_per_epoch)

        def state(n: str) -> dict[str, torch.Tensor]:
            # AdamW counts steps in place in each parameter's own tensor: one shared tensor would
            # be advanced once per parameter per step after loading
            extra = {} if self.cfgs[0].optim == "sgd" else {"step": torch.tensor(steps)}
            return {**extra, **{key: v[n][k].clone() for key, v in zip(self.moment_keys(), views, strict=True)}}

        return {n: state(n) for n in self.layout}

    def load_member(self, k: int, state: dict) -> None:
        """Put a trial's checkpoint (written alone or in any population) into member ``k``."""
        sides = ((self.flat, self.buffers, state["model"]), (self.ema_flat, self.ema_buffers, state["ema"]))
        for flat, buffers, saved in sides:
            params = self.views(flat)
            for n, value in saved.items():
                (params[n] if n in params else buffers[n])[k].copy_(value)
        optimizer = positional_to_names(state["optimizer"], self.model)
        if optimizer:
            if not self.moments:
                self.moments = [torch.zeros_like(self.flat) for _ in self.moment_keys()]
            for moment, key in zip(self.moments, self.moment_keys(), strict=True):
                view = self.views(moment)
                for n, per_param in optimizer.items():
                    view[n][k].copy_(per_param[key])
        self.curves[k] = list(state["curve"])
        self.status[k], self.diverged_epoch[k] = state.get("status", "ok"), state.get("diverged_epoch")

    def restore(self, states: list[dict | None]) -> None:
        """Resume every member from its own checkpoint; all of them stand at one epoch
        (``train_population`` groups members by the epoch their checkpoints reached)."""
        present = [s for s in states if s is not None]
        if not present:
            return
        for k, state in enumerate(states):
            if state is not None:
                self.load_member(k, state)
        self.stream.load_state(present[0])
        self.epoch, self.wall = present[0]["epoch"], max(s["wall"] for s in present)

    def save(self, folders: list[Path]) -> None:
        for k, folder in enumerate(folders):
            save_checkpoint(self.member_state(k), folder)


def positional_to_names(saved: dict, model: nn.Module) -> dict:
    """A member's optimizer state by parameter name. A single run's checkpoint from before
    per-name states holds torch's positional layout, whose order is the run's two groups
    (``optimizers.decay_split``: decayed parameters, then the others); it is read back in that order."""
    if "param_groups" not in saved:
        return saved
    decay, no_decay = optimizers.decay_split(model)
    names = [*decay, *no_decay]
    return {names[int(i)]: s for i, s in saved["state"].items()}


def member_checkpoints(
    cfgs: list[TrainConfig], folders: list[Path] | None, quarantine: Path | None
) -> list[dict | None]:
    """Each member's own checkpoint (on the CPU), if it has one."""
    if folders is None:
        return [None] * len(cfgs)
    identities = [json.dumps(c.identity(), sort_keys=True) for c in cfgs]
    return [load_checkpoint(f, i, quarantine=quarantine) for i, f in zip(identities, folders, strict=True)]


def train_population(
    cfgs: list[TrainConfig],
    *,
    checkpoint_dirs: list[str | Path] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    data: TensorData | FolderData | None = None,
    quarantine: str | Path | None = None,
) -> list[TrainResult]:
    """Train (or resume) K trials together; one result per member, as ``train`` would give it.

    ``checkpoint_dirs``: each member's own folder (its trial's, as for a single run). A member
    resumes from its own checkpoint whatever pack wrote it; members whose checkpoints stand at
    different epochs (after an out-of-memory split, or another pack size) train as one
    population per epoch, so none loses an epoch it reached.
    """
    cfgs = [c.resolved() for c in cfgs]
    check_population(cfgs)
    device = resolve_device(cfgs[0].device)
    if cfgs[0].threads:
        torch.set_num_threads(cfgs[0].threads)
    data = data if data is not None else load_data(cfgs[0])
    folders = [Path(f) for f in checkpoint_dirs] if checkpoint_dirs else None
    states = member_checkpoints(cfgs, folders, Path(quarantine) if quarantine else None)
    by_epoch: dict[int, list[int]] = {}
    for k, state in enumerate(states):
        by_epoch.setdefault(state["epoch"] if state else 0, []).append(k)
    results: dict[int, TrainResult] = {}
    for members in by_epoch.values():
        group = train_group(
            [cfgs[k] for k in members],
            [states[k] for k in members],
            [folders[k] for k in members] if folders else None,
            data,
            device,
            on_epoch,
        )
        results.update(zip(members, group, strict=True))
    return [results[k] for k in range(len(cfgs))]


def train_group(
    cfgs: list[TrainConfig],
    states: list[dict | None],
    folders: list[Path] | None,
    data: TensorData | FolderData,
    device: torch.device,
    on_epoch: Callable[[dict], None] | None,
) -> list[TrainResult]:
    """One population whose members' checkpoints (if any) stand at the same epoch."""
    started = datetime.now(UTC)
    pop = Population(cfgs, data, device)
    pop.restore(states)
    resumed_from = pop.epoch
    while pop.epoch < cfgs[0].epochs and "ok" in pop.status:
        t0 = time.perf_counter()
        losses = pop.train_epoch()
        train_seconds = time.perf_counter() - t0
        pop.epoch += 1
        raw_err = pop.evaluate(pop.flat, pop.buffers)
        ema_err = pop.evaluate(pop.ema_flat, pop.ema_buffers) if cfgs[0].setting("ema") else raw_err
        pop.wall += time.perf_counter() - t0
        record_epoch(pop, losses, ema_err, raw_err, pop.steps_per_epoch * pop.batch / train_seconds)
        if on_epoch is not None:
            on_epoch(epoch_summary(pop, train_seconds))
        if folders is not None and "ok" in pop.status:
            pop.save(folders)
    results = []
    for k, cfg in enumerate(cfgs):
        row = result_row(
            cfg,
            curve=pop.curves[k],
            data=pop.data,
            batch=pop.batch,
            wall=pop.wall,
            status=pop.status[k],
            diverged_epoch=pop.diverged_epoch[k],
            started=started,
            device=device,
        )
        row.update(resumed_from_epoch=resumed_from, population=pop.k)
        results.append(TrainResult(row, pop.curves[k]))
    return results


def record_epoch(pop: Population, losses: list[float], ema_err: list[float], raw_err: list[float], ips: float) -> None:
    """Append this epoch to every member still running; a non-finite loss ends a member as diverged."""
    lr_now = pop.stream.lr_factor(pop.epoch * pop.steps_per_epoch - 1)
    for k, cfg in enumerate(pop.cfgs):
        if pop.status[k] != "ok":
            continue
        diverged = not math.isfinite(losses[k])
        pop.curves[k].append(
            {
                "epoch": pop.epoch,
                "lr": recipe.scaled_lr(cfg.lr, pop.batch) * lr_now,
                "train_loss": losses[k],
                "top1_err": 100.0 if diverged else ema_err[k],
                "top1_err_raw": 100.0 if diverged else raw_err[k],
                "wall_s": pop.wall,
                "images_per_s": ips,
            }
        )
        if diverged:
            pop.status[k], pop.diverged_epoch[k] = "diverged", pop.epoch


MEMBER_POINTS = "_member_points"  # the key of a population's summary that holds its members' points


def epoch_summary(pop: Population, train_seconds: float) -> dict:
    running = [k for k in range(pop.k) if pop.status[k] == "ok"]
    errors = [pop.curves[k][-1]["top1_err"] for k in running]
    return {
        "epoch": pop.epoch,
        "members": pop.k,
        "running": len(running),
        "best_top1_err": min(errors) if errors else 100.0,
        "images_per_s": pop.k * pop.steps_per_epoch * pop.batch / train_seconds,
        "wall_s": pop.wall,
        # each member's point of this epoch (one that diverged in it too), for trackers: taken out
        # by ``sweeps.trackers.route`` before the summary goes anywhere else
        MEMBER_POINTS: {
            pop.cfgs[k].trial_id: pop.curves[k][-1]
            for k in range(pop.k)
            if pop.curves[k] and pop.curves[k][-1]["epoch"] == pop.epoch
        },
    }
