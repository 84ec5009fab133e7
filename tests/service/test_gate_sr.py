"""The intended-use gate's flags reach the radiologist: qualitative evaluations of the SR."""

from __future__ import annotations

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from monai_pneumonia.io.policy import AGE_FLAG, ATYPICAL_FLAG
from monai_pneumonia.service.reports import INTENDED_USE_QUALIFIERS, PneumoniaFinding, build_pneumonia_sr, encode
from tests.factories import gradient_picture, write_dicom


def _evaluations(tmp_path, flags):
    source = pydicom.dcmread(write_dicom(tmp_path / "cr.dcm", gradient_picture(), modality="CR"), stop_before_pixels=True)
    path = tmp_path / "sr.dcm"
    path.write_bytes(encode(build_pneumonia_sr(source, PneumoniaFinding(0.8, 0.5, flags))))
    group = hd.sr.srread(path).content.get_image_measurement_groups()[0]
    return {e.name.meaning: e.value for e in group.get_qualitative_evaluations()}


def test_flags_become_qualifiers_the_radiologist_sees(tmp_path):
    evaluations = _evaluations(tmp_path, ("view_missing", ATYPICAL_FLAG, AGE_FLAG))
    assert evaluations == {"Pneumonia": codes.DCM.Present,
                           INTENDED_USE_QUALIFIERS[ATYPICAL_FLAG].meaning: codes.SCT.Yes,
                           INTENDED_USE_QUALIFIERS[AGE_FLAG].meaning: codes.SCT.Yes}


def test_no_flag_no_qualifier(tmp_path):
    assert list(_evaluations(tmp_path, ("view_missing",))) == ["Pneumonia"]


def test_qualifier_keys_are_the_policy_flags():
    assert set(INTENDED_USE_QUALIFIERS) == {ATYPICAL_FLAG, AGE_FLAG}
