"""Test factories: write radiograph files (DICOM, PNG, NIfTI) from a picture array.

A *picture* is a 2D ``uint8`` array (``v``, displayed as ``v / 255``) or a float array in [0, 1], row-major
``(rows, columns)``. The writers encode it so that a correct loader shows the picture again:

* :func:`write_dicom` stores ``round(p * (2**bits_stored - 1))`` (inverted for MONOCHROME1, offset for signed
  data), optionally with Rescale Slope/Intercept, a window that exactly spans the stored range
  (``window="auto"``), and any transfer syntax pydicom can encode (RLE, JPEG-LS lossless, JPEG 2000 lossless,
  deflate) or dcmtk can (JPEG Lossless SV1: :func:`transcode_with_dcmtk`).
* :func:`write_png`, :func:`write_nifti`: the same picture in the other formats.

Reused by the PACS tests: keep the signatures stable.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

__all__ = [
    "SOP_CLASSES",
    "dicom_dataset",
    "gradient_picture",
    "picture_to_stored",
    "to_unit",
    "transcode_with_dcmtk",
    "write_dicom",
    "write_nifti",
    "write_png",
]

#: Storage SOP Class per Modality used by :func:`dicom_dataset`.
SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "RG": "1.2.840.10008.5.1.4.1.1.1.1",
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "NM": "1.2.840.10008.5.1.4.1.1.20",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
    "OT": "1.2.840.10008.5.1.4.1.1.7",
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",
}
_PYDICOM_ENCODED = {RLELossless: "pylibjpeg", JPEGLSLossless: "pyjpegls", JPEG2000Lossless: "pylibjpeg"}
_DCMTK = {
    JPEGBaseline8Bit: ["dcmcjpeg", "--encode-baseline", "--scaling-range", "--quality", "95"],  # +sr: keep values
    JPEGLosslessSV1: ["dcmcjpeg", "--encode-lossless-sv1"],
    JPEGLSLossless: ["dcmcjpls", "--encode-lossless"],
    RLELossless: ["dcmcrle"],
    ExplicitVRLittleEndian: ["dcmconv", "--write-xfer-little"],
}


def to_unit(picture: np.ndarray) -> np.ndarray:
    """The picture as float64 in [0, 1] (``uint8`` divided by 255, ``uint16`` by 65535, floats as given)."""
    picture = np.asarray(picture)
    if picture.dtype == np.uint8:
        return picture / 255.0
    if picture.dtype == np.uint16:
        return picture / 65535.0
    return np.clip(picture.astype(np.float64), 0.0, 1.0)


def gradient_picture(rows: int = 96, columns: int = 80, seed: int = 0, noise: float = 8.0) -> np.ndarray:
    """A smooth synthetic ``uint8`` picture: a diagonal gradient, a bright blob and Gaussian noise.

    Not symmetric, so a transposed or flipped load is detected.
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    base = 30 + 150 * (0.7 * x / max(columns - 1, 1) + 0.3 * y / max(rows - 1, 1))
    blob = 60 * np.exp(-(((x - 0.3 * columns) ** 2) + (y - 0.6 * rows) ** 2) / (0.05 * rows * columns))
    return np.clip(np.round(base + blob + rng.normal(0, noise, (rows, columns))), 0, 255).astype(np.uint8)


def picture_to_stored(
    picture: np.ndarray, bits_stored: int = 8, photometric: str = "MONOCHROME2", signed: bool = False
) -> np.ndarray:
    """Stored pixel values showing ``picture``: ``round(p * (2**bits - 1))``, inverted for MONOCHROME1.

    Args:
        picture: see the module docstring.
        bits_stored: 1 to 16.
        photometric: ``MONOCHROME1`` stores ``max - value``.
        signed: shift to the two's complement range (PixelRepresentation 1).

    Returns:
        ``uint8`` (bits <= 8), ``uint16`` or ``int16`` array.
    """
    top = 2**bits_stored - 1
    stored = np.round(to_unit(picture) * top).astype(np.int64)
    if photometric == "MONOCHROME1":
        stored = top - stored
    if signed:
        return (stored - 2 ** (bits_stored - 1)).astype(np.int16 if bits_stored > 8 else np.int8)
    return stored.astype(np.uint8 if bits_stored <= 8 else np.uint16)


def dicom_dataset(
    modality: str = "DX",
    *,
    body_part: str | None = "CHEST",
    view: str | None = "PA",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> Dataset:
    """A data set with file meta, patient/study/series/instance attributes and no image.

    Args:
        modality: Modality; also picks the SOP Class (:data:`SOP_CLASSES`).
        body_part: BodyPartExamined (``None``: absent).
        view: ViewPosition (``None``: absent).
        study_uid: StudyInstanceUID (generated when ``None``); likewise ``series_uid`` and ``sop_uid``.
        transfer_syntax: TransferSyntaxUID of the file meta.

    Returns:
        The data set, ready for :func:`pydicom.dcmwrite` (``enforce_file_format=True``).
    """
    sop_class = SOP_CLASSES.get(modality, SOP_CLASSES["OT"])
    sop_uid = sop_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.PatientName = "Test^Phantom"
    ds.PatientID = "TEST0001"
    ds.StudyDate = "20240101"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if view is not None:
        ds.ViewPosition = view
    return ds


def write_dicom(
    path: str | os.PathLike,
    picture: np.ndarray | None,
    *,
    bits_stored: int = 8,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    window: str | tuple[float, float] | None = None,
    voi_lut_function: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    modality: str = "DX",
    body_part: str | None = "CHEST",
    view: str | None = "PA",
    pixel_spacing: tuple[float, float] | None = None,
    imager_pixel_spacing: tuple[float, float] | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``picture`` as a DICOM file that displays as the picture.

    Args:
        path: output file.
        picture: 2D grey picture, a ``(rows, columns, 3)`` ``uint8`` array (written as RGB), or ``None``
            for a data set without Pixel Data.
        bits_stored: 8, 12, 16 (or any 1-16); BitsAllocated is 8 or 16 accordingly.
        photometric: ``MONOCHROME2`` or ``MONOCHROME1`` (ignored for RGB pictures).
        signed: PixelRepresentation 1.
        rescale: ``(slope, intercept)`` written as Rescale Slope/Intercept (positive slope).
        window: ``(center, width)``, ``"auto"`` for the window spanning exactly the representable range after
            rescale (so it displays as the picture), or ``None`` for no VOI attributes.
        voi_lut_function: VOI LUT Function value (e.g. ``"LINEAR_EXACT"``).
        transfer_syntax: Explicit/Implicit VR Little Endian, deflate, RLE Lossless, JPEG-LS Lossless or
            JPEG 2000 Lossless (pydicom encoders). For JPEG Lossless SV1 use :func:`transcode_with_dcmtk`.
        modality: Modality (and SOP Class).
        body_part: BodyPartExamined, ``None`` for absent.
        view: ViewPosition, ``None`` for absent.
        pixel_spacing: PixelSpacing (row, column) mm.
        imager_pixel_spacing: ImagerPixelSpacing (row, column) mm.
        study_uid: StudyInstanceUID (generated if ``None``); likewise ``series_uid``, ``sop_uid``.
        extra: attributes set last by keyword (may override anything, e.g. ``{"Rows": 60000}``).

    Returns:
        ``Path(path)``.
    """
    path = Path(path)
    compressed = transfer_syntax in _PYDICOM_ENCODED
    ds = dicom_dataset(
        modality,
        body_part=body_part,
        view=view,
        study_uid=study_uid,
        series_uid=series_uid,
        sop_uid=sop_uid,
        transfer_syntax=ExplicitVRLittleEndian if compressed else transfer_syntax,
    )
    arr = None
    if picture is not None:
        picture = np.asarray(picture)
        if picture.ndim == 3:
            arr = np.ascontiguousarray(picture.astype(np.uint8)[..., :3])
            ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
            ds.BitsAllocated = ds.BitsStored = 8
            ds.PixelRepresentation = 0
        else:
            arr = picture_to_stored(picture, bits_stored, photometric, signed)
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
            ds.BitsAllocated = 8 if bits_stored <= 8 else 16
            ds.BitsStored = bits_stored
            ds.PixelRepresentation = int(signed)
        ds.Rows, ds.Columns = arr.shape[:2]
        ds.HighBit = ds.BitsStored - 1
        ds.PixelData = arr.tobytes()
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
        ds.RescaleType = "US"
    if window is not None:
        if window == "auto":
            lo, hi = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
            slope, intercept = rescale or (1.0, 0.0)
            m0, m1 = lo * slope + intercept, hi * slope + intercept
            exact = (voi_lut_function or "LINEAR").upper() == "LINEAR_EXACT"
            center, width = ((m0 + m1) / 2, m1 - m0) if exact else ((m0 + m1) / 2 + 0.5, m1 - m0 + 1)
        else:
            center, width = window
        ds.WindowCenter, ds.WindowWidth = f"{center:.6g}", f"{width:.6g}"
    if voi_lut_function is not None:
        ds.VOILUTFunction = voi_lut_function
    if pixel_spacing is not None:
        ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    if imager_pixel_spacing is not None:
        ds.ImagerPixelSpacing = [f"{v:g}" for v in imager_pixel_spacing]
    if compressed and arr is not None:
        ds.compress(transfer_syntax, arr, encoding_plugin=_PYDICOM_ENCODED[transfer_syntax])
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def transcode_with_dcmtk(src: str | os.PathLike, dst: str | os.PathLike, transfer_syntax: str) -> Path:
    """Re-encode a DICOM file with the dcmtk command-line tools (keeps every UID).

    Args:
        src: input file (any syntax dcmtk reads; compressed input needs decoding first).
        dst: output file.
        transfer_syntax: JPEG Baseline (8-bit input only, quality 95), JPEG Lossless SV1 (``dcmcjpeg``), JPEG-LS Lossless (``dcmcjpls``), RLE Lossless
            (``dcmcrle``) or Explicit VR Little Endian (``dcmconv``).

    Returns:
        ``Path(dst)``.

    Raises:
        FileNotFoundError: the dcmtk tool is not installed (tests should skip).
        subprocess.CalledProcessError: the tool failed.
    """
    command = _DCMTK[UID(transfer_syntax)]
    if shutil.which(command[0]) is None:
        raise FileNotFoundError(f"{command[0]} (dcmtk) is not installed")
    subprocess.run([*command, os.fspath(src), os.fspath(dst)], check=True, capture_output=True, timeout=120)
    return Path(dst)


def write_encodings(src: str | os.PathLike, folder: str | os.PathLike, prefix: str = "") -> dict[str, Path]:
    """Lossless re-encodings of an uncompressed DICOM file, every one keeping its UIDs.

    JPEG Lossless SV1, JPEG-LS lossless and RLE with dcmtk (each skipped when its tool is missing), RLE with
    pydicom's own encoder and deflate with pydicom.

    Args:
        src: an uncompressed DICOM file.
        folder: where the files go.
        prefix: prepended to each file name.

    Returns:
        ``{"uncompressed", "sv1", "jpegls", "rle_dcmtk", "rle_pydicom", "deflate"}`` (minus missing tools) -> file.
    """
    folder = Path(folder)
    files = {"uncompressed": Path(src)}
    for name, syntax in (("sv1", JPEGLosslessSV1), ("jpegls", JPEGLSLossless), ("rle_dcmtk", RLELossless)):
        try:
            files[name] = transcode_with_dcmtk(src, folder / f"{prefix}{name}.dcm", syntax)
        except FileNotFoundError:
            pass
    rle = pydicom.dcmread(src)
    rle.compress(RLELossless, encoding_plugin="pydicom")
    files["rle_pydicom"] = folder / f"{prefix}rle_pydicom.dcm"
    rle.save_as(files["rle_pydicom"])
    deflated = pydicom.dcmread(src)
    deflated.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    files["deflate"] = folder / f"{prefix}deflate.dcm"
    deflated.save_as(files["deflate"], enforce_file_format=True)
    return files


def write_png(path: str | os.PathLike, picture: np.ndarray, bits: int = 8) -> Path:
    """Write the picture as an 8- or 16-bit grey PNG (``round(p * 255)`` or ``round(p * 65535)``)."""
    from PIL import Image

    unit = to_unit(picture)
    if bits == 16:
        Image.fromarray(np.round(unit * 65535).astype(np.uint16)).save(path, format="PNG")
    else:
        Image.fromarray(np.round(unit * 255).astype(np.uint8)).save(path, format="PNG")
    return Path(path)


def write_nifti(path: str | os.PathLike, picture: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> Path:
    """Write the picture as a 2D NIfTI-1 image of shape ``(X, Y, 1)``, x = column (MONAI's orientation).

    ``uint8`` pictures are stored as ``uint8``; float pictures as float32 in [0, 1].
    """
    import nibabel as nib

    picture = np.asarray(picture)
    data = picture.T[..., None]
    if picture.dtype != np.uint8:
        data = to_unit(data).astype(np.float32)
    affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])  # spacing given as (row, column)
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, os.fspath(path))
    return Path(path)
