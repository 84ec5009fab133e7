"""Compressed frames and the size their own codestream headers declare, read without decoding.

A JPEG, JPEG-LS or JPEG 2000 frame carries its own image size (ITU-T T.81 B.2.2, T.87 5.2.2, ISO 15444-1
A.5.1). :func:`check_frame_header` refuses a frame that declares another size than the data set's Rows x Columns
before any decoder allocates memory for it, and :func:`j2k_parameters` reads what the reduced-resolution JPEG 2000
path (:mod:`monai_pneumonia.io.reduced`) needs from the main header.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.codec import J2K_SYNTAXES, JPEG_LS_SYNTAXES, JPEG_SYNTAXES

try:  # pydicom >= 3
    from pydicom.encaps import get_frame
except ImportError:  # pydicom 2.4 (the MONAI Label environment)
    from pydicom.encaps import generate_pixel_data_frame

    get_frame = None
try:  # pylibjpeg-openjpeg reads a JPEG 2000 header (JP2 boxes included) without decoding
    import openjpeg
except ImportError:  # optional: without it the bare codestream's SIZ is read here
    openjpeg = None

__all__ = ["check_frame_header", "compressed_frame", "j2k_parameters"]

_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_J2K_COD, _J2K_COC, _J2K_SOT = b"\xff\x52", b"\xff\x53", b"\xff\x90"
#: Start-of-frame markers whose segment gives the frame's size (ITU-T T.81 B.2.2, T.87 5.2.2): every SOFn except
#: DHT (C4), JPG (C8) and DAC (CC), plus JPEG-LS SOF55 (F7).
_JPEG_SOF = frozenset([*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7])
#: Decodable transfer syntaxes whose frames carry a codestream header: JPEG, JPEG-LS, JPEG 2000 and HTJ2K.
_WITH_CODESTREAM = JPEG_SYNTAXES | JPEG_LS_SYNTAXES | J2K_SYNTAXES
#: How far into a frame a bare codestream header is looked for when pylibjpeg-openjpeg is not installed.
_HEADER_SEARCH = 4096


def _j2k_image_area(codestream: bytes, at: int = 0) -> tuple[int, int, int, int]:
    """``(rows, columns, x offset, y offset)`` of the SIZ segment (ISO 15444-1 A.5.1) after the SOC marker at ``at``.

    Rows and columns are the image area (Ysiz - YOsiz, Xsiz - XOsiz); the caller checks that 24 bytes follow ``at``.
    """
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">4I", codestream[at + 8 : at + 24])
    return ysiz - yosiz, xsiz - xosiz, xosiz, yosiz


def j2k_parameters(codestream: bytes) -> dict | None:
    """Size, precision, signedness and decomposition levels from a raw J2K codestream's main header.

    Reads SIZ (ISO 15444-1 A.5.1) and the COD/COC markers of the main header (A.6.1, A.6.2). Returns ``None``
    for anything that is not a bare codestream (e.g. a JP2 file) or a header too short to parse.
    """
    if codestream[:4] != _J2K_SOC_SIZ or len(codestream) < 45:
        return None
    length = struct.unpack(">H", codestream[4:6])[0]
    rows, columns, xosiz, yosiz = _j2k_image_area(codestream)
    components = struct.unpack(">H", codestream[40:42])[0]
    ssiz = codestream[42]
    levels = None
    pos = 4 + length
    while pos + 10 <= len(codestream) and codestream[pos:pos + 2] != _J2K_SOT:
        marker = codestream[pos:pos + 2]
        if marker == _J2K_COD:  # Lcod, Scod, SGcod (4 bytes), then SPcod's number of decomposition levels
            levels = min(levels if levels is not None else 255, codestream[pos + 9])
        elif marker == _J2K_COC and components < 257:  # Lcoc, Ccoc (1 byte), Scoc, then SPcoc's levels
            levels = min(levels if levels is not None else 255, codestream[pos + 6])
        pos += 2 + struct.unpack(">H", codestream[pos + 2:pos + 4])[0]
    if levels is None:
        return None
    return {
        "rows": rows,
        "columns": columns,
        "offset": (xosiz, yosiz),
        "components": components,
        "precision": (ssiz & 0x7F) + 1,
        "signed": bool(ssiz & 0x80),
        "levels": levels,
    }


def _first_frame(ds) -> bytes:
    """The encapsulated codestream of the single frame."""
    if get_frame is None:  # pydicom 2.4
        return next(generate_pixel_data_frame(ds.PixelData, 1))
    return get_frame(ds.PixelData, 0, number_of_frames=1)


def compressed_frame(ds, syntax: str) -> bytes | None:
    """The single encapsulated frame of a JPEG, JPEG-LS or JPEG 2000 syntax, ``None`` for others or when unreadable.

    Read once per file: the frame-header check and the reduced-resolution path both use it.
    """
    if syntax not in _WITH_CODESTREAM or "PixelData" not in ds:
        return None
    try:
        return _first_frame(ds)
    except Exception:  # not encapsulated as it should be: the decoder reports it
        return None


def _scan_jpeg_sof(frame: bytes) -> tuple[str, int, int] | None:
    """``(codec, rows, columns)`` of the first start-of-frame segment, walking the marker segments.

    Used for JPEG-LS (no installed library reads its header without decoding) and when Pillow cannot read a JPEG
    header. Any marker may be preceded by 0xFF fill bytes (ITU-T T.81 B.1.1.2); RSTn and TEM have no length.
    """
    pos, end = 2, len(frame)
    while pos + 4 <= end:
        if frame[pos] != 0xFF:
            return None
        while pos + 2 < end and frame[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        marker = frame[pos + 1]
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", frame[pos + 5 : pos + 9])
            return ("JPEG-LS" if marker == 0xF7 else "JPEG"), height, width
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or a scan before any frame header
            return None
        pos += 2 + struct.unpack(">H", frame[pos + 2 : pos + 4])[0]
    return None


def _frame_size(frame: bytes, syntax: str = "") -> tuple[str, int, int] | None:
    """``(codec, rows, columns)`` declared by a compressed frame's own header, ``None`` when it has no known header.

    Read by the codec libraries' own header parsers where they have one, without decoding: OpenJPEG's
    (``openjpeg.get_parameters``, which walks JP2 boxes to the codestream and reads SIZ, ISO 15444-1 A.5.1) for
    JPEG 2000, and Pillow's JPEG header parser (lazy ``Image.open``, fill bytes included) for JPEG. JPEG-LS, or a
    header those cannot read, is walked by :func:`_scan_jpeg_sof`.
    """
    if frame[:4] == _J2K_SOC_SIZ or frame[4:8] == b"jP  " or str(syntax) in J2K_SYNTAXES:
        if openjpeg is None:  # pylibjpeg-openjpeg not installed: the bare codestream's SIZ
            head = frame[: _HEADER_SEARCH + 64]
            at = head.find(_J2K_SOC_SIZ, 0, _HEADER_SEARCH)
            if at >= 0 and len(head) >= at + 24:
                rows, columns, _, _ = _j2k_image_area(head, at)
                return "JPEG 2000", rows, columns
            return None
        try:
            params = openjpeg.get_parameters(frame)
            return "JPEG 2000", int(params["rows"]), int(params["columns"])
        except Exception:  # noqa: BLE001 - no readable header: the decoder refuses the frame
            return None
    if frame[:2] != b"\xff\xd8":
        return None
    if str(syntax) not in JPEG_LS_SYNTAXES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(frame), formats=("JPEG",)) as image:
                    columns, rows = image.size
            return "JPEG", rows, columns
        except Exception:  # noqa: BLE001 - e.g. Pillow's bomb guard or an odd header: walk the markers
            pass
    return _scan_jpeg_sof(frame)


def check_frame_header(path, frame: bytes, syntax: str, rows: int, columns: int) -> None:
    """Refuse a compressed frame that declares another size than the data set, before anything decodes it.

    The 40-Mpx limit is checked on Rows x Columns; a small header in front of a JPEG 2000 or JPEG frame that
    declares 60000 x 60000 would otherwise make the decoder allocate gigabytes (a decompression bomb).

    Raises:
        XrayInputError: the frame's own header declares a different size.
    """
    declared = _frame_size(frame, syntax)
    if declared is None:
        return
    codec, frame_rows, frame_columns = declared
    if frame_rows <= 0 or frame_columns <= 0:
        raise XrayInputError(path, f"corrupt {codec} frame header ({syntax}): image offset beyond the image area")
    if (frame_rows, frame_columns) != (rows, columns):
        raise XrayInputError(
            path,
            f"{codec} frame ({syntax}) declares {frame_rows} x {frame_columns} pixels, the header {rows} x "
            f"{columns}: refused before decoding",
        )
