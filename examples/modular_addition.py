"""A trainable that is not image classification: a one-layer transformer learns (a + b) mod p.

Power et al. (2022) found that on this task weight decay decides whether a network that has
memorized its training pairs goes on to generalize to the held-out ones ("grokking"), which
makes it a small, sharp test of hyperparameter stability. Everything is generated here: the
p * p pairs, split once by the seed into training and validation pairs; nothing is downloaded.

Register it with ``--import examples/modular_addition.py`` (or ``imports`` in a study file):

    stability sweep --trainer modadd --import examples/modular_addition.py \\
        --space lr=log:1e-4,1e-1 --space wd=log:1e-3,10 --space train_frac=uniform:0.3,0.8

The trial's metric is the validation accuracy in percent (maximize; a diverged trial counts as
0). An "epoch" here is ``STEPS`` full-batch AdamW steps.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from stability import trainables

STEPS = 100  # full-batch steps per reported epoch


class OneLayerTransformer(nn.Module):
    """Tokens a, b, '=' -> one pre-norm attention + MLP block -> the answer read at '='."""

    def __init__(self, p: int, width: int, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(p + 1, width)  # p numbers and the '=' token
        self.position = nn.Parameter(torch.randn(3, width) * 0.02)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.head = nn.Linear(width, p)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.position
        h = self.norm1(x)
        x = x + self.attention(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return self.head(x[:, -1])


def pairs(p: int, train_frac: float, seed: int) -> tuple[torch.Tensor, ...]:
    """Every (a, b, '=') with its answer, split by ``seed`` into training and validation pairs."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((p * p,), p)], dim=1)
    answers = (a.flatten() + b.flatten()) % p
    order = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    cut = max(1, round(train_frac * p * p))
    train, val = order[:cut], order[cut:]
    return tokens[train], answers[train], tokens[val], answers[val]


@torch.no_grad()
def evaluate(model: nn.Module, tokens: torch.Tensor, answers: torch.Tensor) -> tuple[float, float]:
    logits = model(tokens)
    loss = nn.functional.cross_entropy(logits, answers).item()
    return loss, 100.0 * (logits.argmax(-1) == answers).float().mean().item()


@trainables.register(
    "modadd",
    metric="val_acc",
    direction="maximize",
    diverged=0.0,
    hyperparameters={
        "lr": trainables.positive(1e-3),
        "wd": trainables.nonnegative(1.0),
        "train_frac": trainables.fraction(0.5),
        "p": trainables.integer(23, low=3),
        "width": trainables.integer(32, low=4),
    },
    epochs=10,
    optimizer="adamw",
    dataset="modular-addition",
    about="a one-layer transformer on (a + b) mod p (examples/modular_addition.py)",
)
def train(params: dict, report, checkpoint: Path) -> None:
    torch.manual_seed(params["seed"])
    torch.set_num_threads(1)
    p = params["p"]
    x_train, y_train, x_val, y_val = pairs(p, params["train_frac"], params["seed"])
    model = OneLayerTransformer(p, params["width"])
    opt = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["wd"], betas=(0.9, 0.98))
    state, start = checkpoint / "state.pt", 0
    if state.exists():  # a retried or resumed trial continues from its last epoch
        saved = torch.load(state, weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        torch.set_rng_state(saved["rng"])
        start = saved["epoch"]
    for epoch in range(start, params["epochs"]):
        model.train()
        for _ in range(STEPS):
            loss = nn.functional.cross_entropy(model(x_train), y_train)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        train_loss, train_acc = evaluate(model, x_train, y_train)
        val_loss, val_acc = evaluate(model, x_val, y_val)
        # a non-finite loss is divergence: the accuracy of such a model means nothing, so it is reported as NaN
        finite = math.isfinite(train_loss) and math.isfinite(val_loss)
        report(epoch + 1, val_acc=val_acc if finite else math.nan, val_loss=val_loss, train_loss=train_loss,
               train_acc=train_acc)  # fmt: skip
        # saved after the report: a trial stopped between the two re-trains this epoch and reports it again
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state(), "epoch": epoch + 1},
            state,
        )
