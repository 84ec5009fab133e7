"""DICOM files written from a picture (every bit depth, polarity, LUT and codec) load as the PNG of that picture."""

from __future__ import annotations

import glob
import os

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from monai_pneumonia.io import load_xray
from tests.factories import gradient_picture, transcode_with_dcmtk, write_dicom, write_png

TOLERANCE = 0.01  # mean absolute difference on the [0, 1] display scale
_TRAIN = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "chest_xray", "train")


def _real_pictures() -> list:
    files = sorted(glob.glob(os.path.join(_TRAIN, "NORMAL", "*.jpeg")))[:1]
    files += sorted(glob.glob(os.path.join(_TRAIN, "PNEUMONIA", "*.jpeg")))[:1]
    return files


PICTURES = ["gradient-96x80", "gradient-64x128", *(f"real:{os.path.basename(f)}" for f in _real_pictures())]


@pytest.fixture(scope="module", params=PICTURES)
def picture(request, tmp_path_factory):
    """(picture uint8, its loaded PNG) for each test picture."""
    name = request.param
    if name.startswith("real:"):
        from PIL import Image

        path = next(f for f in _real_pictures() if f.endswith(name[5:]))
        with Image.open(path) as img:
            pic = np.asarray(img.convert("L").resize((96, 96)))
    else:
        rows, columns = (int(v) for v in name.split("-")[1].split("x"))
        pic = gradient_picture(rows, columns, seed=rows)
    png = write_png(tmp_path_factory.mktemp("png") / "picture.png", pic)
    return pic, load_xray(png)[0]


CASES = {
    "8bit": {},
    "12bit": {"bits_stored": 12},
    "16bit": {"bits_stored": 16},
    "8bit-mono1": {"photometric": "MONOCHROME1"},
    "12bit-mono1": {"bits_stored": 12, "photometric": "MONOCHROME1"},
    "12bit-signed": {"bits_stored": 12, "signed": True},
    "12bit-rescale": {"bits_stored": 12, "rescale": (0.5, -1024.0)},
    "12bit-rescale-window": {"bits_stored": 12, "rescale": (2.0, -1000.0), "window": "auto"},
    "16bit-mono1-window": {"bits_stored": 16, "photometric": "MONOCHROME1", "window": "auto"},
    "12bit-window-exact": {"bits_stored": 12, "window": "auto", "voi_lut_function": "LINEAR_EXACT"},
    "implicit-vr": {"transfer_syntax": ImplicitVRLittleEndian},
    "deflate": {"bits_stored": 12, "transfer_syntax": DeflatedExplicitVRLittleEndian},
    "rle": {"bits_stored": 12, "photometric": "MONOCHROME1", "transfer_syntax": RLELossless},
    "jpegls": {"bits_stored": 12, "transfer_syntax": JPEGLSLossless},
    "j2k-lossless": {"bits_stored": 16, "window": "auto", "transfer_syntax": JPEG2000Lossless},
    "j2k-lossless-8bit": {"transfer_syntax": JPEG2000Lossless},
}


@pytest.mark.parametrize("case", list(CASES))
def test_dicom_matches_png(picture, tmp_path, case):
    pic, png = picture
    image, meta = load_xray(write_dicom(tmp_path / "x.dcm", pic, **CASES[case]))
    assert image.shape == png.shape and image.dtype == np.float32
    assert np.abs(image - png).mean() < TOLERANCE
    assert meta["format"] == "dicom"


@pytest.mark.parametrize(
    ("syntax", "encoding"),
    [(JPEGLosslessSV1, {"bits_stored": 12, "photometric": "MONOCHROME1"}), (JPEGBaseline8Bit, {})],
    ids=["jpeg_lossless_sv1", "jpeg_baseline"],
)
def test_dcmtk_encodings_match_png(picture, tmp_path, syntax, encoding):
    pic, png = picture
    src = write_dicom(tmp_path / "u.dcm", pic, **encoding)
    try:
        path = transcode_with_dcmtk(src, tmp_path / "dcmtk.dcm", syntax)
    except FileNotFoundError:
        pytest.skip("dcmtk not installed")
    image, meta = load_xray(path)
    assert meta["TransferSyntaxUID"] == syntax
    assert np.abs(image - png).mean() < TOLERANCE


def test_deferred_pixel_data_is_read(tmp_path, monkeypatch):
    from monai_pneumonia.io import dicom

    monkeypatch.setattr(dicom, "_DEFER_SIZE", 256)
    image, _ = load_xray(write_dicom(tmp_path / "x.dcm", gradient_picture(64, 64), bits_stored=16))
    assert np.abs(image - gradient_picture(64, 64) / 255.0).mean() < 1e-6


# -- individual pipeline rules ------------------------------------------------------------------------------

PIC = gradient_picture(48, 40, seed=3)


def _load(tmp_path, **kwargs):
    return load_xray(write_dicom(tmp_path / "x.dcm", PIC, **kwargs))


def test_fallback_full_range_is_exact_for_8bit_pictures(tmp_path):
    image, meta = _load(tmp_path, bits_stored=12)
    assert meta["intensity_rule"] == "full_range"
    np.testing.assert_allclose(image, PIC / 255.0, atol=0.5 / 4095 + 1e-6)


def test_fallback_percentile_when_declared_depth_unused(tmp_path):
    # 8-bit values declared as 16 bits stored: span < 1/4 of the range -> percentile window, not a black image
    path = write_dicom(tmp_path / "x.dcm", PIC, bits_stored=16, extra={})
    ds = pydicom.dcmread(path)
    ds.PixelData = PIC.astype(np.uint16).tobytes()
    ds.save_as(path)
    image, meta = load_xray(path)
    assert meta["intensity_rule"] == "percentile"
    assert image.min() == 0.0 and image.max() == 1.0
    assert np.corrcoef(image.ravel(), PIC.ravel())[0, 1] > 0.99


def test_first_of_several_windows_is_used(tmp_path):
    image, meta = _load(
        tmp_path, bits_stored=12, extra={"WindowCenter": ["2048.5", "100"], "WindowWidth": ["4096", "10"]}
    )
    assert meta["intensity_rule"] == "window:LINEAR"
    assert np.abs(image - PIC / 255.0).mean() < TOLERANCE


def test_sigmoid_window(tmp_path):
    image, meta = _load(tmp_path, bits_stored=12, window=(2048, 4096), voi_lut_function="SIGMOID")
    assert meta["intensity_rule"] == "window:SIGMOID"
    order = np.argsort(PIC.ravel(), kind="stable")
    assert np.all(np.diff(image.ravel()[order]) >= -1e-6)  # monotonic in the stored value
    assert 0.0 < image.min() < image.max() < 1.0


def test_narrow_window_clips(tmp_path):
    image, _ = _load(tmp_path, window=(128, 20))
    assert set(np.unique(image[PIC < 100])) == {0.0} and set(np.unique(image[PIC > 160])) == {1.0}


def test_voi_lut_sequence_is_preferred_and_scaled_by_its_bit_depth(tmp_path):
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 16])  # LUTDescriptor (ambiguous VR: set it)
    item.add_new(0x00283006, "US", [int(v) for v in np.linspace(0, 65535, 256)[::-1]])  # inverting LUTData
    path = write_dicom(tmp_path / "x.dcm", PIC, window=(128, 256), extra={"VOILUTSequence": [item]})
    image, meta = load_xray(path)
    assert meta["intensity_rule"] == "voi_lut"
    assert np.abs(image - (1 - PIC / 255.0)).mean() < TOLERANCE


def test_modality_lut_sequence(tmp_path):
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 16])  # 12-bit values in 16-bit entries (PS3.3 C.11.1.1.1)
    item.ModalityLUTType = "US"
    item.add_new(0x00283006, "US", [int(round(v * 4095 / 255)) for v in range(256)])
    image, _ = _load(tmp_path, extra={"ModalityLUTSequence": [item]})
    assert np.abs(image - PIC / 255.0).mean() < TOLERANCE


def test_invalid_window_falls_back_and_flags(tmp_path):
    image, meta = _load(tmp_path, window=(128, 0))
    assert "voi_invalid" in meta["xray_flags"] and meta["intensity_rule"] == "full_range"
    assert np.abs(image - PIC / 255.0).mean() < TOLERANCE


def test_high_bits_beyond_bits_stored_are_masked(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", PIC, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.PixelData = (ds.pixel_array | 0xF000).astype(np.uint16).tobytes()  # garbage in the overlay bits
    ds.save_as(path)
    image, _ = load_xray(path)
    assert np.abs(image - PIC / 255.0).mean() < TOLERANCE


@pytest.mark.parametrize(
    ("extra", "expected", "source"),
    [
        ({"PixelSpacing": ["0.2", "0.15"]}, [0.15, 0.2], "PixelSpacing"),
        ({"ImagerPixelSpacing": ["0.143", "0.143"]}, [0.143, 0.143], "ImagerPixelSpacing"),
        ({"PixelSpacing": ["0", "0"], "ImagerPixelSpacing": ["0.1", "0.1"]}, [0.1, 0.1], "ImagerPixelSpacing"),
        ({"PixelSpacing": ["0", "0"]}, [1.0, 1.0], ""),
    ],
)
def test_pixel_spacing(tmp_path, extra, expected, source):
    _, meta = _load(tmp_path, extra=extra)
    np.testing.assert_allclose(meta["spacing"], expected)  # x (column) first
    np.testing.assert_allclose(np.diag(meta["affine"])[:2], expected)
    assert meta["spacing_source"] == source and meta["spacing_known"] is bool(source)
