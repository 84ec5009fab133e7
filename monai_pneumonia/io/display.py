"""The DICOM grayscale display pipeline (PS3.4 N.2): stored values to what a radiologist sees, as floats in [0, 1].

All steps are done by pydicom's own functions, on the stored values (``Dataset.pixel_array``, which keeps only
BitsStored bits and sign-extends when PixelRepresentation is 1, PS3.5 8.1.1):

1. Modality LUT (PS3.3 C.11.1): :func:`pydicom.pixels.apply_modality_lut`, i.e. Rescale Slope/Intercept or
   the Modality LUT Sequence.
2. VOI LUT (PS3.3 C.11.2): :func:`pydicom.pixels.apply_voi_lut` with the first view (``index=0``) when several
   windows are given; the VOI LUT Sequence is preferred to Window Center/Width when both exist; VOI LUT
   Function LINEAR, LINEAR_EXACT and SIGMOID (C.11.2.1.2, C.11.2.1.3). The result is scaled to [0, 1] by the
   output range of that step as pydicom defines it: ``[0, 2**n - 1]`` for a VOI LUT of n-bit entries, and for
   a window the range of the stored bits passed through the modality LUT.
3. Without any usable VOI attribute, the **fallback**: let ``[lo, hi]`` be the range the stored bits can
   represent (``[0, 2**BitsStored - 1]``, or the signed range), passed through the modality LUT. If the
   image spans at least :data:`FULL_RANGE_MIN_SPAN` (a quarter) of it, ``(v - lo) / (hi - lo)``: the encoder
   used the bit depth it declared, so this is exact, and a picture written as 8-bit (``v``) or as 12-bit
   (``round(v * 4095 / 255)``) loads back as ``v / 255``. Otherwise the declared depth is not used (typically
   12-bit data declared as 16 bits) and a percentile window, 0.5 % to 99.5 %, clipped, avoids a black image.
   Both are deterministic; ``meta["intensity_rule"]`` says which one applied.
4. MONOCHROME1 (PS3.3 C.7.6.3.1.2: minimum value is white) is inverted *after* windowing: ``1 - v``.

A NaN/infinite RescaleSlope/Intercept (or a slope of 0) is refused; a NaN/infinite or non-positive window is not
used (step 3's fallback, flag ``voi_invalid``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence

import numpy as np

from monai_pneumonia.errors import XrayInputError

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pydicom 2.4, kept by the MONAI Label environment (its pydicom-seg does not import with pydicom 3)
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

__all__ = ["FULL_RANGE_MIN_SPAN", "PERCENTILE_WINDOW", "dicom_to_display", "fallback_normalise"]

logger = logging.getLogger(__name__)

#: Fraction of the representable range the data must span for the full-range fallback.
FULL_RANGE_MIN_SPAN = 0.25
#: Percentiles of the fallback window used when the data spans less than that.
PERCENTILE_WINDOW = (0.5, 99.5)


def fallback_normalise(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, str]:
    """Map values to [0, 1] when no window is given (module docstring, step 3).

    Args:
        values: intensities after the modality LUT.
        lo: the value the lowest stored value maps to.
        hi: the value the highest stored value maps to.

    Returns:
        The mapped array (float32, clipped to [0, 1]) and the rule used: ``"full_range"`` or ``"percentile"``.
    """
    lo, hi = min(lo, hi), max(lo, hi)
    vmin, vmax = float(values.min()), float(values.max())
    if hi > lo and (vmax - vmin) >= FULL_RANGE_MIN_SPAN * (hi - lo):
        rule = "full_range"
    else:
        rule = "percentile"
        lo, hi = (float(p) for p in np.percentile(values, PERCENTILE_WINDOW))
        if hi <= lo:
            lo, hi = vmin, vmax
    if hi <= lo:  # constant image
        return np.zeros(values.shape, dtype=np.float32), rule
    out = (values.astype(np.float32, copy=False) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out), rule


def _stored_range(ds) -> tuple[float, float]:
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _modality_range(ds) -> tuple[float, float]:
    """The range of the modality LUT output for the representable stored values (PS3.3 C.11.1).

    For a Modality LUT Sequence this is the range of its entries (whose declared depth is 8 or 16 bits even
    when they hold 12-bit values).
    """
    lo, hi = _stored_range(ds)
    if ds.get("ModalityLUTSequence"):
        descriptor = ds.ModalityLUTSequence[0].LUTDescriptor
        first, entries = int(descriptor[1]), int(descriptor[0]) or 65536
        outputs = apply_modality_lut(np.arange(first, first + entries, dtype=np.int64), ds)
        return float(np.min(outputs)), float(np.max(outputs))
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        return lo * float(slope) + float(intercept), hi * float(slope) + float(intercept)
    return lo, hi


def _voi_output_range(ds) -> tuple[float, float]:
    """Output range of pydicom's VOI step: the LUT entry range, or for a window the modality range."""
    if ds.get("VOILUTSequence"):
        return 0.0, 2.0 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    return _modality_range(ds)


def _has_voi(ds) -> bool:
    if ds.get("VOILUTSequence"):
        return True
    return ds.get("WindowCenter") not in (None, "") and ds.get("WindowWidth") not in (None, "")


def _first_number(ds, keyword: str) -> float | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, bytes)) and isinstance(value, Sequence):
        value = value[0] if len(value) else None
    return None if value is None else float(value)


def _require_finite_rescale(ds, path) -> None:
    """Refuse RescaleSlope/RescaleIntercept that are NaN, infinite, or a slope of 0 (every pixel the same).

    Raises:
        XrayInputError: naming the attribute (never its value).
    """
    for keyword, tag in (("RescaleSlope", "(0028,1053)"), ("RescaleIntercept", "(0028,1052)")):
        try:
            value = _first_number(ds, keyword)
        except (TypeError, ValueError):
            raise XrayInputError(path, f"{keyword} {tag} is not a number: no usable modality LUT") from None
        if value is not None and (not np.isfinite(value) or (keyword == "RescaleSlope" and value == 0)):
            raise XrayInputError(path, f"{keyword} {tag} is {'0' if value == 0 else 'NaN or infinite'}: no usable "
                                       "modality LUT (PS3.3 C.11.1), so no picture")


def _require_finite_window(ds) -> None:
    """Raise ``ValueError`` (falls back to the documented window) for a NaN/infinite center or a bad width."""
    center, width = _first_number(ds, "WindowCenter"), _first_number(ds, "WindowWidth")
    if center is None or width is None or not np.isfinite(center) or not np.isfinite(width) or width <= 0:
        raise ValueError("WindowCenter/WindowWidth are not finite, or the width is not positive")


def dicom_to_display(stored: np.ndarray, ds, path: str | os.PathLike | None = None) -> tuple[np.ndarray, dict]:
    """Apply the display pipeline of the module docstring to stored pixel values.

    Args:
        stored: ``ds.pixel_array`` (one frame, 2D).
        ds: the data set (Image Pixel, Modality LUT and VOI LUT modules).
        path: the file, for messages.

    Returns:
        ``(image, info)``: float32 ``(rows, columns)`` in [0, 1] with 1 = bright, and
        ``{"intensity_rule": ..., "flags": [...]}``.

    A window (VOI) that is NaN, infinite, of width <= 0 or that pydicom cannot apply is not used: the fallback of
    step 3 applies and ``voi_invalid`` is flagged. A NaN/infinite rescale or a slope of 0 is refused.

    Raises:
        XrayInputError: a modality LUT that is not finite or that pydicom cannot apply.
    """
    flags: list[str] = []
    if not ds.get("ModalityLUTSequence"):
        _require_finite_rescale(ds, path)
    try:
        values = apply_modality_lut(stored, ds)
    except Exception as exc:  # malformed Modality LUT Sequence / rescale values
        raise XrayInputError(path, f"cannot apply the modality LUT (PS3.3 C.11.1): {type(exc).__name__}") from exc
    image = None
    rule = ""
    if _has_voi(ds):
        try:
            if not ds.get("VOILUTSequence"):
                _require_finite_window(ds)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                windowed = apply_voi_lut(values, ds, index=0, prefer_lut=True)
            if not np.isfinite(windowed).all():
                raise ValueError("the VOI LUT gives NaN or infinite values")
            lo, hi = _voi_output_range(ds)
            if hi == lo:
                raise ValueError("empty VOI output range")
            image = ((windowed - lo) / (hi - lo)).astype(np.float32)
            np.clip(image, 0.0, 1.0, out=image)
            rule = (
                "voi_lut" if ds.get("VOILUTSequence") else f"window:{str(ds.get('VOILUTFunction', 'LINEAR')).upper()}"
            )
        except Exception as exc:  # invalid width, unknown function, broken LUT: fall back, but say so
            logger.warning("%s: unusable VOI LUT (%s); using the fallback mapping", path, type(exc).__name__)
            flags.append("voi_invalid")
    if image is None:
        image, rule = fallback_normalise(np.asarray(values), *_modality_range(ds))
    if str(ds.PhotometricInterpretation).strip() == "MONOCHROME1":
        np.subtract(1.0, image, out=image)
    return image, {"intensity_rule": rule, "flags": flags}
