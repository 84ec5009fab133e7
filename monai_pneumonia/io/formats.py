"""Recognise radiograph file formats by content, not by name.

PACS exports often have no extension (``IM00001``) and some carry a misleading one, so the loader and the
folder scanner both decide by magic numbers: the DICOM Part 10 preamble (``DICM`` at byte 128, PS3.10 7.1),
the PNG signature, the JPEG start-of-image marker and the NIfTI-1/2 header size field.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from typing import Final

__all__ = ["DICOM", "JPEG", "NIFTI", "PNG", "RADIOGRAPH_FORMATS", "sniff_format"]

DICOM: Final = "dicom"
PNG: Final = "png"
JPEG: Final = "jpeg"
NIFTI: Final = "nifti"
#: Every format the loader reads.
RADIOGRAPH_FORMATS: Final = (DICOM, PNG, JPEG, NIFTI)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
_GZIP_MAGIC = b"\x1f\x8b"
_NIFTI_HEADER_SIZES = (348, 540)  # sizeof_hdr of NIfTI-1 and NIfTI-2, either byte order


def _is_nifti_header(head: bytes) -> bool:
    if len(head) < 348:
        return False
    little, big = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
    if little not in _NIFTI_HEADER_SIZES and big not in _NIFTI_HEADER_SIZES:
        return False
    return head[344:347] in (b"n+1", b"ni1") or head[4:7] in (b"n+2", b"ni2")


_DICOM_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)


def _is_raw_dicom(head: bytes) -> bool:
    """A data set without preamble: first element (0002,xxxx) or (0008,xxxx), little endian (PS3.5 7.1)."""
    if len(head) < 12:
        return False
    group, element = int.from_bytes(head[0:2], "little"), int.from_bytes(head[2:4], "little")
    if group not in (0x0002, 0x0008) or element > 0x0020:
        return False
    if head[4:6] in _DICOM_VRS:  # explicit VR
        return True
    length = int.from_bytes(head[4:8], "little")  # implicit VR: a short value length
    return length < 256 and length % 2 == 0


def sniff_format(path: str | os.PathLike) -> str | None:
    """Tell the format of a radiograph file from its first bytes.

    Args:
        path: a file.

    Returns:
        One of :data:`RADIOGRAPH_FORMATS`, or ``None`` when the content is none of them, cannot be read, or the
        path is not a regular file (checked with ``stat`` before opening: a FIFO would block ``open`` forever).
        DICOM files without the Part 10 preamble (raw data sets, written by some older systems although
        PS3.10 requires it for files on media) are recognised only by a strict test of the first element:
        a little-endian tag of group 0002 or 0008 followed by a valid explicit VR, or by a short even
        implicit-VR length (:func:`_is_raw_dicom`), so random bytes are not taken for DICOM.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block open(); sockets and devices are no images
            return None
        with open(path, "rb") as stream:
            head = stream.read(540)
            if head[:2] == _GZIP_MAGIC:  # .nii.gz: look inside the first block only
                stream.seek(0)
                with gzip.GzipFile(fileobj=stream) as unzipped:
                    head = unzipped.read(540)
                return NIFTI if _is_nifti_header(head) else None
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error):  # zlib.error: a corrupt deflate stream (fuzzing)
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM
    if head.startswith(_PNG_SIGNATURE):
        return PNG
    if head.startswith(_JPEG_SOI):
        return JPEG
    if _is_nifti_header(head):
        return NIFTI
    if _is_raw_dicom(head):
        return DICOM
    return None
