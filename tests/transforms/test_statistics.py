"""Image statistics of the loaded film (transforms/statistics.py), in the one preprocessing chain."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from monai_pneumonia.transforms import image_statistics, xray_preprocessing
from tests.factories import gradient_picture, write_png


def test_statistics_of_a_known_image():
    image = np.tile(np.linspace(0, 1, 101, dtype=np.float32), (10, 1))
    stats = image_statistics(image)
    assert stats["p1"] == pytest.approx(0.01, abs=1e-6) and stats["p99"] == pytest.approx(0.99, abs=1e-6)
    assert stats["p50"] == pytest.approx(0.5) and stats["mean"] == pytest.approx(0.5)
    assert stats["sharpness"] == pytest.approx(0.5 * 0.01, rel=1e-4)  # 0.01 along columns, 0 along rows


def test_the_preprocessing_chain_records_them_and_blur_lowers_sharpness(tmp_path):
    picture = gradient_picture(120, 100, noise=20)
    sharp = write_png(tmp_path / "sharp.png", picture)
    blurred = tmp_path / "blurred.png"
    Image.open(sharp).filter(ImageFilter.GaussianBlur(2)).save(blurred)
    chain = xray_preprocessing(spatial_size=32)
    first, second = (chain({"image": str(p)})["image"].meta["image_statistics"] for p in (sharp, blurred))
    assert (first["rows"], first["columns"]) == (120, 100)  # the loaded film, not the network input
    assert second["sharpness"] < 0.5 * first["sharpness"]
    assert second["mean"] == pytest.approx(first["mean"], abs=0.01)
