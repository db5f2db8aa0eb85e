"""K stacked ViTs as one forward pass of ordinary batched kernels, without vmap.

``torch.func.vmap`` runs any model over stacked weights, but on CUDA it cannot use the fused
attention kernels (their backward fails under vmap) or bf16 BatchNorm, and every batching
rule it applies is generic. A ViT needs no batching rules at all: each of its layers already
has a kernel that takes the member dimension as one more batch or channel-group dimension.

- Linears are batched matmuls (``baddbmm``) over the members' weights.
- Attention has no weights: the members' (member x image) pairs are one larger batch for
  ``scaled_dot_product_attention``, so the fused kernels stay in use.
- The stem's convs hold the members as channel groups: the first conv reads the shared image
  with every member's filters stacked, and each later conv is grouped, one group per member.
  BatchNorm over those channels keeps each member's statistics its own.

Activations are [K, batch, tokens, dim]; the result is [K, batch, classes], as the vmap path
gives it. tests/test_packed.py checks logits, gradients and BN buffers against the vmap path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.stems import ChannelLayerNorm, ConvStem, PatchifyStem
from models.vit import Block, ViT

Tensors = dict[str, torch.Tensor]


def supports(model: nn.Module) -> bool:
    """True for the zoo's ViTs: a patchify or conv stem of plain convs, BN or channel LN."""
    if not isinstance(model, ViT) or not isinstance(model.stem, (PatchifyStem, ConvStem)):
        return False
    known = (PatchifyStem, ConvStem, nn.Sequential, nn.Conv2d, nn.BatchNorm2d, ChannelLayerNorm, nn.ReLU)
    for module in model.stem.modules():
        if type(module) not in known:
            return False
        if isinstance(module, nn.Conv2d) and (
            module.groups != 1 or module.dilation != (1, 1) or module.padding_mode != "zeros"
        ):
            return False
        if isinstance(module, nn.BatchNorm2d) and (module.momentum is None or not module.track_running_stats):
            return False
    return True


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [K, ..., in] with weight [K, out, in] and bias [K, out]: one batched matmul."""
    k, fan_in = x.shape[0], x.shape[-1]
    out = torch.baddbmm(bias.unsqueeze(1), x.reshape(k, -1, fan_in), weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """Over the last dim of x [K, ..., dim], with each member's own affine [K, dim]."""
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return F.layer_norm(x, x.shape[-1:], eps=eps) * weight.view(shape) + bias.view(shape)


class PackedViT:
    """Calls as ``(params, buffers, images, train=...)`` with every tensor stacked as [K, ...].

    Params and buffers are looked up by the model's own names, so the population's flat
    storage, checkpoints and EMA are the same for this path and the vmap one.
    """

    def __init__(self, model: ViT, members: int) -> None:
        if not supports(model):
            raise ValueError(f"{type(model).__name__} with a {type(model.stem).__name__} cannot be packed")
        self.model, self.k = model, members

    def __call__(self, params: Tensors, buffers: Tensors, x: torch.Tensor, *, train: bool) -> torch.Tensor:
        model = self.model
        maps = self.stem(params, buffers, x, train)  # [B, K * dim, h, w]
        b, _, h, w = maps.shape
        tokens = maps.view(b, self.k, -1, h * w).permute(1, 0, 3, 2)  # [K, B, h * w, dim]
        cls = params["cls_token"].expand(-1, b, -1, -1)
        x = torch.cat([cls, tokens], dim=2) + params["pos_embed"]
        for i, block in enumerate(model.blocks):
            x = self.block(params, f"blocks.{i}.", block, x)
        cls_out = layer_norm(x[:, :, 0], params["norm.weight"], params["norm.bias"], model.norm.eps)
        return linear(cls_out, params["head.weight"], params["head.bias"])

    def block(self, p: Tensors, prefix: str, block: Block, x: torch.Tensor) -> torch.Tensor:
        """Block.forward over the members: x + MHSA(LN(x)), then x + MLP(LN(x))."""

        def param(name: str) -> torch.Tensor:
            return p[prefix + name]

        k, b, n, d = x.shape
        heads = block.attn.heads
        qkv = linear(
            layer_norm(x, param("norm1.weight"), param("norm1.bias"), block.norm1.eps),
            param("attn.qkv.weight"),
            param("attn.qkv.bias"),
        )
        q, key, v = qkv.view(k * b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, key, v).transpose(1, 2).reshape(k, b, n, d)
        x = x + linear(attended, param("attn.proj.weight"), param("attn.proj.bias"))
        hidden = F.gelu(
            linear(
                layer_norm(x, param("norm2.weight"), param("norm2.bias"), block.norm2.eps),
                param("mlp.fc1.weight"),
                param("mlp.fc1.bias"),
            )
        )
        return x + linear(hidden, param("mlp.fc2.weight"), param("mlp.fc2.bias"))

    # --- the stem: members are channel groups --------------------------------------------------

    def stem(self, p: Tensors, buffers: Tensors, x: torch.Tensor, train: bool) -> torch.Tensor:
        stem = self.model.stem
        if isinstance(stem, PatchifyStem):
            x = self.conv(p, "stem.conv", stem.conv, x, shared=True)
            if stem.norm is not None:
                x = F.relu(self.norm(p, buffers, "stem.norm", stem.norm, x, train))
            return x
        shared = True
        for i, layer in enumerate(stem.body):
            name = f"stem.body.{i}"
            if isinstance(layer, nn.Conv2d):
                x, shared = self.conv(p, name, layer, x, shared=shared), False
            elif isinstance(layer, nn.ReLU):
                x = F.relu(x)
            else:
                x = self.norm(p, buffers, name, layer, x, train)
        return self.conv(p, "stem.proj", stem.proj, x, shared=shared)

    def conv(self, p: Tensors, name: str, conv: nn.Conv2d, x: torch.Tensor, *, shared: bool) -> torch.Tensor:
        """A shared input [B, C, H, W] meets all K filter banks at once; a packed one, its own group."""
        weight = p[f"{name}.weight"]
        bias = p.get(f"{name}.bias")
        return F.conv2d(
            x,
            weight.reshape(-1, *weight.shape[2:]),
            None if bias is None else bias.reshape(-1),
            conv.stride,
            conv.padding,
            groups=1 if shared else self.k,
        )

    def norm(
        self, p: Tensors, buffers: Tensors, name: str, norm: nn.Module, x: torch.Tensor, train: bool
    ) -> torch.Tensor:
        weight, bias = p[f"{name}.weight"], p[f"{name}.bias"]
        if isinstance(norm, ChannelLayerNorm):
            b, _, h, w = x.shape
            per_member = x.view(b, self.k, -1, h, w).permute(1, 0, 3, 4, 2)  # [K, B, h, w, C]
            out = layer_norm(per_member, weight, bias, norm.eps)
            return out.permute(1, 0, 4, 2, 3).reshape(x.shape)
        assert isinstance(norm, nn.BatchNorm2d)
        if train:
            buffers[f"{name}.num_batches_tracked"].add_(1)  # as BatchNorm2d.forward counts its batches
        # [K, C] buffers viewed as [K * C]: F.batch_norm updates each member's statistics in place.
        return F.batch_norm(
            x,
            buffers[f"{name}.running_mean"].view(-1),
            buffers[f"{name}.running_var"].view(-1),
            weight.reshape(-1),
            bias.reshape(-1),
            training=train,
            momentum=norm.momentum,
            eps=norm.eps,
        )
