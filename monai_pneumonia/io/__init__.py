"""Radiograph readers: DICOM (display pipeline), PNG/JPEG (Pillow), NIfTI-2D (nibabel), and the acceptance policy.

:func:`load_xray` picks the reader from the file content (:func:`~monai_pneumonia.io.formats.sniff_format`),
never from the name. Every reader returns a row-major ``(rows, columns)`` float32 array in [0, 1]
(1 = bright) and metadata with the same keys for every format (:func:`~monai_pneumonia.io.policy.make_meta`);
the transforms of :mod:`monai_pneumonia.transforms.io` turn it into MONAI's ``(1, W, H)`` ``MetaTensor``.
"""

from __future__ import annotations

import os

import numpy as np

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.dicom import XrayDicomReader, dicom_to_display, read_dicom
from monai_pneumonia.io.formats import DICOM, JPEG, NIFTI, PNG, RADIOGRAPH_FORMATS, sniff_format
from monai_pneumonia.io.nifti import read_nifti
from monai_pneumonia.io.policy import DEFAULT_MAX_PIXELS, PROJECTION_MODALITIES, XrayPolicy, make_meta
from monai_pneumonia.io.raster import read_raster

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "PROJECTION_MODALITIES",
    "RADIOGRAPH_FORMATS",
    "XrayDicomReader",
    "XrayPolicy",
    "dicom_to_display",
    "load_xray",
    "make_meta",
    "read_dicom",
    "read_nifti",
    "read_raster",
    "sniff_format",
]


def load_xray(
    path: str | os.PathLike, policy: XrayPolicy | None = None, target_size: int | None = None
) -> tuple[np.ndarray, dict]:
    """Load any supported radiograph file.

    Args:
        path: a DICOM, PNG, JPEG or NIfTI file (recognised by content).
        policy: acceptance policy (default :class:`XrayPolicy`).
        target_size: the smallest side the caller will resize to; JPEG 2000 DICOM images are then decoded at a
            reduced resolution that keeps both sides at least this (:func:`read_dicom`). Other formats ignore it.

    Returns:
        ``(image, meta)``: float32 ``(rows, columns)`` in [0, 1], 1 = bright, and its metadata.

    Raises:
        XrayInputError: missing, empty, unrecognised or refused input; the message names the file.
    """
    policy = policy or XrayPolicy()
    if not os.path.exists(path):
        raise XrayInputError(path, "file not found")
    if os.path.isdir(path):
        raise XrayInputError(path, "a directory, not an image file")
    if os.path.getsize(path) == 0:
        raise XrayInputError(path, "empty file (0 bytes)")
    fmt = sniff_format(path)
    if fmt == DICOM:
        return read_dicom(path, policy, target_size)
    if fmt in (PNG, JPEG):
        return read_raster(path, policy, fmt)
    if fmt == NIFTI:
        return read_nifti(path, policy)
    raise XrayInputError(path, "not a recognised image (expected DICOM, PNG, JPEG or NIfTI content)")
