"""Read a Deflated Explicit VR Little Endian file (PS3.5 A.5) in bounded memory.

pydicom inflates the whole data set with one ``zlib.decompress`` call: a 1.5 MB file that inflates to 1.5 GB
takes 1.5 GB (3.3 GB peak in the loader) before any check runs. :func:`dcmread_bounded` inflates the data set in
chunks instead and stops as soon as it exceeds a limit, which callers derive from the pixel limit
(:func:`inflated_limit`: 4 bytes per allowed pixel plus :data:`HEADROOM` for the header), so a deflate bomb is
refused having used at most that much memory. The inflated data set is then parsed by pydicom from memory as
Explicit VR Little Endian (which is what deflate wraps), and ``file_meta.TransferSyntaxUID`` is put back to the
deflated UID. Every other file goes to ``pydicom.dcmread`` unchanged.
"""

from __future__ import annotations

import os
import zlib
from copy import deepcopy

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from monai_pneumonia.errors import XrayInputError

__all__ = ["HEADROOM", "dcmread_bounded", "inflated_limit"]

#: Bytes allowed for everything but the pixels in an inflated data set.
HEADROOM = 16 * 1024 * 1024
_CHUNK = 1 << 20


def inflated_limit(max_pixels: int) -> int:
    """Largest inflated data set accepted for images of at most ``max_pixels`` pixels (32 bits each)."""
    return int(max_pixels) * 4 + HEADROOM


def _inflate_into(stream, buffer, limit: int, path) -> None:
    """Inflate the raw deflate stream ``stream`` into ``buffer``, refusing more than ``limit`` bytes."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    written = 0
    try:
        while not inflater.eof:
            data = stream.read(_CHUNK)
            if not data:
                break
            while data:
                piece = inflater.decompress(data, limit + 1 - written)
                written += len(piece)
                if written > limit:
                    raise XrayInputError(path, f"deflated data set inflates to more than {limit} bytes (the limit "
                                               "for the pixel limit): refused before parsing (a deflate bomb)")
                buffer.write(piece)
                data = inflater.unconsumed_tail
        tail = inflater.flush()
    except zlib.error as exc:
        raise XrayInputError(path, "not a readable DICOM file (corrupt deflate stream)") from exc
    if written + len(tail) > limit:
        raise XrayInputError(path, f"deflated data set inflates to more than {limit} bytes: refused")
    buffer.write(tail)


def dcmread_bounded(path: str | os.PathLike, limit: int, **kwargs):
    """``pydicom.dcmread(path, **kwargs)``, inflating a deflated data set to at most ``limit`` bytes.

    Args:
        path: a DICOM file.
        limit: most bytes the inflated data set may take (:func:`inflated_limit`).
        kwargs: passed to ``pydicom.dcmread`` (``defer_size`` is ignored for deflated files: their data is in
            memory anyway).

    Returns:
        The data set, as ``pydicom.dcmread`` returns it.

    Raises:
        XrayInputError: the inflated data set exceeds ``limit`` or the deflate stream is corrupt.
        Exception: whatever ``pydicom.dcmread`` raises for an unreadable file.
    """
    try:
        meta = read_file_meta_info(path)
    except Exception:  # noqa: BLE001 - no file meta: not deflated, pydicom reports what it is
        meta = None
    if meta is None or meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return pydicom.dcmread(path, **kwargs)
    buffer = DicomBytesIO()
    buffer.write(b"\0" * 128 + b"DICM")
    plain = deepcopy(meta)
    plain.TransferSyntaxUID = ExplicitVRLittleEndian
    write_file_meta_info(buffer, plain, enforce_standard=False)
    with open(path, "rb") as stream:
        read_preamble(stream, True)
        read_dataset(stream, False, True, stop_when=lambda tag, vr, length: tag.group != 2)  # skip the file meta
        _inflate_into(stream, buffer, limit, path)
    buffer.seek(0)
    kwargs.pop("defer_size", None)
    ds = pydicom.dcmread(buffer, **kwargs)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.filename = os.fspath(path)
    return ds
