"""Read a DICOM radiograph and turn it into what a radiologist sees, as floats in [0, 1]: the MONAI reader.

:func:`read_dicom` (and :class:`XrayDicomReader`, its MONAI ``ImageReader``) runs, for one file:

1. Reading the data set: a deflated data set is inflated only up to a limit (:mod:`monai_pneumonia.io.deflate`);
   elements larger than 64 MiB are read only when needed, so the header checks come first.
2. The acceptance policy on the header (:mod:`monai_pneumonia.io.policy`), before any pixel is decoded.
3. A compressed frame's own header must declare Rows x Columns (:mod:`monai_pneumonia.io.codestream`).
4. Stored values: ``Dataset.pixel_array`` decodes with the plugins :mod:`monai_pneumonia.io.codec` chooses for the
   transfer syntax, keeps only BitsStored bits and sign-extends when PixelRepresentation is 1 (PS3.5 8.1.1); with
   a ``target_size``, JPEG 2000 is decoded at a reduced resolution (:mod:`monai_pneumonia.io.reduced`).
5. The display pipeline (:mod:`monai_pneumonia.io.display`): modality LUT, VOI LUT or the documented fallback,
   MONOCHROME1 inverted.
6. No picture, no image (:mod:`monai_pneumonia.io.content`): a blank, constant, near-constant or non-finite result
   is refused.

The returned array is row-major ``(rows, columns)``; :class:`XrayDicomReader` and
:class:`~monai_pneumonia.transforms.LoadXray` give MONAI's x-first ``(columns, rows)`` orientation.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np
from monai.data import ImageReader
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.codec import decode_pixel_array, decoder_hint
from monai_pneumonia.io.codestream import check_frame_header, compressed_frame
from monai_pneumonia.io.content import require_picture
from monai_pneumonia.io.deflate import dcmread_bounded, inflated_limit
from monai_pneumonia.io.display import FULL_RANGE_MIN_SPAN, PERCENTILE_WINDOW, dicom_to_display, fallback_normalise
from monai_pneumonia.io.formats import DICOM, sniff_format
from monai_pneumonia.io.policy import DICOM_META_KEYWORDS, XrayPolicy, header_text, make_meta
from monai_pneumonia.io.reduced import reduced_pixel_array, reduced_side, reduction_level
from monai_pneumonia.redaction import install as _install_redaction

__all__ = [
    # the reader
    "XrayDicomReader",
    "read_dicom",
    # public names of this module before it was split, kept importable from here
    "FULL_RANGE_MIN_SPAN",
    "PERCENTILE_WINDOW",
    "decoder_hint",
    "dicom_to_display",
    "fallback_normalise",
    "reduction_level",
]

_install_redaction()  # pydicom quotes invalid attribute values (PHI) in its log and warnings

#: Elements larger than this are read from disk only when needed, so the header checks come first.
_DEFER_SIZE = 64 * 1024 * 1024


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
        explicit = ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else explicit
    return ds


def read_dicom(
    path: str | os.PathLike, policy: XrayPolicy | None = None, target_size: int | None = None
) -> tuple[np.ndarray, dict]:
    """Read one DICOM radiograph.

    Args:
        path: a DICOM Part 10 file (or a raw data set).
        policy: the acceptance policy (default :class:`XrayPolicy`).
        target_size: the smallest side the caller will resize to; JPEG 2000 images are then decoded at the
            smallest wavelet resolution level whose sides are all at least this
            (:mod:`~monai_pneumonia.io.reduced`). ``None`` (default) always decodes at full resolution.

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
    if meta_sop == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        raise XrayInputError(path, "a DICOMDIR (media directory), not an image; load the files it references")
    if len(ds) == 0:
        raise XrayInputError(path, "not a DICOM file (no data elements)")
    flags = policy.check_header(path, ds)
    rows, columns = int(ds.Rows), int(ds.Columns)

    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    frame = compressed_frame(ds, syntax)
    if frame is not None:
        check_frame_header(path, frame, syntax, rows, columns)
    stored, level = _stored_values(path, ds, syntax, target_size, frame)
    expected = (reduced_side(rows, level), reduced_side(columns, level))
    if stored.shape != expected:
        raise XrayInputError(path, f"decoded pixel data has shape {stored.shape}, header says {(rows, columns)}")
    image, info = dicom_to_display(stored, ds, path)
    require_picture(path, image, stored)
    spacing, source = _spacing(ds)
    if spacing is not None and level:
        spacing = (spacing[0] * 2**level, spacing[1] * 2**level)
    attrs = {k: header_text(ds, k) for k in DICOM_META_KEYWORDS}
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


def _stored_values(path, ds, syntax: str, target_size: int | None, frame: bytes | None) -> tuple[np.ndarray, int]:
    """Stored values and the resolution reduction level they were decoded at (0: full resolution).

    ``frame`` is the encapsulated frame (:func:`~monai_pneumonia.io.codestream.compressed_frame`), used by the
    reduced JPEG 2000 path.

    Raises:
        XrayInputError: no plugin decodes the pixel data.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduced = reduced_pixel_array(ds, syntax, target_size, frame)
        if reduced is not None:
            return reduced
        try:
            return decode_pixel_array(ds, syntax, path), 0
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
