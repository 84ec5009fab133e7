"""The shortcut study: where the model looks, as the share of its Grad-CAM energy in the thorax, border and corners.

The regions and their maths are the product's (:mod:`monai_pneumonia.evaluation.cam_regions`); this study runs the
bundle's model on a set of films (normally the clean validation split of a stress run) and summarises the shares.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from monai_pneumonia.evaluation.cam_regions import cam_energy_shares, region_areas
from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.visualize import grad_cam
from monai_pneumonia.workflows.datasets import REFUSED_KEY

__all__ = ["shortcut_measurement"]


def shortcut_measurement(
    images: Sequence[str | os.PathLike],
    bundle_root: str | os.PathLike | None = None,
    ckpt_path: str | os.PathLike | None = None,
    batch_size: int = 8,
    device: str | None = "cpu",
) -> dict:
    """Grad-CAM energy shares of the bundle's model on a set of images, with the uniform-map reference.

    Args:
        images: image files (normally the validation split); refused files are skipped and counted.
        bundle_root: the bundle (default: the shipped one).
        ckpt_path: the checkpoint (default: the bundle's ``model.pt``).
        batch_size: images per Grad-CAM pass.
        device: where the network runs.

    Returns:
        ``{"n", "refused", "uniform": {region: area share}, "mean": {region: mean share},
        "ci95": {region: [low, high]} (normal approximation over images)}``.
    """
    classifier = BundleClassifier.from_bundle(bundle_root, ckpt_path=ckpt_path, device=device)
    shares: dict[str, list[np.ndarray]] = {}
    refused, shape = 0, None
    for batch in classifier.batches(list(images), batch_size=batch_size):
        refused += len(batch[REFUSED_KEY])
        if "image" in batch:
            shape = tuple(batch["image"].shape[2:])
            maps = grad_cam(classifier.network, batch["image"].to(classifier.device))
            for name, values in cam_energy_shares(maps).items():
                shares.setdefault(name, []).append(values)
    values = {name: np.concatenate(parts) for name, parts in shares.items()}
    n = len(next(iter(values.values()))) if values else 0
    return {
        "n": n,
        "refused": refused,
        "uniform": region_areas(shape) if shape else {},
        "mean": {name: float(v.mean()) for name, v in values.items()},
        "ci95": {
            name: [float(v.mean() - 1.96 * v.std(ddof=1) / np.sqrt(n)), float(v.mean() + 1.96 * v.std(ddof=1) / np.sqrt(n))]
            for name, v in values.items()
        } if n > 1 else {},
    }
