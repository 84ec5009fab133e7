"""Format sniffing by content, including DICOM without the Part 10 preamble."""

from __future__ import annotations

import numpy as np
import pydicom

from monai_pneumonia.io import load_xray
from monai_pneumonia.io.formats import DICOM, PNG, sniff_format
from tests.factories import gradient_picture, write_dicom, write_png


def test_dicom_without_preamble(tmp_path):
    pic = gradient_picture(16, 12)
    path = write_dicom(tmp_path / "IM0001", pic)
    ds = pydicom.dcmread(path)
    del ds.file_meta  # a bare data set, first element (0008,0016)
    raw = tmp_path / "RAW0001"
    ds.save_as(raw, enforce_file_format=False, implicit_vr=False, little_endian=True)
    assert sniff_format(path) == DICOM and sniff_format(raw) == DICOM
    image, meta = load_xray(raw)
    assert meta["format"] == "dicom"
    np.testing.assert_allclose(image, pic / 255.0, atol=1e-6)


def test_extension_is_ignored(tmp_path):
    path = write_png(tmp_path / "looks_like.dcm", gradient_picture(8, 8))
    assert sniff_format(path) == PNG
    assert load_xray(path)[1]["format"] == "png"


def test_random_bytes_not_dicom(tmp_path):
    rng = np.random.default_rng(3)
    for i in range(50):
        path = tmp_path / f"r{i}"
        path.write_bytes(rng.bytes(600))
        assert sniff_format(path) is None
