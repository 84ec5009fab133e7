"""The header rules of :class:`~monai_pneumonia.io.policy.XrayPolicy`, applied to a data set in memory."""

from __future__ import annotations

import pydicom
import pytest

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.policy import XrayPolicy, header_text
from tests.factories import gradient_picture, write_dicom


@pytest.fixture()
def header(tmp_path) -> pydicom.Dataset:
    return pydicom.dcmread(write_dicom(tmp_path / "x.dcm", gradient_picture(32, 24), modality="OT"))


def test_check_header_returns_the_flags(header):
    assert XrayPolicy().check_header("x.dcm", header) == ["secondary_capture"]


def test_secondary_captures_allowed_under_strict(header):
    with pytest.raises(XrayInputError, match="secondary capture"):
        XrayPolicy(strict=True).check_header("x.dcm", header)
    assert XrayPolicy(strict=True, allow_secondary_capture=True).check_header("x.dcm", header) == ["secondary_capture"]
    header.ViewPosition = "LL"  # other soft rules stay strict
    with pytest.raises(XrayInputError, match="view position 'LL'"):
        XrayPolicy(strict=True, allow_secondary_capture=True).check_header("x.dcm", header)


def test_pixel_data_required_unless_reading_a_header_only(header):
    del header.PixelData
    with pytest.raises(XrayInputError, match="no pixel data"):
        XrayPolicy().check_header("x.dcm", header)
    assert XrayPolicy().check_header("x.dcm", header, pixel_data=False) == ["secondary_capture"]


def test_missing_bit_depth(header):
    del header.BitsStored
    with pytest.raises(XrayInputError, match=r"missing BitsStored \(0028,0101\)"):
        XrayPolicy().check_header("x.dcm", header)


def test_header_text():
    ds = pydicom.Dataset()
    ds.Modality, ds.ImageType, ds.WindowCenter = "DX ", ["ORIGINAL", "PRIMARY"], None
    assert [header_text(ds, k) for k in ("Modality", "ImageType", "WindowCenter", "ViewPosition")] == [
        "DX", "ORIGINAL", "", ""]
