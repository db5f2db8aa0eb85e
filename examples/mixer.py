"""A model of one's own: a small MLP-Mixer (Tolstikhin et al., 2021), registered for studies.

Pass this file with ``--import examples/mixer.py`` (or list it under ``imports`` in a study
file): it is imported in the command and in every trial process, on every node of a cluster.
It has no ``complexity()`` method, so its flops and activations are measured (the trial rows
say ``complexity_source = "measured"``), and its family ``Mixer`` has no Table 4 defaults, so
a study of it must give lr and wd in its space.
"""

from __future__ import annotations

import torch
from torch import nn

from models import register


class MixerBlock(nn.Module):
    """Token mixing (an MLP across patches) then channel mixing (an MLP across features)."""

    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.tokens = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.channels = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channels(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, *, num_classes: int, image_size: int, in_chans: int, patch: int, dim: int, depth: int) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not divisible by patch size {patch}")
        tokens = (image_size // patch) ** 2
        self.stem = nn.Conv2d(in_chans, dim, patch, patch)
        self.blocks = nn.Sequential(*(MixerBlock(tokens, dim, dim // 2, 4 * dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)  # (batch, tokens, dim)
        return self.head(self.norm(self.blocks(x)).mean(1))


@register("mixer_tiny", family="Mixer", stem="patchify")
def mixer_tiny(*, num_classes: int, image_size: int, in_chans: int, patch_size: int | None = None) -> nn.Module:
    return Mixer(
        num_classes=num_classes,
        image_size=image_size,
        in_chans=in_chans,
        patch=patch_size or max(1, image_size // 8),
        dim=128,
        depth=4,
    )
