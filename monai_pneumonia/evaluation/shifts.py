"""Synthetic acquisition shifts: deterministic image changes that stand in for another machine, dose or processing.

A patient-level split of the training folder is nearly separable and says little about films from other
machines or years. Evaluating the validation split again under each of these shifts shows which acquisition
changes the model is robust to, and pooling the shifted predictions gives a threshold that does not sit in a
gap only the clean validation images leave open (see :mod:`monai_pneumonia.studies.stress`).

Every shift acts on the loaded, resized image in [0, 1] (bright bone), before the per-image intensity
normalisation, exactly where the training augmentations act (``xray_preprocessing(augmentations=...)``).
"""

from __future__ import annotations

from collections.abc import Callable

from monai.config import KeysCollection
from monai.transforms import (
    AdjustContrastd,
    GaussianSharpend,
    GaussianSmoothd,
    MapTransform,
    RandGaussianNoised,
    RandSimulateLowResolutiond,
    ScaleIntensityRanged,
    Zoomd,
)

__all__ = ["ACQUISITION_SHIFTS", "acquisition_shift"]


def _seeded(transform: MapTransform, seed: int = 0) -> MapTransform:
    transform.set_random_state(seed=seed)
    return transform


#: name -> (what it simulates, factory of the dictionary transforms for ``keys``).
ACQUISITION_SHIFTS: dict[str, tuple[str, Callable[[KeysCollection], list[MapTransform]]]] = {
    "none": ("the validation images as they are", lambda keys: []),
    "gamma-0.6": ("brighter mid-tones (another LUT/processing curve)", lambda keys: [AdjustContrastd(keys, gamma=0.6)]),
    "gamma-1.6": ("darker mid-tones (another LUT/processing curve)", lambda keys: [AdjustContrastd(keys, gamma=1.6)]),
    "contrast-0.5": (
        "half the displayed contrast (a wider window)",
        lambda keys: [ScaleIntensityRanged(keys, a_min=0.0, a_max=1.0, b_min=0.25, b_max=0.75)],
    ),
    "blur-1": ("a softer detector (Gaussian blur, sigma 1 pixel at 224)", lambda keys: [GaussianSmoothd(keys, sigma=1.0)]),
    "blur-2": ("a much softer detector (sigma 2 pixels)", lambda keys: [GaussianSmoothd(keys, sigma=2.0)]),
    "sharpen": (
        "edge-enhancement processing (unsharp mask, amount 1, sigma 2)",
        lambda keys: [GaussianSharpend(keys, sigma1=0.1, sigma2=2.0, alpha=1.0)],
    ),
    "noise-0.03": ("lower dose (Gaussian noise, sd 3% of the range)", lambda keys: [_seeded(RandGaussianNoised(keys, prob=1.0, std=0.03))]),
    "noise-0.06": ("much lower dose (sd 6%)", lambda keys: [_seeded(RandGaussianNoised(keys, prob=1.0, std=0.06))]),
    "lowres-0.4": (
        "a coarser detector or a small export (down to 40% and back)",
        lambda keys: [
            RandSimulateLowResolutiond(
                keys, prob=1.0, zoom_range=(0.4, 0.4), downsample_mode="area", upsample_mode="bilinear"
            )
        ],
    ),
    "zoom-in-1.15": ("tighter collimation / another crop (central 87%)", lambda keys: [Zoomd(keys, zoom=1.15, keep_size=True)]),
    "zoom-out-0.85": (
        "wider field of view (film shrunk to 85% with a black border)",
        lambda keys: [Zoomd(keys, zoom=0.85, keep_size=True, padding_mode="constant")],
    ),
}


def acquisition_shift(name: str, keys: KeysCollection = "image") -> list[MapTransform]:
    """The dictionary transforms of one synthetic acquisition shift.

    Meant for ``xray_preprocessing(augmentations=...)`` in an evaluation, e.g. the bundle's
    ``evaluate.json`` knob ``acquisition_shift``. Random-looking shifts (noise) are seeded, so two runs give the
    same images.

    Args:
        name: a key of :data:`ACQUISITION_SHIFTS` (``"none"`` for no change).
        keys: the image key(s).

    Returns:
        The transforms, empty for ``"none"``.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in ACQUISITION_SHIFTS:
        raise ValueError(f"unknown acquisition shift {name!r}; choose one of {sorted(ACQUISITION_SHIFTS)}")
    return ACQUISITION_SHIFTS[name][1](keys)
