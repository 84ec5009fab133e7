"""PNG and JPEG through Pillow: modes, bit depths, EXIF orientation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_pneumonia.io import load_xray
from monai_pneumonia.io.raster import LUMA_WEIGHTS
from tests.factories import gradient_picture, write_png

PIC = gradient_picture(40, 56, seed=7)


def test_png_8bit(tmp_path):
    image, meta = load_xray(write_png(tmp_path / "a.png", PIC))
    np.testing.assert_allclose(image, PIC / 255.0, atol=1e-7)
    assert meta["format"] == "png" and meta["bits_stored"] == 8 and meta["intensity_rule"] == "divide:255"
    assert (meta["original_rows"], meta["original_columns"]) == PIC.shape
    assert meta["Modality"] == "" and meta["xray_flags"] == "" and meta["spacing_known"] is False


def test_png_16bit(tmp_path):
    values = (PIC.astype(np.uint16) * 257 + 3).astype(np.uint16)
    path = tmp_path / "a16.png"
    Image.fromarray(values).save(path)
    image, meta = load_xray(path)
    assert meta["bits_stored"] == 16
    np.testing.assert_allclose(image, values / 65535.0, atol=1e-7)


def test_rgb_to_luma_in_float(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(rgb).save(path)
    image, _ = load_xray(path)
    expected = (rgb.astype(np.float64) @ LUMA_WEIGHTS.astype(np.float64)) / 255.0
    np.testing.assert_allclose(image, expected, atol=1e-6)  # not rounded to 8-bit grey levels
    assert np.abs(image * 255 - np.round(image * 255)).max() > 0.1


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "1"])
def test_other_modes(tmp_path, mode):
    grey = Image.fromarray(PIC)
    if mode == "1":
        img = grey.point(lambda v: 255 if v > 128 else 0).convert("1")
        expected = (PIC > 128).astype(np.float32)
    else:
        img = grey.convert(mode)
        expected = PIC / 255.0
    path = tmp_path / f"{mode}.png"
    img.save(path)
    image, _ = load_xray(path)
    np.testing.assert_allclose(image, expected, atol=0.5 / 255 + 1e-6)


def test_jpeg(tmp_path):
    path = tmp_path / "a.jpg"
    Image.fromarray(PIC).save(path, quality=95)
    image, meta = load_xray(path)
    assert meta["format"] == "jpeg"
    assert np.abs(image - PIC / 255.0).mean() < 0.01


@pytest.mark.parametrize(
    ("orientation", "expected"),
    [(1, lambda a: a), (3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)), (8, np.rot90)],
)
def test_exif_orientation(tmp_path, orientation, expected):
    block = np.zeros((32, 48), np.uint8)
    block[:8, :8] = 255  # a bright top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    Image.fromarray(block).save(path, exif=exif, quality=100)
    image, meta = load_xray(path)
    want = expected(block / 255.0)
    assert image.shape == want.shape and (meta["original_rows"], meta["original_columns"]) == want.shape
    assert np.abs(image - want).mean() < 0.02
