"""The header rules of :class:`~monai_pneumonia.io.policy.XrayPolicy`, applied to a data set in memory."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.policy import XrayPolicy, header_text
from monai_pneumonia.service.screening import screen
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


# -- age (the intended population: children) ------------------------------------------------------------


def _aged(**attributes):
    header = Dataset()
    for keyword, value in attributes.items():
        setattr(header, keyword, value)
    return header


@pytest.mark.parametrize("attributes, expected", [
    ({"PatientAge": "045Y"}, ["age_outside_intended_use"]),
    ({"PatientAge": "004Y"}, []),
    ({"PatientAge": "018M"}, []),
    ({"PatientAge": "018Y"}, ["age_outside_intended_use"]),
    ({"PatientBirthDate": "19400305", "StudyDate": "20040826"}, ["age_outside_intended_use"]),
    ({"PatientBirthDate": "20200305", "AcquisitionDate": "20240826"}, []),
    ({"PatientBirthDate": "20200305"}, []),  # no date of the film: the header does not say
    ({"PatientAge": "45"}, ["age_unreadable"]),
    ({}, []),
])
def test_age_rule(attributes, expected):
    assert XrayPolicy().check_age("x.dcm", _aged(**attributes)) == expected


def test_age_refusal_names_no_age_and_bounds_are_a_knob(caplog):
    with pytest.raises(XrayInputError, match="outside the intended population") as refused:
        XrayPolicy(refuse_age=True).check_age("x.dcm", _aged(PatientAge="045Y", PatientBirthDate="19790408"))
    assert "045" not in str(refused.value) and "45" not in str(refused.value).replace("x.dcm", "")
    assert "1979" not in caplog.text
    assert XrayPolicy(ages=(18.0, 200.0)).check_age("x.dcm", _aged(PatientAge="045Y")) == []


def test_check_header_flags_an_adult_film():
    header = _aged(Modality="CR", PhotometricInterpretation="MONOCHROME2", SamplesPerPixel=1, Rows=8, Columns=8,
                   BitsAllocated=16, BitsStored=12, BodyPartExamined="CHEST", ViewPosition="PA", PatientAge="045Y")
    assert XrayPolicy().check_header("x.dcm", header, pixel_data=False) == ["age_outside_intended_use"]
    assert screen(header) is None  # the service classifies and flags it (refuse_age refuses it)
