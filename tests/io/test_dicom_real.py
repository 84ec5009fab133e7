"""Real radiographs (NEMA WG04 RG1, from pydicom-data) in every encoding load to the same image."""

from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from monai_pneumonia.io import load_xray
from tests.factories import transcode_with_dcmtk, write_encodings

pydicom_data = pytest.importorskip("pydicom.data")

#: JPEG 2000 lossy (RG1_J2KI) against the uncompressed original, on the displayed [0, 1] scale.
J2KI_MEAN_TOLERANCE = 0.005
J2KI_MAX_TOLERANCE = 0.05
CROP = (slice(800, 960), slice(700, 828))  # 160 x 128 from the middle of the chest


def _rg(name: str) -> str:
    try:
        return pydicom_data.get_testdata_file(name)
    except Exception:  # pragma: no cover - pydicom-data absent
        return None


@pytest.fixture(scope="module")
def rg1_path():
    path = _rg("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data (RG1) not installed")
    return path


@pytest.fixture(scope="module")
def rg1(rg1_path):
    """RG1_UNCR loaded once: (image, meta)."""
    return load_xray(rg1_path)


@pytest.fixture(scope="module")
def rg1_crop(rg1_path, tmp_path_factory):
    """A cropped uncompressed copy of RG1 (same attributes, 160 x 128), and its encodings."""
    folder = tmp_path_factory.mktemp("rg1crop")
    ds = pydicom.dcmread(rg1_path)
    crop = np.ascontiguousarray(ds.pixel_array[CROP])
    ds.Rows, ds.Columns = crop.shape
    ds.PixelData = crop.tobytes()
    src = folder / "crop_uncr.dcm"
    ds.save_as(src, enforce_file_format=True)
    return write_encodings(src, folder, prefix="crop_")


def test_rg1_display_and_metadata(rg1, rg1_path):
    image, meta = rg1
    assert image.shape == (1955, 1841) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    # MONOCHROME1 inverted after the 15000/30000 window: lung darker than spine, collimated border white
    assert image[600:800, 1250:1350].mean() + 0.2 < image[600:800, 880:960].mean()
    assert image[:, -20:].mean() > 0.8
    assert meta["Modality"] == "CR" and meta["PhotometricInterpretation"] == "MONOCHROME1"
    assert meta["BodyPartExamined"] == "CHEST" and meta["ViewPosition"] == "PA"
    assert meta["xray_flags"] == "age_outside_intended_use"  # NEMA WG04 RG1 is an adult (born 1940, study 2004)
    assert meta["intensity_rule"] == "window:LINEAR"
    assert meta["spacing_known"] is False  # PixelSpacing "0\0" is unknown
    ds = pydicom.dcmread(rg1_path, stop_before_pixels=True)
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert meta[key] == ds[key].value
    assert meta["TransferSyntaxUID"] == ExplicitVRLittleEndian
    assert list(meta["spatial_shape"]) == [1841, 1955]
    assert meta["filename_or_obj"] == rg1_path


def test_rg1_loads_fast(rg1_path):
    best = min(_timed(rg1_path) for _ in range(2))
    assert best < 1.0, f"RG1_UNCR took {best:.2f} s"


def _timed(path) -> float:
    start = time.perf_counter()
    load_xray(path)
    return time.perf_counter() - start


def test_rg1_j2k_lossless_identical(rg1):
    path = _rg("RG1_J2KR.dcm")
    image, meta = load_xray(path)
    assert meta["TransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    np.testing.assert_allclose(image, rg1[0], atol=1e-6)


def test_rg1_j2k_lossy_within_tolerance(rg1):
    image, _ = load_xray(_rg("RG1_J2KI.dcm"))
    diff = np.abs(image - rg1[0])
    assert diff.mean() < J2KI_MEAN_TOLERANCE and diff.max() < J2KI_MAX_TOLERANCE


@pytest.mark.parametrize("name", ["sv1", "jpegls", "rle_dcmtk", "rle_pydicom", "deflate"])
def test_rg1_crop_encodings_identical(rg1, rg1_crop, name):
    if name not in rg1_crop:
        pytest.skip("dcmtk not installed")
    reference, _ = load_xray(rg1_crop["uncompressed"])
    np.testing.assert_allclose(reference, rg1[0][CROP], atol=1e-6)  # pipeline is pointwise
    image, meta = load_xray(rg1_crop[name])
    assert meta["TransferSyntaxUID"] != ExplicitVRLittleEndian
    np.testing.assert_allclose(image, reference, atol=1e-6)


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, RLELossless])
def test_rg1_full_size_dcmtk_encodings(rg1, rg1_path, tmp_path, syntax):
    try:
        path = transcode_with_dcmtk(rg1_path, tmp_path / "rg1.dcm", syntax)
    except FileNotFoundError:
        pytest.skip("dcmtk not installed")
    image, _ = load_xray(path)
    np.testing.assert_allclose(image, rg1[0], atol=1e-6)
