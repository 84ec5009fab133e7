"""monai-pneumonia: a DICOM-aware MONAI plugin and bundle for pneumonia on pediatric chest radiographs.

Subpackages are imported on first attribute access (``monai_pneumonia.data``, ``monai_pneumonia.networks``, ...),
so ``import monai_pneumonia`` is cheap and bundle config expressions can use the dotted names directly.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBMODULES = frozenset({
    "bundle", "cli", "data", "errors", "evaluation", "inferers", "io", "networks", "registry", "transforms", "visualize",
    "workflows",
})


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
