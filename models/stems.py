"""ViT stems: the patchify stem (P) and spec-driven convolutional stems (C1/C4/C18, S1-S4).

A stem maps an image (B, C, H, W) to a grid of token features (B, D, H/p, W/p), where p is
the stem's total stride ("patch size").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.cost import Cost, conv_cost, norm_cost, total


@dataclass(frozen=True)
class ConvSpec:
    """One stem conv: kernel, stride, padding and output channels."""

    kernel: int
    stride: int
    padding: int
    channels: int


def stride_two_stem(channels: list[int], strides: list[int]) -> list[ConvSpec]:
    """3x3 convs with padding 1, as in the paper's C1 / C4 / C18 stems."""
    return [ConvSpec(3, s, 1, c) for c, s in zip(channels, strides, strict=True)]


def fit_to_patch(convs: list[ConvSpec], patch: int) -> list[ConvSpec]:
    """The stem's suffix whose strides multiply to ``patch`` (docs/design.md, "The model zoo": small images).

    Walking back from the last conv, convs are kept until the remaining stride is 1, so a
    3x3 stride-2 stem keeps its last log2(patch) stride-2 convs and the stride-1 convs between
    them. A patchifying conv (kernel == stride, no padding) whose stride is larger than what
    remains shrinks to the remaining stride; any other mismatch is an error.
    """
    if math.prod(c.stride for c in convs) == patch:
        return list(convs)  # the full stem, leading stride-1 convs included
    kept: list[ConvSpec] = []
    remaining = patch
    for spec in reversed(convs):
        if remaining == 1:
            break
        if remaining % spec.stride == 0:
            kept.append(spec)
            remaining //= spec.stride
        elif spec.kernel == spec.stride and spec.padding == 0 and spec.stride % remaining == 0:
            kept.append(ConvSpec(remaining, remaining, 0, spec.channels))
            remaining = 1
        else:
            raise ValueError(f"a stem with strides {[c.stride for c in convs]} cannot reach patch size {patch}")
    if remaining != 1:
        raise ValueError(f"a stem with strides {[c.stride for c in convs]} cannot reach patch size {patch}")
    return kept[::-1]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (the vit_cln ablation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(kind: str, width: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(width)
    if kind == "ln":
        return ChannelLayerNorm(width, eps=1e-6)
    raise ValueError(f"unknown stem norm {kind!r}")


class PatchifyStem(nn.Module):
    """One p x p stride-p conv with bias; optionally followed by BN and ReLU (vit_pbn)."""

    def __init__(self, in_chans: int, dim: int, patch: int, norm: str | None = None) -> None:
        super().__init__()
        self.patch = patch
        self.conv = nn.Conv2d(in_chans, dim, patch, stride=patch, bias=True)
        self.norm = make_norm(norm, dim) if norm else None
        self.act = nn.ReLU(inplace=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.act(self.norm(x)) if self.norm is not None else x

    def complexity(self, h: int, w: int) -> tuple[Cost, int, int]:
        cost, h, w = conv_cost(self.conv, h, w)
        if self.norm is not None:
            cost = cost + norm_cost(self.conv.out_channels)
        return cost, h, w

    def init_weights(self) -> None:
        fan_in = self.conv.in_channels * self.patch * self.patch
        std = math.sqrt(1.0 / fan_in)
        nn.init.trunc_normal_(self.conv.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.conv.bias)


class ConvStem(nn.Module):
    """Convs (no bias) each followed by a norm and ReLU, then a 1x1 conv with bias to ``dim``."""

    def __init__(self, in_chans: int, dim: int, convs: list[ConvSpec], norm: str = "bn") -> None:
        super().__init__()
        self.specs = list(convs)
        layers: list[nn.Module] = []
        c_in = in_chans
        for spec in self.specs:
            layers += [
                nn.Conv2d(c_in, spec.channels, spec.kernel, spec.stride, spec.padding, bias=False),
                make_norm(norm, spec.channels),
                nn.ReLU(inplace=True),
            ]
            c_in = spec.channels
        self.body = nn.Sequential(*layers)
        self.proj = nn.Conv2d(c_in, dim, 1, bias=True)
        self.patch = math.prod(s.stride for s in self.specs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x))

    def convs(self) -> list[nn.Conv2d]:
        return [m for m in self.body if isinstance(m, nn.Conv2d)]

    def complexity(self, h: int, w: int) -> tuple[Cost, int, int]:
        costs = []
        for conv in self.convs():
            cost, h, w = conv_cost(conv, h, w)
            costs.append(cost + norm_cost(conv.out_channels))
        cost, h, w = conv_cost(self.proj, h, w)
        return total(costs) + cost, h, w

    def init_weights(self) -> None:
        for conv in self.convs():
            nn.init.normal_(conv.weight, std=math.sqrt(2.0 / conv.out_channels))
        nn.init.normal_(self.proj.weight, std=math.sqrt(1.0 / self.proj.out_channels))
        nn.init.zeros_(self.proj.bias)
        for m in self.body:
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
