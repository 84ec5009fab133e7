"""Radiograph readers: DICOM (display pipeline), PNG/JPEG (Pillow), NIfTI-2D (nibabel), and the acceptance policy.

:func:`load_xray` picks the reader from the file content (:func:`~monai_pneumonia.io.formats.sniff_format`),
never from the name. Every reader returns a row-major ``(rows, columns)`` float32 array in [0, 1]
(1 = bright) and metadata with the same keys for every format (:func:`~monai_pneumonia.io.policy.make_meta`);
the transforms of :mod:`monai_pneumonia.transforms.io` turn it into MONAI's ``(1, W, H)`` ``MetaTensor``.
"""

from __future__ import annotations

import errno
import logging
import os
import stat

import numpy as np

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.dicom import XrayDicomReader, read_dicom
from monai_pneumonia.io.display import dicom_to_display
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

logger = logging.getLogger(__name__)


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
        XrayInputError: missing, empty, not a regular file, unrecognised or refused input, or any failure of a
            reader on it (hostile input never escapes as another exception); the message names the file.
    """
    policy = policy or XrayPolicy()
    try:
        info = os.stat(path)  # follows links; a link loop is ELOOP
    except OSError as error:
        reason = {errno.ENOENT: "file not found", errno.ELOOP: "file not found: a symbolic link loop"}.get(
            error.errno, f"cannot read the file ({errno.errorcode.get(error.errno, 'OSError')})")
        raise XrayInputError(path, reason) from None
    if stat.S_ISDIR(info.st_mode):
        raise XrayInputError(path, "a directory, not an image file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would block open() forever; sockets and devices are no images
        raise XrayInputError(path, "not a regular file (a FIFO, socket or device)")
    if info.st_size == 0:
        raise XrayInputError(path, "empty file (0 bytes)")
    fmt = sniff_format(path)
    try:
        if fmt == DICOM:
            return read_dicom(path, policy, target_size)
        if fmt in (PNG, JPEG):
            return read_raster(path, policy, fmt)
        if fmt == NIFTI:
            return read_nifti(path, policy)
    except XrayInputError:
        raise
    except Exception as error:  # noqa: BLE001 - hostile input: a reader's unforeseen failure refuses this file only
        logger.warning("%s: unexpected %s while reading %s content", os.fspath(path), type(error).__name__, fmt)
        raise XrayInputError(path, f"cannot read the {fmt} file (unexpected {type(error).__name__})") from error
    raise XrayInputError(path, "not a recognised image (expected DICOM, PNG, JPEG or NIfTI content)")
