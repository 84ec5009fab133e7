"""Compressed frames and the size their own headers declare (:mod:`monai_pneumonia.io.codestream`)."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.codestream import check_frame_header, compressed_frame, j2k_parameters
from tests.factories import gradient_picture, write_dicom

PIC = gradient_picture(300, 260, seed=5, noise=2.0)  # 300 rows x 260 columns


def _frame(tmp_path, syntax, **kwargs) -> bytes:
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", PIC, transfer_syntax=syntax, **kwargs))
    return compressed_frame(ds, str(ds.file_meta.TransferSyntaxUID))


def test_codestream_parameters(tmp_path):
    params = j2k_parameters(_frame(tmp_path, JPEG2000Lossless, bits_stored=12, signed=True))
    assert params["rows"] == 300 and params["columns"] == 260 and params["offset"] == (0, 0)
    assert params["precision"] == 12 and params["signed"] is True and params["components"] == 1
    assert params["levels"] == 5  # pylibjpeg-openjpeg encodes 6 resolutions
    assert j2k_parameters(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 64) is None  # JP2: not handled


def test_no_frame_for_native_or_rle_data(tmp_path):
    ds = pydicom.dcmread(write_dicom(tmp_path / "u.dcm", PIC))
    assert compressed_frame(ds, str(ds.file_meta.TransferSyntaxUID)) is None
    ds = pydicom.dcmread(write_dicom(tmp_path / "r.dcm", PIC, transfer_syntax=RLELossless))
    assert compressed_frame(ds, str(ds.file_meta.TransferSyntaxUID)) is None  # RLE has no codestream header


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless], ids=["j2k", "jpeg-ls"])
def test_frame_header_must_declare_the_data_set_size(tmp_path, syntax):
    frame = _frame(tmp_path, syntax, bits_stored=12)
    check_frame_header("x.dcm", frame, syntax, 300, 260)  # agrees: no refusal
    with pytest.raises(XrayInputError, match=r"declares 300 x 260 pixels, the header 300 x 200: refused before"):
        check_frame_header("x.dcm", frame, syntax, 300, 200)
