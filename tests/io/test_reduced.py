"""Reduced-resolution JPEG 2000 decoding (``target_size``, :mod:`monai_pneumonia.io.reduced`): faster, the same
picture once resized, opt-in only."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import Resize
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless

from monai_pneumonia.io import XrayDicomReader, load_xray
from monai_pneumonia.io import reduced as reduced_io
from monai_pneumonia.io.codestream import compressed_frame
from monai_pneumonia.io.reduced import reduction_level
from monai_pneumonia.transforms import LoadXray, LoadXrayd, xray_preprocessing
from tests.factories import gradient_picture, write_dicom

#: Mean absolute difference allowed, on the [0, 1] display scale, between "decode reduced, then resize" and
#: "decode in full, then resize" to the same size.
TOLERANCE = 0.01  # measured: about 0.003 on the synthetic pictures, 0.006 on RG1
PIC = gradient_picture(300, 260, seed=5, noise=2.0)  # 300 rows x 260 columns


def _area(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Row-major image averaged down to ``shape`` (MONAI ``Resize(mode="area")``)."""
    return Resize(shape, mode="area")(torch.from_numpy(image)[None])[0].numpy()


# -- choosing the level ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "columns", "target", "levels", "expected"),
    [
        (1955, 1841, 224, 5, 3),  # RG1: 245 x 231 at 1/8; 1/16 would be 123 x 116
        (1955, 1841, 224, 2, 2),  # capped by the codestream's decomposition levels
        (1955, 1841, None, 5, 0),  # opt-in only
        (224, 224, 224, 5, 0),  # already the target size
        (449, 1000, 224, 5, 1),  # the short side decides: ceil(449 / 2) = 225, ceil(449 / 4) = 113
    ],
)
def test_reduction_level(rows, columns, target, levels, expected):
    assert reduction_level(rows, columns, target, levels) == expected


def test_reduction_level_rounds_sides_up():
    # ISO 15444-1 B.5: a reduced side is ceil(side / 2**r), so 447 rows give 224 at 1/2
    assert reduction_level(447, 1000, 224, 5) == 1
    assert reduction_level(447, 1000, 225, 5) == 0


# -- the reduced path on synthetic pictures --------------------------------------------------------------------

CASES = {
    "8bit": {},
    "12bit": {"bits_stored": 12},
    "16bit-window": {"bits_stored": 16, "window": "auto"},
    "12bit-signed": {"bits_stored": 12, "signed": True},
    "12bit-mono1-rescale": {"bits_stored": 12, "photometric": "MONOCHROME1", "rescale": (0.5, -1024.0)},
}


@pytest.mark.parametrize("case", list(CASES))
def test_reduced_matches_full_then_resized(tmp_path, case):
    path = write_dicom(tmp_path / "x.dcm", PIC, transfer_syntax=JPEG2000Lossless, **CASES[case])
    full, full_meta = load_xray(path)
    reduced, meta = load_xray(path, target_size=64)  # 300 x 260 -> level 2: 75 x 65
    assert full.shape == (300, 260) and reduced.shape == (75, 65) and reduced.dtype == np.float32
    assert list(meta["spatial_shape"]) == [65, 75]  # x first
    assert (meta["original_rows"], meta["original_columns"]) == (300, 260)
    assert meta["intensity_rule"] == full_meta["intensity_rule"]
    target = _area(full, (64, 64))
    assert np.abs(_area(reduced, (64, 64)) - target).mean() < TOLERANCE
    assert np.corrcoef(_area(reduced, (64, 64)).ravel(), target.ravel())[0, 1] > 0.99


def test_pixel_spacing_is_scaled(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", PIC, pixel_spacing=(0.2, 0.15), transfer_syntax=JPEG2000Lossless)
    image = LoadXray(target_size=100)(path)  # level 1: 150 rows x 130 columns
    assert image.shape == (1, 130, 150)
    np.testing.assert_allclose(image.meta["spacing"], [0.3, 0.4])  # x (column) first, doubled
    np.testing.assert_allclose(image.affine.numpy(), np.diag([0.3, 0.4, 1.0, 1.0]))
    assert image.meta["spacing_source"] == "PixelSpacing" and image.meta["spacing_known"] is True


@pytest.mark.parametrize("syntax", [None, RLELossless], ids=["uncompressed", "rle"])
def test_other_syntaxes_are_unaffected(tmp_path, syntax):
    kwargs = {"transfer_syntax": syntax} if syntax else {}
    path = write_dicom(tmp_path / "x.dcm", PIC, bits_stored=12, pixel_spacing=(0.2, 0.2), **kwargs)
    full, full_meta = load_xray(path)
    same, meta = load_xray(path, target_size=64)
    np.testing.assert_array_equal(same, full)
    np.testing.assert_allclose(meta["spacing"], full_meta["spacing"])
    assert list(meta["spatial_shape"]) == [260, 300]


def test_not_applied_without_target_size(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", PIC, transfer_syntax=JPEG2000Lossless)
    assert LoadXray()(path).shape == (1, 260, 300)
    assert LoadXray(target_size=300)(path).shape == (1, 260, 300)  # no level keeps 260 columns >= 300


def test_decoder_failure_falls_back_to_full_decoding(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "x.dcm", PIC, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    full, _ = load_xray(path)

    def broken(*args, **kwargs):
        raise OSError("broken data stream when reading image file")

    monkeypatch.setattr(reduced_io, "_pillow_j2k_decode", broken)
    image, meta = load_xray(path, target_size=64)
    np.testing.assert_array_equal(image, full)
    assert list(meta["spatial_shape"]) == [260, 300]


def test_header_mismatch_falls_back(tmp_path):
    # BitsStored says 16 but the codestream holds 12-bit samples: pydicom's full decoder handles that case
    path = write_dicom(tmp_path / "x.dcm", PIC, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    ds.BitsStored, ds.HighBit = 16, 15
    ds.save_as(path)
    assert load_xray(path, target_size=64)[0].shape == (300, 260)


def test_transforms_and_reader_pass_target_size(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", PIC, transfer_syntax=JPEG2000Lossless)
    assert LoadXrayd(keys="image", target_size=64)({"image": path})["image"].shape == (1, 65, 75)
    reader = XrayDicomReader(target_size=64)
    assert reader.get_data(reader.read(path))[0].shape == (65, 75)
    with pytest.raises(ValueError, match="target_size"):
        LoadXray(target_size=0)


def test_preprocessing_uses_its_spatial_size(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", PIC, transfer_syntax=JPEG2000Lossless)
    fast = xray_preprocessing(spatial_size=64)
    slow = xray_preprocessing(spatial_size=64, reduced_decoding=False)
    assert fast.transforms[0].loader.target_size == 64 and slow.transforms[0].loader.target_size is None
    assert xray_preprocessing(spatial_size=(48, 64)).transforms[0].loader.target_size == 64  # no side upsampled
    a, b = fast({"image": path})["image"], slow({"image": path})["image"]
    assert a.shape == b.shape == (1, 64, 64)
    # after z-scoring: a unit-variance scale, so the tolerance is in standard deviations
    assert float((a - b).abs().mean()) < 0.1


# -- the Pillow behaviour the reduced path relies on -----------------------------------------------------------

ODD = gradient_picture(301, 263, seed=7, noise=2.0)  # at 1/4: OpenJPEG 76 x 66 (rounds up), Pillow 75 x 66 (nearest)


def test_pillow_reduce_still_rounds_unlike_openjpeg(tmp_path):
    """Pillow's public ``reduce`` cannot decode these sides at 1/4, hence ``_OpenJpegSizedJpeg2K``.

    When this fails, Pillow's ``reduce`` decodes them: set ``image.reduce = level`` in ``io/reduced.py`` and drop
    the subclass, which sets Pillow's ``_size`` and ``tile`` itself.
    """
    ds = pydicom.dcmread(write_dicom(tmp_path / "x.dcm", ODD, bits_stored=12, transfer_syntax=JPEG2000Lossless))
    image = Image.open(io.BytesIO(compressed_frame(ds, JPEG2000Lossless)), formats=("JPEG2000",))
    image.reduce = 2
    with pytest.raises(OSError, match="broken data stream"):
        image.load()


def test_reduced_decoding_keeps_openjpegs_size(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", ODD, bits_stored=12, transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    raw = reduced_io._pillow_j2k_decode(compressed_frame(ds, JPEG2000Lossless), 2, 301, 263)
    assert raw.shape == (76, 66) and raw.dtype == np.uint16  # ceil(301 / 4) x ceil(263 / 4), as OpenJPEG decodes
    full, _ = load_xray(path)
    reduced, meta = load_xray(path, target_size=64)  # not decoded in full: the reduced size
    assert reduced.shape == (76, 66) and list(meta["spatial_shape"]) == [66, 76]
    assert np.abs(_area(reduced, (64, 64)) - _area(full, (64, 64))).mean() < TOLERANCE


# -- a real radiograph -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rg1_files():
    data = pytest.importorskip("pydicom.data")
    try:
        return {name: data.get_testdata_file(f"RG1_{name}.dcm") for name in ("UNCR", "J2KR", "J2KI")}
    except Exception:  # pragma: no cover - pydicom-data absent
        pytest.skip("pydicom-data (RG1) not installed")


@pytest.mark.parametrize("name", ["J2KR", "J2KI"])
def test_rg1_reduced_matches_full_at_224(rg1_files, name):
    """The 1955 x 1841 chest film decodes at 1/8 and, resized to 224, matches the full decode resized."""
    full = LoadXray()(rg1_files["UNCR"])
    reduced = LoadXray(target_size=224)(rg1_files[name])
    assert reduced.shape == (1, 231, 245)  # ceil(1841 / 8) x ceil(1955 / 8)
    assert (reduced.meta["original_rows"], reduced.meta["original_columns"]) == (1955, 1841)
    resize = Resize((224, 224), mode="area")
    difference = (resize(reduced) - resize(full)).abs()
    assert float(difference.mean()) < TOLERANCE
    assert float(difference.quantile(0.99)) < 0.1  # larger differences only along the sharp collimator edges
