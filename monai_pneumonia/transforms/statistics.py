"""Image statistics of the loaded film, stored in its metadata for the per-film record and the drift monitor.

Computed once, right after loading (before resizing), in the one preprocessing chain
(:func:`~monai_pneumonia.transforms.xray_preprocessing`), so every entry point's records carry them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from monai_pneumonia.results import IMAGE_STATISTICS_KEY

__all__ = ["ImageStatistics", "ImageStatisticsD", "ImageStatisticsDict", "ImageStatisticsd", "image_statistics"]


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """Intensity percentiles 1/50/99, mean and sharpness of a [0, 1] image.

    Sharpness is the mean absolute difference between neighbouring pixels along both axes: blur, heavier
    compression or a different detector's processing change it long before they change the percentiles.

    Args:
        image: a 2-D array (or one with leading singleton axes).

    Returns:
        ``{"p1", "p50", "p99", "mean", "sharpness"}`` as floats.
    """
    array = np.asarray(image, dtype=np.float32).squeeze()
    p1, p50, p99 = np.percentile(array, [1, 50, 99])
    sharpness = 0.5 * (float(np.abs(np.diff(array, axis=0)).mean()) + float(np.abs(np.diff(array, axis=-1)).mean()))
    return {"p1": float(p1), "p50": float(p50), "p99": float(p99), "mean": float(array.mean()),
            "sharpness": sharpness}


class ImageStatistics(Transform):
    """Add :func:`image_statistics` and the loaded ``rows``/``columns`` of a ``MetaTensor`` to ``meta["image_statistics"]``.

    The image itself is unchanged.
    """

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        meta = getattr(image, "meta", None)
        if meta is not None:
            stats = image_statistics(image.detach().cpu().numpy())
            stats["columns"], stats["rows"] = (int(n) for n in image.shape[-2:])  # MONAI's (1, W, H)
            meta[IMAGE_STATISTICS_KEY] = stats
        return image


class ImageStatisticsd(MapTransform):
    """Dictionary version of :class:`ImageStatistics`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.statistics = ImageStatistics()

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.statistics(d[key])
        return d


ImageStatisticsD = ImageStatisticsDict = ImageStatisticsd
