"""RegNetY (residual bottleneck blocks with group conv and squeeze-excitation) and ResNet-50."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.cost import Cost, conv_cost, linear_cost, norm_cost, total


class ConvBN(nn.Module):
    """Conv (no bias) then BatchNorm, optionally ReLU."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))

    def complexity(self, h: int, w: int) -> tuple[Cost, int, int]:
        cost, h, w = conv_cost(self.conv, h, w)
        return cost + norm_cost(self.conv.out_channels), h, w


class SqueezeExcite(nn.Module):
    """Global pool, 1x1 conv to ``se`` channels, ReLU, 1x1 conv back, sigmoid gate."""

    def __init__(self, width: int, se: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(width, se, 1, bias=True)
        self.expand = nn.Conv2d(se, width, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))

    def complexity(self) -> Cost:
        return conv_cost(self.reduce, 1, 1)[0] + conv_cost(self.expand, 1, 1)[0]


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, grouped) -> [SE] -> 1x1, plus a projected shortcut where shapes change."""

    def __init__(self, c_in: int, c_out: int, stride: int, inner: int, groups: int, se: int) -> None:
        super().__init__()
        self.a = ConvBN(c_in, inner, 1)
        self.b = ConvBN(inner, inner, 3, stride, groups)
        self.se = SqueezeExcite(inner, se) if se else None
        self.c = ConvBN(inner, c_out, 1, relu=False)
        self.shortcut = ConvBN(c_in, c_out, 1, stride, relu=False) if (c_in != c_out or stride != 1) else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.a(x))
        if self.se is not None:
            y = self.se(y)
        y = self.c(y)
        return self.relu(y + (self.shortcut(x) if self.shortcut is not None else x))

    def complexity(self, h: int, w: int) -> tuple[Cost, int, int]:
        a, h1, w1 = self.a.complexity(h, w)
        b, h2, w2 = self.b.complexity(h1, w1)
        c, _, _ = self.c.complexity(h2, w2)
        cost = a + b + c + (self.se.complexity() if self.se is not None else Cost())
        if self.shortcut is not None:
            cost = cost + self.shortcut.complexity(h, w)[0]
        return cost, h2, w2


class ConvNet(nn.Module):
    """Stem, stages of bottleneck blocks, global average pool and a linear classifier."""

    def __init__(
        self, stem: nn.Module, blocks: list[Bottleneck], width: int, image_size: int, num_classes: int
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, num_classes)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.head(x.mean((2, 3)))

    def complexity(self) -> Cost:
        costs = []
        h = w = self.image_size
        channels = 0
        for m in [*self.stem, *self.blocks]:
            if isinstance(m, nn.MaxPool2d):  # no flops or params; its output counts in acts, as in pycls
                h = w = (h + 2 * m.padding - m.kernel_size) // m.stride + 1
                costs.append(Cost(acts=channels * h * w))
                continue
            cost, h, w = m.complexity(h, w)
            channels = m.conv.out_channels if isinstance(m, ConvBN) else m.c.conv.out_channels
            costs.append(cost)
        return total(costs) + linear_cost(self.head)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels  # groups ignored
                nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)


def regnety(
    depths: list[int], widths: list[int], group_width: int, *, image_size: int, num_classes: int, in_chans: int
) -> ConvNet:
    """RegNetY: bottleneck multiplier 1, SE width round(0.25 x block input), stride 2 per stage."""
    stem = nn.Sequential(ConvBN(in_chans, 32, 3, stride=2))
    blocks, c_in = [], 32
    for depth, width in zip(depths, widths, strict=True):
        for i in range(depth):
            se = round(0.25 * c_in)
            blocks.append(Bottleneck(c_in, width, 2 if i == 0 else 1, width, width // group_width, se))
            c_in = width
    return ConvNet(stem, blocks, c_in, image_size, num_classes)


def resnet50(*, image_size: int, num_classes: int, in_chans: int) -> ConvNet:
    """ResNet-50: 7x7 stride-2 stem and max pool, bottlenecks of inner width 1/4, stride on the 3x3."""
    stem = nn.Sequential(ConvBN(in_chans, 64, 7, stride=2), nn.MaxPool2d(3, 2, 1))
    blocks, c_in = [], 64
    for stage, (depth, width) in enumerate(zip([3, 4, 6, 3], [256, 512, 1024, 2048], strict=True)):
        for i in range(depth):
            stride = 2 if (i == 0 and stage > 0) else 1
            blocks.append(Bottleneck(c_in, width, stride, width // 4, 1, 0))
            c_in = width
    return ConvNet(stem, blocks, c_in, image_size, num_classes)
