"""The paper's zoo (docs/design.md, "The model zoo"), registered in ``models.registry`` under its names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from models.registry import register
from models.regnet import regnety, resnet50
from models.stems import ConvSpec, ConvStem, PatchifyStem, fit_to_patch, stride_two_stem
from models.vit import ViT

C1 = stride_two_stem([24, 48, 96, 192], [2, 2, 2, 2])
C4 = stride_two_stem([48, 96, 192, 384], [2, 2, 2, 2])
C18 = stride_two_stem([64, 128, 128, 256, 256, 512], [2, 2, 1, 2, 1, 2])
# The nano zoo's C stem: C1 at half its channels. At 16 px / patch 4 its last two convs (48, 96)
# and the 1x1 cost about one transformer block (the paper's rule for dropping one), so
# vit_c_nano is within 0.7% of vit_p_nano in flops and 2.2% in params (tests/test_laptop.py).
C_NANO = stride_two_stem([12, 24, 48, 96], [2, 2, 2, 2])


def table3_stem(kernels: list[int], strides: list[int], paddings: list[int], channels: list[int]) -> list[ConvSpec]:
    """A Table 3 ablation stem; its last entry is the 1x1 to the hidden size, added by ConvStem."""
    return [ConvSpec(*spec) for spec in zip(kernels[:-1], strides[:-1], paddings[:-1], channels[:-1], strict=True)]


S1 = table3_stem([3, 3, 3, 2, 1], [2, 2, 2, 2, 1], [1, 1, 1, 0, 0], [42, 104, 208, 416, 384])
S2 = table3_stem([3, 3, 3, 4, 1], [2, 2, 1, 4, 1], [1, 1, 1, 0, 0], [32, 64, 128, 256, 384])
S3 = table3_stem([3, 3, 3, 8, 1], [2, 1, 1, 8, 1], [1, 1, 1, 0, 0], [17, 34, 68, 136, 384])
S4 = table3_stem([3, 3, 3, 16, 1], [1, 1, 1, 16, 1], [1, 1, 1, 0, 0], [8, 16, 32, 64, 384])


@dataclass(frozen=True)
class ViTSpec:
    dim: int
    mlp_dim: int
    heads: int
    depth: int
    stem: str  # "P", "P+BN", or a conv stem's name
    convs: tuple[ConvSpec, ...] = ()
    stem_norm: str = "bn"


@dataclass(frozen=True)
class CNNSpec:
    builder: Callable[..., nn.Module]  # takes image_size, num_classes, in_chans
    stem: str


def _vit(dim: int, mlp: int, heads: int, depth: int, stem: str, convs=(), norm: str = "bn") -> ViTSpec:
    return ViTSpec(dim, mlp, heads, depth, stem, tuple(convs), norm)


W1, W4, W18, W36 = (192, 576, 3), (384, 1152, 6), (768, 3072, 12), (1024, 4096, 16)
# The nano zoo (the `laptop` preset): width 64, the paper's 64-wide heads and 3x MLP.
W_NANO = (64, 192, 1)

SPECS: dict[str, ViTSpec | CNNSpec] = {
    "vit_p_1gf": _vit(*W1, 12, "P"),
    "vit_p_4gf": _vit(*W4, 12, "P"),
    "vit_p_18gf": _vit(*W18, 12, "P"),
    "vit_p_36gf": _vit(*W36, 14, "P"),
    "vit_c_1gf": _vit(*W1, 11, "C1", C1),
    "vit_c_4gf": _vit(*W4, 11, "C4", C4),
    "vit_c_18gf": _vit(*W18, 11, "C18", C18),
    "vit_c_36gf": _vit(*W36, 13, "C18", C18),
    "vit_s1_4gf": _vit(*W4, 11, "S1", S1),
    "vit_s2_4gf": _vit(*W4, 11, "S2", S2),
    "vit_s3_4gf": _vit(*W4, 11, "S3", S3),
    "vit_s4_4gf": _vit(*W4, 11, "S4", S4),
    "vit_pbn_4gf": _vit(*W4, 12, "P+BN"),
    "vit_cln_4gf": _vit(*W4, 11, "C4-LN", C4, "ln"),
    "vit_p_16gf": _vit(*W4, 48, "P"),
    "vit_c_16gf": _vit(*W4, 47, "C4", C4),
    "vit_p_nano": _vit(*W_NANO, 6, "P"),
    "vit_c_nano": _vit(*W_NANO, 5, "C-nano", C_NANO),
    # Three stages (at 4x4, 2x2 and 1x1 from 16 px; a fourth would add only 1x1 maps), sized to
    # the nano ViTs' flops at 16 px.
    "regnety_nano": CNNSpec(partial(regnety, [1, 3, 3], [96, 192, 384], 32), "RegNetY"),
    "regnety_1gf": CNNSpec(partial(regnety, [1, 4, 10, 3], [40, 120, 328, 904], 4), "RegNetY"),
    "regnety_4gf": CNNSpec(partial(regnety, [2, 6, 16, 2], [96, 192, 512, 1216], 32), "RegNetY"),
    "regnety_16gf": CNNSpec(partial(regnety, [2, 7, 18, 2], [168, 336, 896, 2128], 56), "RegNetY"),
    "resnet50": CNNSpec(resnet50, "ResNet"),
}


def default_patch_size(image_size: int) -> int:
    """16 for ImageNet-sized inputs, 4 for small (e.g. 32-pixel) images."""
    return 16 if image_size >= 128 else 4


def build_vit(spec: ViTSpec, *, num_classes: int, image_size: int, in_chans: int, patch_size: int | None) -> nn.Module:
    patch = patch_size or default_patch_size(image_size)
    if spec.convs:
        stem_module: nn.Module = ConvStem(in_chans, spec.dim, fit_to_patch(list(spec.convs), patch), spec.stem_norm)
    else:
        stem_module = PatchifyStem(in_chans, spec.dim, patch, norm="bn" if spec.stem == "P+BN" else None)
    return ViT(
        stem_module,
        dim=spec.dim,
        mlp_dim=spec.mlp_dim,
        heads=spec.heads,
        depth=spec.depth,
        image_size=image_size,
        num_classes=num_classes,
    )


def build_cnn(spec: CNNSpec, *, num_classes: int, image_size: int, in_chans: int, patch_size: int | None) -> nn.Module:
    return spec.builder(image_size=image_size, num_classes=num_classes, in_chans=in_chans)


def vit_family(spec: ViTSpec) -> str:
    """ViT_P (patchify, with or without BN) or ViT_C (any conv stem)."""
    return "ViT_P" if spec.stem.startswith("P") else "ViT_C"


def register_zoo() -> None:
    """The paper's models enter the one registry like any user's model; each builder is a
    ``partial`` of a module-level function, named by the model so re-registering is recognized."""
    for name, spec in SPECS.items():
        if isinstance(spec, CNNSpec):
            builder, fam = partial(build_cnn, spec), spec.stem
        else:
            builder, fam = partial(build_vit, spec), vit_family(spec)
        builder.__module__, builder.__qualname__ = __name__, name  # type: ignore[attr-defined]
        register(name, family=fam, stem=spec.stem)(builder)


register_zoo()
