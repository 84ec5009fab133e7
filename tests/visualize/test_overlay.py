"""Tests of the Grad-CAM overlay: blending, resizing and the (W, H) orientation convention of MONAI."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage
from PIL import Image

from monai_pneumonia.visualize.overlay import encode_png, overlay_cam, overlay_name, save_png


@pytest.fixture
def asymmetric_png(tmp_path):
    """A 40 x 24 (W x H) grey picture: a horizontal ramp, a bright block at the top-left, a dark bar at the bottom."""
    rows = np.tile(np.linspace(60, 180, 40, dtype=np.uint8), (24, 1))
    rows[0:6, 0:14] = 255
    rows[20:24, 25:40] = 0
    path = tmp_path / "asymmetric.png"
    Image.fromarray(rows).save(path)
    return path


def test_shape_dtype_and_blend():
    image = np.full((30, 20), 0.5)  # (W, H)
    cam = np.zeros((30, 20))
    rgb = overlay_cam(image, cam, alpha=0.0)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    assert np.all(rgb == 128)
    full = overlay_cam(image, np.ones((30, 20)), alpha=1.0, colormap="jet")
    expected = np.round(np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255)
    assert np.all(full == expected)


def test_channel_first_tensor_and_resized_cam():
    image = torch.rand(1, 64, 48)  # (C, W, H) as MONAI gives
    cam = torch.zeros(1, 8, 6)
    cam[0, :4, :3] = 1.0  # hot top-left quarter in (x, y)
    rgb = overlay_cam(image, cam, alpha=1.0)
    assert rgb.shape == (48, 64, 3)
    red_top_left = rgb[:20, :28, 0].mean()
    assert red_top_left > 100 and rgb[30:, 40:, 0].mean() < 5  # jet: hot = red, cold = dark blue


def test_overlay_keeps_the_orientation_of_the_picture(asymmetric_png, tmp_path):
    loaded = LoadImage(image_only=True)(str(asymmetric_png))  # MONAI: (W, H)
    assert tuple(loaded.shape) == (40, 24)
    grey = np.asarray(loaded, dtype=np.float64) / 255.0
    expected = np.asarray(Image.open(asymmetric_png).convert("RGB"))
    assert np.array_equal(overlay_cam(grey, np.zeros_like(grey), alpha=0.0), expected)
    written = save_png(overlay_cam(grey, np.zeros_like(grey), alpha=0.0), tmp_path / "sub" / "overlay.png")
    assert np.array_equal(np.asarray(Image.open(written).convert("RGB")), expected)
    row_major = np.asarray(Image.open(asymmetric_png), dtype=np.float64) / 255.0
    assert np.array_equal(overlay_cam(row_major, np.zeros_like(row_major), 0.0, spatial_order="yx"), expected)


def test_cam_follows_the_picture(asymmetric_png):
    loaded = np.asarray(LoadImage(image_only=True)(str(asymmetric_png)), dtype=np.float64)
    cam = (loaded == 255).astype(float)  # hot exactly on the bright block
    rgb = overlay_cam(loaded / 255.0, cam, alpha=1.0)
    hot = np.asarray(Image.open(asymmetric_png)) == 255
    assert rgb[hot, 0].min() > 100 and rgb[~hot, 0].max() < 5


@pytest.mark.parametrize(
    "kwargs, error",
    [({"alpha": 1.5}, "alpha"), ({"spatial_order": "zyx"}, "spatial_order"), ({"image": np.zeros((2, 3, 4))}, "2-D")],
)
def test_invalid_arguments(kwargs, error):
    arguments = {"image": np.zeros((4, 4)), "cam": np.zeros((4, 4)), **kwargs}
    with pytest.raises(ValueError, match=error):
        overlay_cam(**arguments)


def test_encode_png_accepts_float_pictures():
    import io

    decoded = Image.open(io.BytesIO(encode_png(np.ones((5, 7, 3)))))
    assert decoded.format == "PNG" and decoded.size == (7, 5)
    assert np.all(np.asarray(decoded) == 255)


def test_overlay_names_keep_same_named_files_apart():
    first, second = overlay_name("/a/IM-1.dcm"), overlay_name("/b/IM-1.dcm")
    assert first != second and first.startswith("IM-1.dcm-") and first.endswith(".png")
    # the DICOM and the JPEG of one film in one folder: names that say which is which
    dicom, jpeg = overlay_name("/a/IM-1.dcm"), overlay_name("/a/IM-1.jpeg")
    assert dicom.startswith("IM-1.dcm-") and jpeg.startswith("IM-1.jpeg-")
    assert "/" not in overlay_name("/x/../../etc passwd.png")
