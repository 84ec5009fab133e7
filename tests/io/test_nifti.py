"""2D NIfTI through nibabel: shapes, orientation, intensity rule."""

from __future__ import annotations

import numpy as np
import pytest

from monai_pneumonia.io import load_xray
from tests.factories import gradient_picture, write_nifti, write_png

nib = pytest.importorskip("nibabel")
PIC = gradient_picture(36, 28, seed=9)


@pytest.mark.parametrize("name", ["a.nii", "a.nii.gz"])
def test_uint8_nifti_equals_png(tmp_path, name):
    png, _ = load_xray(write_png(tmp_path / "a.png", PIC))
    image, meta = load_xray(write_nifti(tmp_path / name, PIC, spacing=(0.2, 0.3)))
    np.testing.assert_allclose(image, png, atol=1e-7)
    assert meta["format"] == "nifti" and meta["intensity_rule"] == "full_range"
    np.testing.assert_allclose(meta["spacing"], [0.3, 0.2])
    assert meta["spacing_known"] is True


def test_float_unit_nifti_kept(tmp_path):
    image, meta = load_xray(write_nifti(tmp_path / "f.nii", PIC / 255.0))
    assert meta["intensity_rule"] == "unit"
    np.testing.assert_allclose(image, PIC / 255.0, atol=1e-6)


def test_2d_without_third_axis_and_float_out_of_range(tmp_path):
    data = PIC.T.astype(np.float32) * 10 - 500  # arbitrary float units
    path = tmp_path / "hu.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    image, meta = load_xray(path)
    assert meta["intensity_rule"] == "percentile" and image.shape == PIC.shape
    assert np.corrcoef(image.ravel(), PIC.ravel())[0, 1] > 0.99


def test_scaled_int16(tmp_path):
    img = nib.Nifti1Image(PIC.T.astype(np.int16)[..., None] * 100, np.eye(4))
    img.header.set_slope_inter(0.01, 0.0)
    path = tmp_path / "s.nii"
    nib.save(img, str(path))
    image, _ = load_xray(path)
    assert np.corrcoef(image.ravel(), PIC.ravel())[0, 1] > 0.99
