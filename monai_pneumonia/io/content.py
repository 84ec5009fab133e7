"""Never classify a film with no picture: blank, constant, near-constant and NaN/infinite images are refused.

Every reader calls :func:`require_picture` on the image it returns (values in [0, 1] after the display
pipeline), and the DICOM reader also on the stored values before windowing, because a window or the percentile
fallback stretches any two neighbouring grey levels to black and white and would turn a blank detector with a
little noise into a "picture".

The rule, on the central 99 % of the pixels (the 0.5th to the 99.5th percentile, so a burned-in label or a few
dead pixels do not count as a picture):

* **not finite**: any NaN or infinite value -> refused;
* **displayed spread** below :data:`MIN_DISPLAY_SPREAD` (8 grey levels of 255) -> refused;
* **stored spread** (DICOM only) below :data:`MIN_STORED_LEVELS` stored values -> refused.

Measured: over 600 randomly chosen films of the Kermany chest X-ray set and the four DICOM files of
``samples/``, the smallest displayed spread was 0.38 (1st percentile 0.53, median 0.80), 12 times the limit
(``scripts/measure_picture_rule.py DATA_DIR samples/*/*.dcm``), so no real radiograph is near it; a constant image,
RescaleSlope 0 or an all-zero PNG have 0, an all-NaN NIfTI is not finite. The percentiles are computed on a regular
grid of about 250,000 pixels (every 4th row and column of a 2000 x 2000 film): about 14 ms for a 1955 x 1841 film,
against 95 ms on every second row and column (measured with ``timeit``-style loops on a loaded machine).
"""

from __future__ import annotations

import os

import numpy as np

from monai_pneumonia.errors import XrayInputError

__all__ = ["MIN_DISPLAY_SPREAD", "MIN_STORED_LEVELS", "PICTURE_PERCENTILES", "SAMPLE_PIXELS", "require_picture"]

#: Smallest accepted spread of the displayed image (values in [0, 1]) over its central 99 %: 8 grey levels of 255.
MIN_DISPLAY_SPREAD = 8 / 255
#: Smallest accepted spread of the DICOM stored values over their central 99 %.
MIN_STORED_LEVELS = 8
#: The percentiles bounding "the central 99 % of the pixels".
PICTURE_PERCENTILES = (0.5, 99.5)


#: About this many pixels are sampled (a regular grid) for the percentiles of a large image.
SAMPLE_PIXELS = 250_000


def _spread(values: np.ndarray) -> float:
    """Central-99 % spread of ``values``, on a regular grid of about :data:`SAMPLE_PIXELS` pixels."""
    step = max(1, int(np.sqrt(values.size / SAMPLE_PIXELS))) if values.ndim == 2 else 1
    lo, hi = np.percentile(values[::step, ::step] if step > 1 else values, PICTURE_PERCENTILES)
    return float(hi) - float(lo)


def require_picture(path: str | os.PathLike | None, image: np.ndarray, stored: np.ndarray | None = None) -> None:
    """Refuse an image that carries no picture (the module docstring's rule).

    Args:
        path: the file, for the message.
        image: the displayed image, float in [0, 1].
        stored: DICOM stored values before the modality and VOI LUTs (``None`` for other formats).

    Raises:
        XrayInputError: NaN/infinite values, or a blank, constant or near-constant image.
    """
    if image.size == 0:
        raise XrayInputError(path, "no picture: the image has no pixels")
    if not np.isfinite(image).all():
        raise XrayInputError(path, "no picture: the image holds NaN or infinite values")
    if stored is not None and stored.size:
        spread = _spread(np.asarray(stored))
        if not np.isfinite(spread) or spread < MIN_STORED_LEVELS:
            raise XrayInputError(
                path, f"no picture: the stored pixel values of the central 99 % of the image span {spread:g} "
                      f"levels (a blank or constant image; at least {MIN_STORED_LEVELS} are required)")
    spread = _spread(image)
    if spread < MIN_DISPLAY_SPREAD:
        raise XrayInputError(
            path, f"no picture: the displayed image is blank or constant (its central 99 % spans {spread:.4f} of "
                  f"the grey range; at least {MIN_DISPLAY_SPREAD:.4f} is required)")
