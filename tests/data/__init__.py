"""Tests of :mod:`monai_pneumonia.data`; tiny image writers shared with the CLI tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_tiny_dicom", "write_tiny_image"]


def write_tiny_image(path: str | os.PathLike, fmt: str = "PNG") -> Path:
    """Write an 8x8 grey PNG or JPEG (``fmt``), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(path, format=fmt)
    return path


def write_tiny_dicom(
    path: str | os.PathLike, sop_uid: str, patient_id: str = "PAT1", study_uid: str = "1.2.3.4", name: str = "Doe^Jane"
) -> Path:
    """Write a minimal 8x8 CR DICOM Part 10 file (any name, extension or not)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, sop_uid
    ds.Modality, ds.PatientID, ds.PatientName, ds.StudyInstanceUID = "CR", patient_id, name, study_uid
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(range(64))
    ds.save_as(path, enforce_file_format=True)
    return path
