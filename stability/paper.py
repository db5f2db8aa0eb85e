"""The paper's published numbers as data (Xiao et al., NeurIPS 2021; docs/design.md, "The model
zoo" and "Table 4: learning rates and weight decays").

This module imports nothing: the trainer, the sweep engine and the command line read the one
copy without pulling in torch or Ray.
"""

from __future__ import annotations

# Table 1 / Table 2 complexity: flops (B, multiply-adds), params (M), acts (M) at 224 px.
# vit_p_18gf's params are 86.7 in Table 1 and 86.6 in Table 2; the exact count is 86.57 M.
COMPLEXITY: dict[str, tuple[float, float, float]] = {
    "vit_p_1gf": (1.1, 4.8, 5.5),
    "vit_p_4gf": (3.9, 18.5, 11.1),
    "vit_p_18gf": (17.5, 86.6, 24.0),
    "vit_p_36gf": (35.9, 178.4, 37.3),
    "vit_c_1gf": (1.1, 4.6, 5.7),
    "vit_c_4gf": (4.0, 17.8, 11.3),
    "vit_c_18gf": (17.7, 81.6, 24.1),
    "vit_c_36gf": (35.0, 167.8, 36.7),
    "regnety_1gf": (1.0, 9.6, 6.2),
    "regnety_4gf": (4.1, 22.4, 14.5),
    "regnety_16gf": (15.5, 72.3, 30.7),
    "resnet50": (4.1, 25.6, 11.3),
}

# Table 4: (lr, wd) optima at 50 epochs; lr normalized to batch 2048.
OPTIMUM: dict[str, dict[str, tuple[float, float]]] = {
    "regnety": {"adamw": (3.8e-3, 0.1), "sgd": (2.54, 2.4e-5)},
    "vit_p_1gf": {"adamw": (2.0e-3, 0.20), "sgd": (1.9, 1.3e-5)},
    "vit_p_4gf": {"adamw": (2.0e-3, 0.20), "sgd": (1.9, 1.3e-5)},
    "vit_p_18gf": {"adamw": (1.0e-3, 0.24), "sgd": (1.1, 1.2e-5)},
    "vit_c_1gf": {"adamw": (2.5e-3, 0.19), "sgd": (1.9, 1.3e-5)},
    "vit_c_4gf": {"adamw": (1.0e-3, 0.24), "sgd": (1.3, 2.2e-5)},
    "vit_c_18gf": {"adamw": (1.0e-3, 0.24), "sgd": (1.1, 2.7e-5)},
}

# Table 4: log-uniform sampling intervals ((lr lo, lr hi), (wd lo, wd hi)) per family.
INTERVALS: dict[str, dict[str, tuple[tuple[float, float], tuple[float, float]]]] = {
    "vit": {"adamw": ((2.5e-4, 8.0e-3), (0.02, 0.8)), "sgd": ((0.1, 3.2), (4.0e-6, 1.2e-4))},
    "cnn": {"adamw": ((1.25e-3, 4.0e-2), (0.0075, 0.24)), "sgd": ((0.25, 8.0), (3.0e-6, 8.0e-5))},
}

# Where a family without its own Table 4 row takes its defaults (section 5): ResNet takes the
# RegNetY row; a ViT without a row (36GF, ablations, deeper models) the 4GF optimum of its stem
# type. A family not named here (a researcher's own) has no defaults: its space must be given.
FAMILY_OPTIMUM = {"ViT_P": "vit_p_4gf", "ViT_C": "vit_c_4gf", "RegNetY": "regnety", "ResNet": "regnety"}
FAMILY_INTERVALS = {"ViT_P": "vit", "ViT_C": "vit", "RegNetY": "cnn", "ResNet": "cnn"}


def optimum(model: str, family: str, optim: str) -> tuple[float, float] | None:
    """Table 4's (lr, wd) for a registered model: its own row, else its family's; None for a
    family the paper does not have. Looked up by the registered family, never by the name."""
    if model in OPTIMUM and family in FAMILY_OPTIMUM:
        return OPTIMUM[model][optim]
    row = FAMILY_OPTIMUM.get(family)
    return OPTIMUM[row][optim] if row else None
