"""Training-step throughput of a registered model beside an in-run eager reference.

The candidate is a fast-path candidate (bf16 autocast on GPU, fused AdamW, channels-last for
convolutional stems and CNNs, optionally torch.compile); the reference is the same architecture with its
attention replaced by ``nn.MultiheadAttention``, fp32 weights under autocast, foreach AdamW,
default memory format. Model FLOP utilisation is 6 x (multiply-adds per image) x images/s
against a dense matmul rate measured in the same run.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

import models
from models.vit import Attention


class MultiheadReference(nn.Module):
    """The same attention block through ``nn.MultiheadAttention`` (the plain eager reference)."""

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(attn.proj.in_features, attn.heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


def has_spatial_convs(model: nn.Module) -> bool:
    """Convs that are not patchify-style (kernel = stride): where channels-last may pay off."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size != m.stride for m in model.modules())


def reference_model(name: str, **kw) -> nn.Module:
    model = models.create(name, **kw)
    for block in getattr(model, "blocks", []):
        if isinstance(getattr(block, "attn", None), Attention):
            block.attn = MultiheadReference(block.attn)
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: torch.device, seconds: float = 0.5) -> float:
    """Dense matmul FLOP/s on this device: bf16 on GPU, fp32 on CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    sync(device)
    return 2 * n**3 * count / (time.perf_counter() - start)


def time_steps(model: nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int) -> float:
    """Images per second of full training steps (forward, backward, optimizer)."""
    device = x.device
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> None:
        with amp:
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * x.shape[0] / (time.perf_counter() - start)


def fast_path(model: nn.Module, device: torch.device, compile_model: bool) -> tuple[nn.Module, str]:
    """Channels-last where there are convs, optionally compiled.

    Not yet the trainer's default: on CPU, channels-last moved RegNetY gradients about 9x
    further from a float64 reference than the default layout; it must be validated on a GPU
    (in bf16) before the trainer adopts it.
    """
    model = model.to(device)
    notes = []
    if has_spatial_convs(model):
        model = model.to(memory_format=torch.channels_last)
        notes.append("channels-last")
    if compile_model:
        try:
            model = torch.compile(model)
            notes.append("compiled")
        except Exception as e:  # compile is an optimisation: fall back to eager, and say so
            notes.append(f"compile failed ({type(e).__name__}), eager")
    return model, ", ".join(notes) or "eager"


def run(
    name: str,
    *,
    image_size: int,
    batch_size: int,
    steps: int,
    device: torch.device,
    compile_model: bool,
    warmup: int = 2,
    classes: int = 1000,
) -> dict:
    """Throughput of the fast path and the reference, measured side by side, and their ratio."""
    kw = {"image_size": image_size, "num_classes": classes}
    cost = models.complexity(name, **kw)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    y = torch.randint(classes, (batch_size,), device=device)
    fused = {"fused": True} if device.type == "cuda" else {}

    model, notes = fast_path(models.create(name, **kw), device, compile_model)
    xs = x.contiguous(memory_format=torch.channels_last) if "channels-last" in notes else x
    fast = time_steps(model, torch.optim.AdamW(model.parameters(), lr=1e-4, **fused), xs, y, steps, warmup)
    del model
    ref_model = reference_model(name, **kw).to(device)
    ref = time_steps(ref_model, torch.optim.AdamW(ref_model.parameters(), lr=1e-4, foreach=True), x, y, steps, warmup)
    rate = matmul_rate(device)
    mfu = lambda ips: 6 * cost["flops"] * ips / rate  # noqa: E731
    return {
        "model": name,
        "image_size": image_size,
        "batch_size": batch_size,
        "device": str(device),
        "fast_images_per_s": fast,
        "reference_images_per_s": ref,
        "ratio": fast / ref,
        "fast_mfu": mfu(fast),
        "reference_mfu": mfu(ref),
        "matmul_tflops": rate / 1e12,
        "fast_path": notes,
    }
