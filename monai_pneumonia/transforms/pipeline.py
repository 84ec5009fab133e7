"""The one preprocessing definition shared by training, validation, evaluation, inference and the services.

Every path into the model — ``train.json``, ``evaluate.json``, ``inference.json``, the ``predict`` command, the
DICOM listener and MONAI Label — builds its transforms with :func:`xray_preprocessing`, so a picture gets the
same array, and therefore the same answer, whichever way it arrives.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.config import KeysCollection
from monai.transforms import Compose, EnsureTyped, HistogramNormalized, MapTransform, NormalizeIntensityd, Resized

from monai_pneumonia.transforms.io import LoadXrayd
from monai_pneumonia.transforms.statistics import ImageStatisticsd

__all__ = ["INTENSITY_NORMALIZATIONS", "xray_preprocessing"]

#: Per-image intensity normalisations: ``"zscore"`` (zero mean, unit variance over the image) or ``"histeq"``
#: (histogram equalisation to [0, 1], then z-score), both undoing global brightness/contrast differences
#: between acquisition systems.
INTENSITY_NORMALIZATIONS = ("zscore", "histeq")


def xray_preprocessing(
    keys: KeysCollection = "image",
    spatial_size: int | Sequence[int] = 224,
    augmentations: Sequence[MapTransform] = (),
    intensity: str = "zscore",
    strict: bool = False,
    reduced_decoding: bool = True,
) -> Compose:
    """Load → resize → (augment) → normalise, as a MONAI ``Compose`` of dictionary transforms.

    1. :class:`~monai_pneumonia.transforms.LoadXrayd`: any radiograph to a 1-channel [0, 1] image, bright bone.
       With ``reduced_decoding``, a JPEG 2000 DICOM film is decoded at the smallest wavelet resolution level
       whose sides are all at least the largest side of ``spatial_size`` (e.g. 1/8 of a 2000-pixel film for
       224), so step 2 averages down from there; on the [0, 1] scale the result differs from decoding in full
       by under 0.01 on average (0.006 on the RG1 test film), several times faster.
    2. ``Resized`` to ``spatial_size`` with area interpolation (an anti-aliased average when shrinking a
       2000-pixel film). The aspect ratio is not kept, like the public training images.
    3. ``augmentations`` (training only): random transforms on the [0, 1] image. Everything before the first
       random transform is deterministic, so ``CacheDataset`` caches the decoded, resized image.
    4. Intensity normalisation per image (see :data:`INTENSITY_NORMALIZATIONS`), then float32.

    Args:
        keys: the image key(s).
        spatial_size: the network's input size, an int for a square.
        augmentations: random dictionary transforms applied between resizing and normalisation.
        intensity: ``"zscore"`` or ``"histeq"``.
        strict: passed to the loader: refuse (rather than flag) films whose view or body part is not chest PA/AP.
        reduced_decoding: decode JPEG 2000 DICOM images at a reduced resolution (the loader's ``target_size``);
            ``False`` always decodes at full resolution.

    Returns:
        The transform chain.

    Raises:
        ValueError: for an unknown ``intensity``.
    """
    if intensity not in INTENSITY_NORMALIZATIONS:
        raise ValueError(f"intensity must be one of {INTENSITY_NORMALIZATIONS}, got {intensity!r}.")
    size = [spatial_size, spatial_size] if isinstance(spatial_size, int) else list(spatial_size)
    normalize: list[MapTransform] = []
    if intensity == "histeq":
        normalize.append(HistogramNormalized(keys=keys, num_bins=256, min=0.0, max=1.0))
    normalize.append(NormalizeIntensityd(keys=keys, channel_wise=True))
    return Compose(
        [
            LoadXrayd(keys=keys, strict=strict, target_size=max(size) if reduced_decoding else None),
            ImageStatisticsd(keys=keys),  # for the per-film record (monai_pneumonia.results)
            Resized(keys=keys, spatial_size=size, mode="area"),
            *augmentations,
            *normalize,
            EnsureTyped(keys=keys, dtype="float32"),
        ]
    )
