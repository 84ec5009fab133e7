"""Reduced-resolution JPEG 2000 decoding (opt-in, ``target_size``).

A JPEG 2000 codestream holds the image at every wavelet resolution level, each half the size of the one above.
When the caller will shrink the image to ``target_size`` pixels a side anyway,
:func:`~monai_pneumonia.io.dicom.read_dicom` asks OpenJPEG (through Pillow, the one installed binding that exposes
OpenJPEG's resolution reduction) for the smallest level whose sides are all still at least ``target_size``: the
1955 x 1841 RG1 radiograph decodes at 1/8 (245 x 231) for a 224-pixel network, skipping the entropy decoding of
the finer sub-bands. The low-pass band is the local mean of the stored values, so the result is close to decoding
fully and averaging down (what ``Resize(mode="area")`` does). The display pipeline then runs on the smaller array;
PixelSpacing is multiplied by ``2**level``, and ``spatial_shape`` is the decoded size while
``original_rows``/``original_columns`` keep the file's. Anything this path does not handle (not JPEG 2000,
JP2-wrapped or multi-component streams, image offsets, a precision or signedness that differs from the header,
Pillow without OpenJPEG, a decoder error) is decoded in full.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL.Jpeg2KImagePlugin import Jpeg2KImageFile
from pydicom.uid import JPEG2000, JPEG2000Lossless

from monai_pneumonia.io.codestream import j2k_parameters

__all__ = ["reduced_pixel_array", "reduced_side", "reduction_level"]

logger = logging.getLogger(__name__)

#: JPEG 2000 transfer syntaxes decoded at a reduced resolution when a ``target_size`` is given.
_J2K_REDUCIBLE = frozenset((JPEG2000Lossless, JPEG2000))


def reduced_side(length: int, level: int) -> int:
    """Side length at resolution reduction ``level``: ``ceil(length / 2**level)`` (ISO 15444-1 B.5)."""
    return (length + (1 << level) - 1) >> level


def reduction_level(rows: int, columns: int, target_size: int | None, max_level: int) -> int:
    """The largest resolution reduction that keeps both sides at least ``target_size``.

    Args:
        rows: image height at full resolution.
        columns: image width at full resolution.
        target_size: smallest side the caller needs; ``None`` or less than 1 means full resolution.
        max_level: number of wavelet decomposition levels in the codestream (the deepest possible reduction).

    Returns:
        ``r`` in ``[0, max_level]``: decode at ``1 / 2**r`` of the full size.
    """
    if not target_size or target_size < 1:
        return 0
    level = 0
    while level < max_level and min(reduced_side(rows, level + 1), reduced_side(columns, level + 1)) >= target_size:
        level += 1
    return level


class _OpenJpegSizedJpeg2K(Jpeg2KImageFile):
    """Pillow's JPEG 2000 image of a bare codestream, set up to decode at a resolution reduction with OpenJPEG's size.

    Pillow's public ``reduce`` attribute picks the level but rounds the reduced size to the nearest integer, where
    OpenJPEG rounds up (``ceil(side / 2**level)``, ISO 15444-1 B.5), and its decoder then refuses the stream: the
    1955-row RG1 film at 1/8 is 245 rows to OpenJPEG, 244 to Pillow. No public Pillow API sets that size, so this
    subclass sets ``_size`` and ``tile`` itself, as Pillow's handbook ("Writing your own image plugin") has an
    ``ImageFile`` subclass do; ``tile``'s arguments are those of Pillow's ``jpeg2k`` decoder (codec, reduce, layers,
    fd, length). ``tests/io/test_reduced.py`` pins both Pillow behaviours this relies on: when Pillow's own
    ``reduce`` rounds as OpenJPEG does, that test fails, and ``image.reduce = level`` replaces this class.

    Args:
        codestream: a bare J2K codestream (SOC, SIZ, ...).
        level: the resolution reduction, ``1 / 2**level`` of each side.
        rows: image height at full resolution.
        columns: image width at full resolution.

    Raises:
        ValueError: not a single-tile grey image Pillow can decode (``L`` or ``I;16``).
    """

    def __init__(self, codestream: bytes, level: int, rows: int, columns: int) -> None:
        super().__init__(io.BytesIO(codestream))
        if self.mode not in ("L", "I;16") or len(self.tile) != 1:
            raise ValueError(f"unsupported Pillow JPEG 2000 image (mode {self.mode}, {len(self.tile)} tiles)")
        size = (reduced_side(columns, level), reduced_side(rows, level))
        tile = self.tile[0]
        args = tuple(tile[3])
        self._size = size
        self.tile = [tile._replace(extents=(0, 0, *size), args=(args[0], level, *args[2:]))]


def _pillow_j2k_decode(codestream: bytes, level: int, rows: int, columns: int) -> np.ndarray:
    """Decode a grey J2K codestream at resolution reduction ``level`` with Pillow's OpenJPEG decoder.

    Returns:
        Pillow's raw values: ``uint8`` (precision <= 8) or ``uint16``, scaled up to the full container width.
    """
    with _OpenJpegSizedJpeg2K(codestream, level, rows, columns) as image:
        image.load()
        return np.asarray(image)


def reduced_pixel_array(
    ds, transfer_syntax: str, target_size: int | None, codestream: bytes | None
) -> tuple[np.ndarray, int] | None:
    """Stored values decoded at a reduced JPEG 2000 resolution level, or ``None`` to decode in full.

    Args:
        ds: the data set (single frame, header already checked).
        transfer_syntax: its transfer syntax UID.
        target_size: smallest side the caller needs.
        codestream: the encapsulated frame (:func:`~monai_pneumonia.io.codestream.compressed_frame`), ``None``
            when there is none.

    Returns:
        ``(stored, level)``: the stored values (dtype as pydicom gives them) of the image reduced by
        ``2**level`` (``level >= 1``), or ``None`` when the reduced path does not apply or fails.
    """
    if not target_size or codestream is None or str(transfer_syntax) not in _J2K_REDUCIBLE:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    try:
        params = j2k_parameters(codestream)
        if params is None or not _reducible(ds, params, rows, columns):
            return None
        level = reduction_level(rows, columns, target_size, params["levels"])
        if level == 0:
            return None
        raw = _pillow_j2k_decode(codestream, level, rows, columns)
    except Exception as exc:  # no OpenJPEG in Pillow, odd stream, Pillow's plugin internals changed: decode in full
        logger.debug("reduced JPEG 2000 decoding not used: %s", exc)
        return None
    precision, signed = params["precision"], params["signed"]
    values = raw.astype(np.int32) >> (raw.dtype.itemsize * 8 - precision)  # undo Pillow's scaling up
    if signed:  # Pillow shifted signed samples up by 2**(precision - 1)
        values -= 1 << (precision - 1)
    dtype = np.dtype(f"{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}")
    return values.astype(dtype), level


def _reducible(ds, params: dict, rows: int, columns: int) -> bool:
    """Whether the codestream is one the reduced path decodes exactly as pydicom would at full size."""
    return (
        params["components"] == 1
        and int(ds.get("SamplesPerPixel", 1)) == 1
        and params["offset"] == (0, 0)
        and (params["rows"], params["columns"]) == (rows, columns)
        and params["precision"] == int(ds.BitsStored)
        and int(ds.BitsAllocated) in (8, 16)
        and params["precision"] <= int(ds.BitsAllocated)
        and params["signed"] == (int(ds.get("PixelRepresentation", 0)) == 1)
    )
