"""Where a saliency map's energy lies: the central thorax versus the image border and corners.

Text markers, lead letters and collimation edges sit at the border and in the corners of a radiograph; they say
which machine and technologist took the film, not whether the lungs are ill. A model whose Grad-CAM energy sits
there reads a shortcut that fails on another machine. The regions are fixed fractions of the image, so the
measurement needs no lung segmentation:

- ``thorax``: the central box, the middle 70 % of the width and rows 10 %-90 % (where the lungs and heart are on
  an AP/PA chest film, for any of the training images' framings);
- ``border``: the outer band, 10 % of each side;
- ``corners``: the four squares of 15 % of the smaller side (inside the border band or overlapping it).

A uniform map gives each region its area share (:func:`region_areas`), the reference for the measured shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["cam_energy_shares", "region_areas", "region_masks"]


def region_masks(shape: Sequence[int], border: float = 0.1, corner: float = 0.15) -> dict[str, np.ndarray]:
    """Boolean masks of the three regions for a 2D image in MONAI orientation (width, height).

    Args:
        shape: ``(W, H)``.
        border: the border band's width, a fraction of each side.
        corner: the corner squares' side, a fraction of the smaller side.

    Returns:
        ``{"thorax", "border", "corners"}`` masks of ``shape``.
    """
    width, height = (int(s) for s in shape)
    thorax = np.zeros((width, height), dtype=bool)
    thorax[round(0.15 * width): round(0.85 * width), round(0.10 * height): round(0.90 * height)] = True
    band = np.ones((width, height), dtype=bool)
    bw, bh = max(1, round(border * width)), max(1, round(border * height))
    band[bw: width - bw, bh: height - bh] = False
    corners = np.zeros((width, height), dtype=bool)
    size = max(1, round(corner * min(width, height)))
    for xs in (slice(0, size), slice(width - size, width)):
        for ys in (slice(0, size), slice(height - size, height)):
            corners[xs, ys] = True
    return {"thorax": thorax, "border": band, "corners": corners}


def region_areas(shape: Sequence[int]) -> dict[str, float]:
    """Each region's share of the image area: the energy share of a uniform map."""
    return {name: float(mask.mean()) for name, mask in region_masks(shape).items()}


def cam_energy_shares(maps: ArrayLike) -> dict[str, np.ndarray]:
    """Per-image share of Grad-CAM energy (the sum of the non-negative map) in each region.

    Args:
        maps: (N, 1, W, H) Grad-CAM maps (non-negative, e.g. from :func:`~monai_pneumonia.visualize.grad_cam`;
            a CPU tensor or an array).

    Returns:
        ``{region: (N,) shares in [0, 1]}``; an all-zero map counts as uniform.
    """
    array = np.clip(np.asarray(maps, dtype=np.float64), 0.0, None).reshape(len(maps), *np.shape(maps)[-2:])
    masks = region_masks(array.shape[1:])
    total = array.sum(axis=(1, 2))
    flat = total <= 0
    array[flat] = 1.0
    total = array.sum(axis=(1, 2))
    return {name: (array * mask).sum(axis=(1, 2)) / total for name, mask in masks.items()}
