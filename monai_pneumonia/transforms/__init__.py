"""MONAI transforms of monai-pneumonia."""

from monai_pneumonia.transforms.border import RandBorderErase, RandBorderEraseD, RandBorderErased, RandBorderEraseDict
from monai_pneumonia.transforms.io import LoadXray, LoadXrayD, LoadXrayd, LoadXrayDict
from monai_pneumonia.transforms.pipeline import INTENSITY_NORMALIZATIONS, xray_preprocessing

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
    "xray_preprocessing",
]
