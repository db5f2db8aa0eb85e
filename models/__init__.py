"""The model zoo and the one registry: ViT_P, ViT_C and ablation stems, RegNetY, ResNet-50, and
any model a researcher registers with ``models.register``."""

from models import zoo as _zoo  # noqa: F401  (registers the paper's models)
from models.cost import Cost  # noqa: F401
from models.registry import complexity, create, family, import_in_worker, import_module, names, register, stem  # noqa: F401
from models.zoo import default_patch_size  # noqa: F401
