"""MONAI transforms of monai-pneumonia."""

from monai_pneumonia.transforms.border import RandBorderErase, RandBorderEraseD, RandBorderErased, RandBorderEraseDict
from monai_pneumonia.transforms.io import LoadXray, LoadXrayD, LoadXrayd, LoadXrayDict
from monai_pneumonia.transforms.pipeline import INTENSITY_NORMALIZATIONS, xray_preprocessing
from monai_pneumonia.transforms.soft_target import (
    SoftTarget,
    SoftTargetD,
    SoftTargetd,
    SoftTargetDict,
    mix_soft_targets,
)

__all__ = [
    "INTENSITY_NORMALIZATIONS",
    "LoadXray",
    "LoadXrayD",
    "LoadXrayDict",
    "LoadXrayd",
    "RandBorderErase",
    "RandBorderEraseD",
    "RandBorderEraseDict",
    "RandBorderErased",
    "SoftTarget",
    "SoftTargetD",
    "SoftTargetDict",
    "SoftTargetd",
    "mix_soft_targets",
    "xray_preprocessing",
]
