"""Analytic complexity: flops (multiply-adds), params and activations.

Each module of the zoo reports its own cost from its hyperparameters through these helpers,
so the numbers are derived from the same attributes the forward pass uses, never by tracing.
Conventions follow docs/design.md, "The model zoo" (they reproduce the paper's tables).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Cost:
    flops: int = 0
    params: int = 0
    acts: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.params + other.params, self.acts + other.acts)

    def __mul__(self, k: int) -> Cost:
        return Cost(self.flops * k, self.params * k, self.acts * k)

    __rmul__ = __mul__


def total(costs) -> Cost:
    """Sum an iterable of costs (``sum`` needs a start value of the same type)."""
    out = Cost()
    for c in costs:
        out = out + c
    return out


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_cost(conv: nn.Conv2d, h: int, w: int) -> tuple[Cost, int, int]:
    """Cost of one conv at input size (h, w), and its output size."""
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    ho, wo = conv_out(h, k, s, p), conv_out(w, k, s, p)
    cin, cout, g = conv.in_channels, conv.out_channels, conv.groups
    bias = conv.bias is not None
    flops = k * k * cin * cout * ho * wo // g + (cout * ho * wo if bias else 0)
    params = k * k * cin * cout // g + (cout if bias else 0)
    return Cost(flops, params, cout * ho * wo), ho, wo


def linear_cost(linear: nn.Linear, n: int = 1) -> Cost:
    """Cost of one linear layer applied to n rows (tokens)."""
    cin, cout = linear.in_features, linear.out_features
    bias = linear.bias is not None
    flops = n * (cin * cout + (cout if bias else 0))
    params = cin * cout + (cout if bias else 0)
    return Cost(flops, params, cout * n)


def norm_cost(width: int) -> Cost:
    """A BatchNorm or LayerNorm: weight and bias, no flops or acts by convention."""
    return Cost(params=2 * width)
