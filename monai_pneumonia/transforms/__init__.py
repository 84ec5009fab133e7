"""MONAI transforms of monai-pneumonia."""

from monai_pneumonia.transforms.border import RandBorderErase, RandBorderEraseD, RandBorderErased, RandBorderEraseDict
from monai_pneumonia.transforms.io import LoadXray, LoadXrayD, LoadXrayd, LoadXrayDict
from monai_pneumonia.transforms.pipeline import INTENSITY_NORMALIZATIONS, xray_preprocessing
from monai_pneumonia.transforms.statistics import (
    ImageStatistics,
    ImageStatisticsD,
    ImageStatisticsd,
    ImageStatisticsDict,
    image_statistics,
)

__all__ = [
    "INTENSITY_NORMALIZATIONS",
    "ImageStatistics",
    "ImageStatisticsD",
    "ImageStatisticsDict",
    "ImageStatisticsd",
    "LoadXray",
    "LoadXrayD",
    "LoadXrayDict",
    "LoadXrayd",
    "RandBorderErase",
    "RandBorderEraseD",
    "RandBorderEraseDict",
    "RandBorderErased",
    "image_statistics",
    "xray_preprocessing",
]
