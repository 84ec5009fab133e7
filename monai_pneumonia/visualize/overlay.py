"""Grad-CAM overlays rendered as RGB pictures, and PNG output.

Orientation convention: MONAI's ``LoadImage`` (``PILReader(reverse_indexing=True)``, the default) returns a 2-D
picture as a ``(W, H)`` array -- the first axis is x, the column. PNG files, Pillow and matplotlib are row-major
``(H, W)``. :func:`overlay_cam` therefore takes ``spatial_order="xy"`` by default and transposes its inputs to
``(H, W)`` before rendering, so a picture loaded by MONAI comes out the way ``PIL.Image.open`` shows it. Pass
``spatial_order="yx"`` for arrays that are already row-major (e.g. ``np.asarray(PIL.Image.open(path))``).
The returned RGB array is always row-major ``(H, W, 3)``, ready for :func:`save_png`.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
from PIL import Image

__all__ = ["as_uint8_picture", "encode_png", "overlay_cam", "overlay_name", "save_png"]

SpatialOrder = Literal["xy", "yx"]


def _to_2d(array: Any, name: str) -> np.ndarray:
    """Converts an array or tensor to a float 2-D array, dropping leading singleton (channel/batch) axes."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float64)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D picture (optionally with a leading channel of 1), got {array.shape}")
    return array


def _to_row_major(array: np.ndarray, spatial_order: SpatialOrder) -> np.ndarray:
    """Returns ``array`` as ``(H, W)``: transposed for ``"xy"`` (MONAI), unchanged for ``"yx"``."""
    if spatial_order == "xy":
        return array.T
    if spatial_order == "yx":
        return array
    raise ValueError(f"spatial_order must be 'xy' (MONAI, (W, H)) or 'yx' (row-major, (H, W)), got {spatial_order!r}")


def _unit(array: np.ndarray) -> np.ndarray:
    """Replaces NaN by 0 and clips to [0, 1]."""
    return np.clip(np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


def _resize(array: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a row-major 2-D float array to ``shape = (H, W)``."""
    resized = Image.fromarray(array.astype(np.float32)).resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64)


def overlay_cam(
    image: Any,
    cam: Any,
    alpha: float = 0.4,
    colormap: str = "jet",
    *,
    spatial_order: SpatialOrder = "xy",
) -> np.ndarray:
    """Blends a class-activation map over a greyscale radiograph.

    ``rgb = (1 - alpha) * grey + alpha * colormap(cam)``, computed in [0, 1] and rounded to uint8.

    Args:
        image: greyscale picture in [0, 1], 2-D or with a leading channel of 1 (``(1, W, H)`` as MONAI gives);
            numpy array or tensor. Values outside [0, 1] are clipped.
        cam: activation map in [0, 1] (1 = most relevant), same layout as ``image``; resized bilinearly to the
            picture's size when the sizes differ.
        alpha: weight of the colour map, in [0, 1] (0 shows the radiograph alone).
        colormap: a matplotlib colormap name.
        spatial_order: ``"xy"`` (default) when the arrays are ``(W, H)`` as MONAI's ``LoadImage`` returns them,
            ``"yx"`` when they are already row-major ``(H, W)``.

    Returns:
        uint8 RGB array of shape ``(H, W, 3)``, row-major (the orientation of ``PIL.Image.open``).

    Raises:
        ValueError: not a 2-D picture, ``alpha`` outside [0, 1], or an unknown ``spatial_order``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    grey = _unit(_to_row_major(_to_2d(image, "image"), spatial_order))
    heat = _unit(_to_row_major(_to_2d(cam, "cam"), spatial_order))
    if heat.shape != grey.shape:
        heat = _unit(_resize(heat, grey.shape))
    colours = matplotlib.colormaps[colormap](heat)[..., :3]
    rgb = (1.0 - alpha) * grey[..., None] + alpha * colours
    return np.round(rgb * 255.0).astype(np.uint8)


def as_uint8_picture(rgb: Any) -> np.ndarray:
    """Checks a row-major picture and returns it as uint8.

    Args:
        rgb: ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey; uint8 is kept, other dtypes are taken as
            [0, 1] (clipped) and scaled to 0-255.

    Returns:
        The picture as a uint8 array of the same shape.

    Raises:
        ValueError: any other shape.
    """
    array = np.asarray(rgb)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey picture, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.round(_unit(array.astype(np.float64)) * 255.0).astype(np.uint8)
    return array


def encode_png(rgb: Any) -> bytes:
    """Encodes a row-major picture as PNG bytes.

    Args:
        rgb: ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey; uint8, or floats in [0, 1].

    Returns:
        The PNG file's bytes.
    """
    buffer = io.BytesIO()
    Image.fromarray(as_uint8_picture(rgb)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(rgb: Any, path: str | os.PathLike) -> Path:
    """Writes a row-major picture (e.g. the output of :func:`overlay_cam`) to a PNG file.

    Args:
        rgb: ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA or ``(H, W)`` grey; uint8, or floats in [0, 1]. No
            transposition is applied: row ``i`` of the array is row ``i`` of the file.
        path: destination; missing parent folders are created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(rgb))
    return path


def overlay_name(path: str | os.PathLike) -> str:
    """The overlay PNG's file name for a source path: ``<name>-<hash>.png``.

    ``name`` is the source's file name *with* its extension (``IM-1.dcm-….png`` and ``IM-1.jpeg-….png`` of one
    film are told apart at a glance), with characters other than letters, digits, ``-``, ``_`` and ``.``
    replaced by ``_``; the hash of the full source path keeps files of the same name from different folders apart.
    """
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:8]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).name)
    return f"{name}-{digest}.png"
