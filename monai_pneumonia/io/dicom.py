"""Read a DICOM radiograph and turn it into what a radiologist sees, as floats in [0, 1].

Display pipeline (PS3.4 N.2 grayscale pipeline), all steps done by pydicom's own functions:

1. Stored values: ``Dataset.pixel_array`` decodes (pydicom pixel handlers; pylibjpeg-openjpeg, pyjpegls,
   pylibjpeg-rle and python-gdcm plugins for compressed transfer syntaxes), keeps only BitsStored bits and
   sign-extends when PixelRepresentation is 1 (PS3.5 8.1.1). python-gdcm, which can abort the process on a
   corrupt stream, decodes only in a helper process (:mod:`monai_pneumonia.io.isolation`). Before decoding, the
   compressed frame's own header must declare Rows x Columns (:func:`_check_frame_header`), and a deflated data
   set is inflated only up to a limit (:mod:`monai_pneumonia.io.deflate`).
2. Modality LUT (PS3.3 C.11.1): :func:`pydicom.pixels.apply_modality_lut`, i.e. Rescale Slope/Intercept or
   the Modality LUT Sequence.
3. VOI LUT (PS3.3 C.11.2): :func:`pydicom.pixels.apply_voi_lut` with the first view (``index=0``) when several
   windows are given; the VOI LUT Sequence is preferred to Window Center/Width when both exist; VOI LUT
   Function LINEAR, LINEAR_EXACT and SIGMOID (C.11.2.1.2, C.11.2.1.3). The result is scaled to [0, 1] by the
   output range of that step as pydicom defines it: ``[0, 2**n - 1]`` for a VOI LUT of n-bit entries, and for
   a window the range of the stored bits passed through the modality LUT.
4. Without any usable VOI attribute, the **fallback**: let ``[lo, hi]`` be the range the stored bits can
   represent (``[0, 2**BitsStored - 1]``, or the signed range), passed through the modality LUT. If the
   image spans at least :data:`FULL_RANGE_MIN_SPAN` (a quarter) of it, ``(v - lo) / (hi - lo)``: the encoder
   used the bit depth it declared, so this is exact, and a picture written as 8-bit (``v``) or as 12-bit
   (``round(v * 4095 / 255)``) loads back as ``v / 255``. Otherwise the declared depth is not used (typically
   12-bit data declared as 16 bits) and a percentile window, 0.5 % to 99.5 %, clipped, avoids a black image.
   Both are deterministic; ``meta["intensity_rule"]`` says which one applied.
5. MONOCHROME1 (PS3.3 C.7.6.3.1.2: minimum value is white) is inverted *after* windowing: ``1 - v``.
6. No picture, no image (:mod:`monai_pneumonia.io.content`): a blank, constant, near-constant or non-finite result
   is refused. A NaN/infinite RescaleSlope/Intercept (or a slope of 0) is refused; a NaN/infinite or non-positive
   window is not used (step 4's fallback, flag ``voi_invalid``).

**Reduced-resolution decoding** (opt-in, ``target_size``): a JPEG 2000 codestream holds the image at every
wavelet resolution level, each half the size of the one above. When the caller will shrink the image to
``target_size`` pixels a side anyway, :func:`read_dicom` asks OpenJPEG (through Pillow, the one installed
binding that exposes OpenJPEG's resolution reduction) for the smallest level whose sides are all still at
least ``target_size``: the 1955 x 1841 RG1 radiograph decodes at 1/8 (245 x 231) for a 224-pixel network,
skipping the entropy decoding of the finer sub-bands. The low-pass band is the local mean of the stored
values, so the result is close to decoding fully and averaging down (what ``Resize(mode="area")`` does).
The display pipeline then runs on the smaller array; PixelSpacing is multiplied by ``2**level``, and
``spatial_shape`` is the decoded size while ``original_rows``/``original_columns`` keep the file's. Anything
this path does not handle (not JPEG 2000, JP2-wrapped or multi-component streams, image offsets, a precision
or signedness that differs from the header, Pillow without OpenJPEG, a decoder error) is decoded in full.

The returned array is row-major ``(rows, columns)``; :class:`XrayDicomReader` and
:class:`~monai_pneumonia.transforms.LoadXray` give MONAI's x-first ``(columns, rows)`` orientation.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from monai.data import ImageReader

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.content import require_picture
from monai_pneumonia.io.deflate import dcmread_bounded, inflated_limit
from monai_pneumonia.io.formats import DICOM, sniff_format
from monai_pneumonia.io.isolation import UNSAFE_PLUGINS, DecoderCrashError, decode_isolated
from monai_pneumonia.io.policy import DICOM_META_KEYWORDS, XrayPolicy, make_meta
from monai_pneumonia.io.redaction import install as _install_redaction

__all__ = [
    "FULL_RANGE_MIN_SPAN",
    "PERCENTILE_WINDOW",
    "XrayDicomReader",
    "decoder_hint",
    "dicom_to_display",
    "fallback_normalise",
    "read_dicom",
    "reduction_level",
]

logger = logging.getLogger(__name__)
_install_redaction()  # pydicom quotes invalid attribute values (PHI) in its log and warnings

#: Fraction of the representable range the data must span for the full-range fallback.
FULL_RANGE_MIN_SPAN = 0.25
#: Percentiles of the fallback window used when the data spans less than that.
PERCENTILE_WINDOW = (0.5, 99.5)
#: Elements larger than this are read from disk only when needed, so the header checks come first.
_DEFER_SIZE = 64 * 1024 * 1024

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg, python-gdcm or Pillow",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (GPL-3.0, deliberately not installed) for 12-bit JPEG Extended",
    "1.2.840.10008.1.2.4.57": "python-gdcm or pylibjpeg-libjpeg (GPL-3.0)",
    "1.2.840.10008.1.2.4.70": "python-gdcm or pylibjpeg-libjpeg (GPL-3.0)",
    "1.2.840.10008.1.2.4.80": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg (or Pillow with OpenJPEG)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg (or Pillow with OpenJPEG)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pydicom itself or pylibjpeg-rle",
}
#: Decoder plugins used first per transfer syntax, in the calling process. python-gdcm terminates the whole process
#: (an uncaught C++ exception, or a segfault) on some corrupt JPEG Baseline, JPEG Lossless and JPEG 2000 streams, so
#: it runs only in a helper process (:mod:`monai_pneumonia.io.isolation`), after every other plugin.
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.50": ("pillow", "pylibjpeg"),
    "1.2.840.10008.1.2.4.80": ("pyjpegls", "pylibjpeg"),
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "pylibjpeg"),
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.201": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.202": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),
}


#: JPEG 2000 transfer syntaxes decoded at a reduced resolution when a ``target_size`` is given.
_J2K_REDUCIBLE = frozenset(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"))
_J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
_J2K_COD, _J2K_COC, _J2K_SOT = b"\xff\x52", b"\xff\x53", b"\xff\x90"


def _lut_functions():
    """pydicom's ``apply_modality_lut`` and ``apply_voi_lut``.

    They live in ``pydicom.pixels`` since pydicom 3; pydicom 2.4 (kept by the MONAI Label environment, whose
    pydicom-seg does not import with pydicom 3) has the same functions in ``pydicom.pixel_data_handlers.util``.
    """
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom < 3
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
    return apply_modality_lut, apply_voi_lut


def _decoding_plugins(transfer_syntax: str) -> list[str]:
    """Decoder plugins to try in order; ``""`` lets pydicom choose (native data, or pydicom < 3).

    The preferred plugins of :data:`_PREFERRED_PLUGINS` come first, then every other installed one; a plugin of
    :data:`~monai_pneumonia.io.isolation.UNSAFE_PLUGINS` (python-gdcm) is tried last and only ever runs in the
    helper process of :mod:`monai_pneumonia.io.isolation`; it is not tried at all for JPEG Baseline and JPEG 2000
    when another plugin is installed: Pillow's libjpeg-turbo decodes every valid 8-bit Baseline stream (gdcm loops
    forever on some it refuses, e.g. ``FFD8 FFE3 36D9``, found by ``scripts/fuzz_loader.py``), and gdcm decodes
    JPEG 2000 with the same OpenJPEG library that already failed.
    """
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom < 3: its pixel data handlers choose
        return [""]
    try:
        available = get_decoder(transfer_syntax).available_plugins
    except Exception:  # no decoder for this syntax (native) or unknown UID
        return [""]
    if not available:
        return [""]
    preferred = [p for p in _PREFERRED_PLUGINS.get(str(transfer_syntax), ()) if p in available]
    others = [p for p in available if p not in preferred]
    safe = preferred + [p for p in others if p not in UNSAFE_PLUGINS]
    if safe and str(transfer_syntax) in _NO_UNSAFE_FALLBACK:
        return safe
    return safe + [p for p in others if p in UNSAFE_PLUGINS]


def _pixel_array(ds, transfer_syntax: str, path: str | os.PathLike | None = None) -> np.ndarray:
    """Decode the single frame, trying the plugins of :func:`_decoding_plugins` in turn.

    Raises:
        DecoderCrashError: an unsafe plugin crashed or timed out in its helper process (refused at once).
        RuntimeError: every plugin failed (their messages joined).
    """
    if not hasattr(ds, "pixel_array_options"):  # pydicom < 3: no plugin choice
        return ds.pixel_array
    errors = []
    for plugin in _decoding_plugins(transfer_syntax):
        try:
            if plugin in UNSAFE_PLUGINS:  # never in this process; the helper reads the file itself
                if path is None:
                    continue
                return decode_isolated(path, plugin, transfer_syntax)
            ds.pixel_array_options(decoding_plugin=plugin)
            return ds.pixel_array
        except DecoderCrashError as exc:
            raise DecoderCrashError(exc.path, f"{exc.reason}; {decoder_hint(transfer_syntax)}") from None
        except XrayInputError as exc:
            errors.append(f"{plugin}: {exc.reason}")
        except Exception as exc:
            errors.append(f"{plugin or 'any plugin'}: {exc}")
    raise RuntimeError("; ".join(errors))


def _reduced_side(length: int, level: int) -> int:
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
    while level < max_level and min(_reduced_side(rows, level + 1), _reduced_side(columns, level + 1)) >= target_size:
        level += 1
    return level


def _j2k_image_area(codestream: bytes, at: int = 0) -> tuple[int, int, int, int]:
    """``(rows, columns, x offset, y offset)`` of the SIZ segment (ISO 15444-1 A.5.1) after the SOC marker at ``at``.

    Rows and columns are the image area (Ysiz - YOsiz, Xsiz - XOsiz); the caller checks that 24 bytes follow ``at``.
    """
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">4I", codestream[at + 8 : at + 24])
    return ysiz - yosiz, xsiz - xosiz, xosiz, yosiz


def _j2k_parameters(codestream: bytes) -> dict | None:
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


def _pillow_j2k_decode(codestream: bytes, level: int, rows: int, columns: int) -> np.ndarray:
    """Decode a grey J2K codestream at resolution reduction ``level`` with Pillow's OpenJPEG decoder.

    Pillow's own ``reduce`` attribute rounds the reduced size to the nearest integer where OpenJPEG rounds up,
    and then refuses the stream, so the decoder tile is set up here with OpenJPEG's size.

    Returns:
        Pillow's raw values: ``uint8`` (precision <= 8) or ``uint16``, scaled up to the full container width.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(codestream), formats=("JPEG2000",))
    if image.mode not in ("L", "I;16") or len(image.tile) != 1:
        raise ValueError(f"unsupported Pillow JPEG 2000 image (mode {image.mode}, {len(image.tile)} tiles)")
    size = (_reduced_side(columns, level), _reduced_side(rows, level))
    tile = image.tile[0]
    args = tuple(tile[3])
    image._size = size
    image.tile = [tile._replace(extents=(0, 0, *size), args=(args[0], level, *args[2:]))]
    image.load()
    return np.asarray(image)


def _reduced_pixel_array(
    ds, transfer_syntax: str, target_size: int | None, codestream: bytes | None
) -> tuple[np.ndarray, int] | None:
    """Stored values decoded at a reduced JPEG 2000 resolution level, or ``None`` to decode in full.

    Args:
        ds: the data set (single frame, header already checked).
        transfer_syntax: its transfer syntax UID.
        target_size: smallest side the caller needs.
        codestream: the encapsulated frame (:func:`_compressed_frame`), ``None`` when there is none.

    Returns:
        ``(stored, level)``: the stored values (dtype as pydicom gives them) of the image reduced by
        ``2**level`` (``level >= 1``), or ``None`` when the reduced path does not apply or fails.
    """
    if not target_size or codestream is None or str(transfer_syntax) not in _J2K_REDUCIBLE:
        return None
    rows, columns = int(ds.Rows), int(ds.Columns)
    try:
        params = _j2k_parameters(codestream)
        if params is None or not _reducible(ds, params, rows, columns):
            return None
        level = reduction_level(rows, columns, target_size, params["levels"])
        if level == 0:
            return None
        raw = _pillow_j2k_decode(codestream, level, rows, columns)
    except Exception as exc:  # no OpenJPEG in Pillow, odd stream, private Pillow API changed: decode in full
        logger.debug("reduced JPEG 2000 decoding not used: %s", exc)
        return None
    precision, signed = params["precision"], params["signed"]
    values = raw.astype(np.int32) >> (raw.dtype.itemsize * 8 - precision)  # undo Pillow's scaling up
    if signed:  # Pillow shifted signed samples up by 2**(precision - 1)
        values -= 1 << (precision - 1)
    dtype = np.dtype(f"{'i' if signed else 'u'}{int(ds.BitsAllocated) // 8}")
    return values.astype(dtype), level


def _first_frame(ds) -> bytes:
    """The encapsulated codestream of the single frame."""
    try:
        from pydicom.encaps import get_frame
    except ImportError:  # pydicom < 3
        from pydicom.encaps import generate_pixel_data_frame

        return next(generate_pixel_data_frame(ds.PixelData, 1))
    return get_frame(ds.PixelData, 0, number_of_frames=1)


def _compressed_frame(ds, syntax: str) -> bytes | None:
    """The single encapsulated frame of a JPEG-family transfer syntax, ``None`` for others or when unreadable.

    Read once per file: the frame-header check and the reduced-resolution path both use it.
    """
    if not syntax.startswith("1.2.840.10008.1.2.4.") or "PixelData" not in ds:
        return None
    try:
        return _first_frame(ds)
    except Exception:  # not encapsulated as it should be: the decoder reports it
        return None


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


def decoder_hint(transfer_syntax: str) -> str:
    """Name the transfer syntax and the plugin(s) that decode it, for error messages."""
    from pydicom.uid import UID

    uid = UID(transfer_syntax or "")
    name = uid.name if uid else "(missing)"
    plugin = _DECODERS.get(
        str(uid),
        "pydicom itself"
        if uid in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
        else "no known plugin",
    )
    return f"transfer syntax {name} ({uid or 'no UID'}); decoded by {plugin}"


def fallback_normalise(values: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, str]:
    """Map values to [0, 1] when no window is given (module docstring, step 4).

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
    apply_modality_lut, _ = _lut_functions()
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
    step 4 applies and ``voi_invalid`` is flagged. A NaN/infinite rescale or a slope of 0 is refused.

    Raises:
        XrayInputError: a modality LUT that is not finite or that pydicom cannot apply.
    """
    apply_modality_lut, apply_voi_lut = _lut_functions()
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


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if not isinstance(value, str) and isinstance(value, Sequence):
        value = value[0] if len(value) else ""
    return str(value).strip()


def _spacing(ds) -> tuple[tuple[float, float] | None, str]:
    """PixelSpacing, else ImagerPixelSpacing (PS3.3 10.7.1.3), in mm as (row, column); "0\\0" means unknown."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        try:
            value = ds.get(keyword)
            if value is None or len(value) != 2:
                continue
            row, col = float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0 and np.isfinite(row) and np.isfinite(col):
            return (row, col), keyword
    return None, ""


def _read_dataset(path: str | os.PathLike, policy: XrayPolicy | None = None):
    limit = inflated_limit((policy or XrayPolicy()).max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread_bounded(path, limit, defer_size=_DEFER_SIZE, force=True)  # a deflate bomb stops early
    except XrayInputError:
        raise
    except Exception as exc:  # InvalidDicomError, EOFError, struct.error, OSError, bad VR/length values, ...
        raise XrayInputError(path, f"not a readable DICOM file ({type(exc).__name__})") from exc  # no quoted values
    if "TransferSyntaxUID" not in ds.file_meta:  # raw data set without file meta: use the encoding read
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1" if little is not False else "1.2.840.10008.1.2.2"
        )
    return ds


def read_dicom(
    path: str | os.PathLike, policy: XrayPolicy | None = None, target_size: int | None = None
) -> tuple[np.ndarray, dict]:
    """Read one DICOM radiograph.

    Args:
        path: a DICOM Part 10 file (or a raw data set).
        policy: the acceptance policy (default :class:`XrayPolicy`).
        target_size: the smallest side the caller will resize to; JPEG 2000 images are then decoded at the
            smallest wavelet resolution level whose sides are all at least this (module docstring). ``None``
            (default) always decodes at full resolution.

    Returns:
        ``(image, meta)``: float32 ``(rows, columns)`` in [0, 1], 1 = bright (smaller when decoded at a reduced
        resolution: ``meta["spatial_shape"]`` is its ``[columns, rows]``), and the metadata of
        :func:`~monai_pneumonia.io.policy.make_meta`.

    Raises:
        XrayInputError: anything that is not a decodable single-frame grey projection radiograph.
    """
    policy = policy or XrayPolicy()
    if not os.path.isfile(path):
        raise XrayInputError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise XrayInputError(path, "empty file (0 bytes)")
    ds = _read_dataset(path, policy)
    try:
        return _decode(path, ds, policy, target_size)
    except XrayInputError:
        raise
    except Exception as exc:  # lazily converted elements with wrong VR or length, odd headers
        raise XrayInputError(path, f"invalid DICOM attributes ({type(exc).__name__})") from exc  # no quoted values


def _decode(path, ds, policy: XrayPolicy, target_size: int | None = None) -> tuple[np.ndarray, dict]:
    meta_sop = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if meta_sop == _MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds:
        raise XrayInputError(path, "a DICOMDIR (media directory), not an image; load the files it references")
    if len(ds) == 0:
        raise XrayInputError(path, "not a DICOM file (no data elements)")
    flags = policy.check_modality(path, _text(ds, "Modality"))
    if "PixelData" not in ds:
        other = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
        raise XrayInputError(path, f"no pixel data ({other[0]} is not supported)" if other else "no pixel data")
    policy.check_photometric(path, _text(ds, "PhotometricInterpretation"), int(ds.get("SamplesPerPixel", 1)))
    policy.check_frames(path, int(ds.get("NumberOfFrames", 1) or 1))
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    policy.check_size(path, rows, columns)
    for keyword in ("BitsAllocated", "BitsStored"):
        if keyword not in ds:
            raise XrayInputError(path, f"missing {keyword} (0028,{'0100' if keyword == 'BitsAllocated' else '0101'})")
    flags += policy.check_anatomy(path, _text(ds, "BodyPartExamined"), _text(ds, "ViewPosition"))
    flags += policy.check_for_processing(path, _text(ds, "PresentationIntentType"))

    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    frame = _compressed_frame(ds, syntax)
    if frame is not None:
        _check_frame_header(path, frame, syntax, rows, columns)
    stored, level = _stored_values(path, ds, syntax, target_size, frame)
    expected = (_reduced_side(rows, level), _reduced_side(columns, level))
    if stored.shape != expected:
        raise XrayInputError(path, f"decoded pixel data has shape {stored.shape}, header says {(rows, columns)}")
    image, info = dicom_to_display(stored, ds, path)
    require_picture(path, image, stored)
    spacing, source = _spacing(ds)
    if spacing is not None and level:
        spacing = (spacing[0] * 2**level, spacing[1] * 2**level)
    attrs = {k: _text(ds, k) for k in DICOM_META_KEYWORDS}
    attrs["TransferSyntaxUID"] = syntax
    meta = make_meta(
        path,
        DICOM,
        rows,
        columns,
        spacing_rc=spacing,
        spacing_source=source,
        flags=flags + info["flags"],
        intensity_rule=info["intensity_rule"],
        bits=int(ds.BitsStored),
        dicom=attrs,
    )
    meta["spatial_shape"] = np.array([image.shape[1], image.shape[0]])  # the decoded size, x first
    return image, meta


#: Start-of-frame markers whose segment gives the frame's size (ITU-T T.81 B.2.2, T.87 5.2.2): every SOFn except
#: DHT (C4), JPG (C8) and DAC (CC), plus JPEG-LS SOF55 (F7).
_JPEG_SOF = frozenset([*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0), 0xF7])
#: How far into a frame a bare codestream header is looked for when pylibjpeg-openjpeg is not installed.
_HEADER_SEARCH = 4096
#: JPEG 2000 and HTJ2K transfer syntaxes; JPEG-LS ones.
_J2K_SYNTAXES = frozenset(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                           "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"))
_JPEG_LS_SYNTAXES = frozenset(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"))
#: Syntaxes whose corrupt streams never go on to python-gdcm once the in-process plugins refused them.
_NO_UNSAFE_FALLBACK = _J2K_SYNTAXES | {"1.2.840.10008.1.2.4.50"}


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
    if frame[:4] == _J2K_SOC_SIZ or frame[4:8] == b"jP  " or str(syntax) in _J2K_SYNTAXES:
        try:
            import openjpeg

            params = openjpeg.get_parameters(frame)
            return "JPEG 2000", int(params["rows"]), int(params["columns"])
        except ImportError:  # pylibjpeg-openjpeg not installed: the bare codestream's SIZ
            head = frame[: _HEADER_SEARCH + 64]
            at = head.find(_J2K_SOC_SIZ, 0, _HEADER_SEARCH)
            if at >= 0 and len(head) >= at + 24:
                rows, columns, _, _ = _j2k_image_area(head, at)
                return "JPEG 2000", rows, columns
            return None
        except Exception:  # noqa: BLE001 - no readable header: the decoder refuses the frame
            return None
    if frame[:2] != b"\xff\xd8":
        return None
    if str(syntax) not in _JPEG_LS_SYNTAXES:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(frame), formats=("JPEG",)) as image:
                    columns, rows = image.size
            return "JPEG", rows, columns
        except Exception:  # noqa: BLE001 - e.g. Pillow's bomb guard or an odd header: walk the markers
            pass
    return _scan_jpeg_sof(frame)


def _check_frame_header(path, frame: bytes, syntax: str, rows: int, columns: int) -> None:
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


def _stored_values(path, ds, syntax: str, target_size: int | None, frame: bytes | None) -> tuple[np.ndarray, int]:
    """Stored values and the resolution reduction level they were decoded at (0: full resolution).

    ``frame`` is the encapsulated frame (:func:`_compressed_frame`), used by the reduced JPEG 2000 path.

    Raises:
        XrayInputError: no plugin decodes the pixel data.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduced = _reduced_pixel_array(ds, syntax, target_size, frame)
        if reduced is not None:
            return reduced
        try:
            return _pixel_array(ds, syntax, path), 0
        except XrayInputError:
            raise
        except Exception as exc:
            raise XrayInputError(
                path, f"cannot decode the pixel data ({type(exc).__name__}: {exc}); {decoder_hint(syntax)}"
            ) from exc


class _Loaded:
    """What :meth:`XrayDicomReader.read` returns: the decoded image of one file and its metadata."""

    def __init__(self, image: np.ndarray, meta: dict) -> None:
        self.image, self.meta = image, meta


class XrayDicomReader(ImageReader):
    """MONAI ``ImageReader`` for DICOM radiographs with the display pipeline of this module.

    ``LoadImage(reader=XrayDicomReader(), ensure_channel_first=True)`` gives the same ``(1, W, H)`` array
    and metadata keys as :class:`~monai_pneumonia.transforms.LoadXray` (MONAI's x-first orientation).

    Args:
        strict: refuse wrong body part / view and secondary captures instead of flagging them.
        policy: a full :class:`XrayPolicy` (overrides ``strict``).
        target_size: decode JPEG 2000 images at a reduced resolution keeping both sides at least this
            (see :func:`read_dicom`); ``None`` (default) for full resolution.
    """

    suffixes = ("dcm", "dicom", "dic")

    def __init__(self, strict: bool = False, policy: XrayPolicy | None = None, target_size: int | None = None) -> None:
        super().__init__()
        self.policy = policy or XrayPolicy(strict=strict)
        self.target_size = target_size

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Accept ``.dcm``/``.dicom``/``.dic`` names, and extensionless files whose content is DICOM."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        for name in names:
            text = os.fspath(name).lower()
            if not (text.endswith(tuple("." + s for s in self.suffixes)) or sniff_format(name) == DICOM):
                return False
        return True

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs) -> _Loaded | list[_Loaded]:
        """Read and decode one file (or several).

        Raises:
            XrayInputError: see :func:`read_dicom`.
        """
        if isinstance(data, (str, os.PathLike)):
            return _Loaded(*read_dicom(data, self.policy, self.target_size))
        loaded = [_Loaded(*read_dicom(name, self.policy, self.target_size)) for name in data]
        return loaded[0] if len(loaded) == 1 else loaded

    def get_data(self, img: _Loaded | list[_Loaded]) -> tuple[np.ndarray, dict]:
        """Return the ``(W, H)`` float32 array (x first) and its metadata.

        Raises:
            ValueError: several images were read (a radiograph is one file).
        """
        if isinstance(img, list):
            raise ValueError("XrayDicomReader loads one radiograph at a time")
        meta = dict(img.meta)
        return np.ascontiguousarray(img.image.T), meta
