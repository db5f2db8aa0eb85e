"""Vision Transformer: pre-norm encoder with a class token, fed by a patchify or conv stem."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.cost import Cost, linear_cost, norm_cost, total


class Attention(nn.Module):
    """Multi-head self-attention, batch-first, through scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        # False computes the same attention with explicit matmuls and a softmax: slower alone,
        # but it batches under torch.func.vmap, where the fused kernels' backward fails on CUDA.
        self.fused = True
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            x = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, d))

    def complexity(self, n: int) -> Cost:
        d = self.proj.in_features
        # q.k^T and the weighted sum over v: heads * n * n * head_dim multiply-adds each.
        attention = Cost(flops=2 * n * n * d, acts=self.heads * n * n + d * n)
        return linear_cost(self.qkv, n) + attention + linear_cost(self.proj, n)

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.qkv.weight)
        nn.init.zeros_(self.qkv.bias)
        self.proj.reset_parameters()  # PyTorch's default Linear init, as in the reference
        nn.init.zeros_(self.proj.bias)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))

    def complexity(self, n: int) -> Cost:
        return linear_cost(self.fc1, n) + linear_cost(self.fc2, n)

    def init_weights(self) -> None:
        for fc in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)


class Block(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, mlp_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def complexity(self, n: int) -> Cost:
        d = self.norm1.normalized_shape[0]
        return norm_cost(d) * 2 + self.attn.complexity(n) + self.mlp.complexity(n)


class ViT(nn.Module):
    """Stem -> tokens (+ class token, + learned position embedding) -> blocks -> LN -> head."""

    def __init__(
        self, stem: nn.Module, *, dim: int, mlp_dim: int, heads: int, depth: int, image_size: int, num_classes: int
    ) -> None:
        super().__init__()
        if image_size % stem.patch:
            raise ValueError(f"image size {image_size} is not divisible by the stem's stride {stem.patch}")
        self.image_size = image_size
        self.grid = image_size // stem.patch
        self.stem = stem
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, dim))
        self.blocks = nn.Sequential(*(Block(dim, mlp_dim, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        self.init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        x = self.blocks(x)
        return self.head(self.norm(x[:, 0]))

    def complexity(self) -> Cost:
        stem, h, w = self.stem.complexity(self.image_size, self.image_size)
        n = h * w + 1
        d = self.norm.normalized_shape[0]
        embed = Cost(params=d * (n + 1))  # class token and one position per token
        blocks = total(b.complexity(n) for b in self.blocks)
        return stem + embed + blocks + norm_cost(d) + linear_cost(self.head)

    def init_weights(self) -> None:
        self.stem.init_weights()
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.zeros_(self.cls_token)
        for block in self.blocks:
            block.attn.init_weights()
            block.mlp.init_weights()
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
