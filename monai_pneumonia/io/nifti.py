"""Read a 2D radiograph stored as NIfTI-1/2 with nibabel.

* Shape: ``(X, Y)`` or ``(X, Y, 1)`` (a singleton third axis, and singleton axes beyond, are squeezed);
  a true volume (third axis > 1) is refused. The voxel array is taken as stored, first axis = x, as MONAI's
  ``NibabelReader`` does, without reorienting: the output is already MONAI's ``(W, H)`` orientation, and the
  affine of the file (its 4x4 sform/qform) is kept in ``meta["affine"]``.
* Spacing: the voxel sizes of the first two axes (``header.get_zooms()``), in mm when ``xyzt_units`` says mm
  or is unset.
* Intensity: the scaled data (``scl_slope``/``scl_inter`` applied by ``get_fdata``), 1 = bright. Float data
  already within [0, 1] is kept as is. Integer data uses the DICOM fallback of
  :func:`~monai_pneumonia.io.display.fallback_normalise` on the range of its on-disk type (so an 8-bit picture
  saved as uint8 loads as ``v / 255``); other float data gets the percentile window of that rule.
* No picture (:mod:`monai_pneumonia.io.content`): NaN or infinite voxels, or a blank / constant image, are refused.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.content import require_picture
from monai_pneumonia.io.display import fallback_normalise
from monai_pneumonia.io.formats import NIFTI
from monai_pneumonia.io.policy import XrayPolicy, make_meta

__all__ = ["read_nifti"]


def read_nifti(path: str | os.PathLike, policy: XrayPolicy | None = None) -> tuple[np.ndarray, dict]:
    """Read a 2D NIfTI image.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        policy: acceptance policy (the size limit applies).

    Returns:
        ``(image, meta)``: float32 ``(rows, columns)`` in [0, 1] (row-major like the other readers; the
        transforms transpose back to ``(X, Y)``) and the metadata, whose affine is the file's.

    Raises:
        XrayInputError: unreadable, 3D, too large, no picture.
    """
    policy = policy or XrayPolicy()
    try:
        img = nib.load(os.fspath(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:
        raise XrayInputError(path, f"not a readable NIfTI file ({type(exc).__name__}: {exc})") from exc
    if len(shape) < 2 or any(s != 1 for s in shape[2:]):
        raise XrayInputError(path, f"NIfTI image of shape {shape} is not 2D (a volume or time series)")
    x, y = shape[:2]
    policy.check_size(path, y, x)
    try:
        raw_dtype = img.get_data_dtype()
        proxy = img.dataobj
        unscaled = proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else np.asarray(proxy)
        data = np.asarray(unscaled).reshape(x, y)
        slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
        zooms = img.header.get_zooms()[:2]
        affine = img.affine
    except Exception as exc:
        raise XrayInputError(path, f"cannot read NIfTI voxel data ({type(exc).__name__}: {exc})") from exc
    if raw_dtype.fields is not None or not (np.issubdtype(raw_dtype, np.integer) or np.issubdtype(raw_dtype, np.floating)):
        raise XrayInputError(path, f"NIfTI data type {'RGB/RGBA colour' if raw_dtype.fields else raw_dtype.name} is not "
                                   "a grey radiograph (integer or real voxels required)")
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    values = data.astype(np.float64) * slope + inter
    if not np.isfinite(values).all():  # a radiograph has no undefined pixels
        raise XrayInputError(path, "no picture: the image holds NaN or infinite values")
    if np.issubdtype(raw_dtype, np.integer):
        info = np.iinfo(raw_dtype)
        image, rule = fallback_normalise(values, info.min * slope + inter, info.max * slope + inter)
    elif np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0:
        image, rule = values.astype(np.float32), "unit"
    else:
        image, rule = fallback_normalise(values, 0.0, 0.0)  # empty range: always the percentile window
    require_picture(path, image, data if np.issubdtype(raw_dtype, np.integer) else None)  # raw stored levels
    unit = img.header.get_xyzt_units()[0]
    known = unit in ("mm", "unknown") and all(float(z) > 0 for z in zooms)
    spacing_rc = (float(zooms[1]), float(zooms[0])) if known else None
    meta = make_meta(
        path,
        NIFTI,
        y,
        x,
        spacing_rc=spacing_rc,
        spacing_source="pixdim" if known else "",
        intensity_rule=rule,
        bits=int(raw_dtype.itemsize * 8),
        affine=affine,
    )
    return np.ascontiguousarray(image.T), meta
