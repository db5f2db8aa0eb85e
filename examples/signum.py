"""A user optimizer in one file: signSGD with momentum (Signum, Bernstein et al. 2018).

Register it with ``--import examples/signum.py`` (or ``imports = ["signum.py"]`` in a study
file); every trial process imports it too, on every node, so ``--optim signum`` works anywhere
a built-in optimizer does. ``stability optimizers --import examples/signum.py`` lists it.
"""

import torch

from stability import optimizers


class Signum(torch.optim.Optimizer):
    """p <- p (1 - lr wd) - lr sign(m), with m <- beta m + (1 - beta) g."""

    def __init__(self, params, lr: float, beta: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("momentum", torch.zeros_like(p))
                m.lerp_(p.grad, 1 - group["beta"])
                p.mul_(1 - group["lr"] * group["weight_decay"]).add_(m.sign(), alpha=-group["lr"])


@optimizers.register(
    "signum",
    hyperparameters={"beta": optimizers.unit(0.9)},
    # Signum's steps are Lion's size (a sign per coordinate), so Lion's intervals are a start
    intervals=optimizers.entry("lion").intervals,
    source="Lion's default intervals (both take sign steps)",
    about="signSGD with momentum (examples/signum.py): a user optimizer in one file",
)
def signum(groups, *, lr, schedule, beta):
    return Signum(groups, lr=lr, beta=beta)
