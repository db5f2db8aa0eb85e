"""The paper's model zoo: ViT_P, ViT_C and ablation stems, RegNetY and ResNet-50."""

from models.cost import Cost
from models.zoo import complexity, create, default_patch_size, family, names, stem

__all__ = ["Cost", "complexity", "create", "default_patch_size", "family", "names", "stem"]
