"""Read PNG and JPEG radiographs with Pillow.

* The size is checked from the header (``Image.open`` is lazy) before any decoding, against the policy's
  pixel limit; Pillow's own ``DecompressionBombError`` is wrapped too.
* Animated or multi-frame pictures (APNG, multi-frame JPEG/MPO) are refused, checked on the opened file before
  anything is decoded.
* EXIF orientation is applied (``ImageOps.exif_transpose``): the image is loaded as a viewer shows it.
* Intensity: values are divided by the maximum of the bit depth (8-bit: 255, 16-bit: 65535, 1-bit: 1).
  Pictures carry no VOI information and were exported to be viewed as they are, so no window is applied
  and 1 = white.
* Colour (RGB, RGBA, CMYK, palette) becomes grey by ITU-R BT.601 luma ``0.299 R + 0.587 G + 0.114 B``,
  computed in float32 from the original samples (no 8-bit rounding of the grey). Alpha is ignored (LA, RGBA):
  radiograph exports use it, if at all, as a constant.

Returns row-major ``(rows, columns)``; :class:`~monai_pneumonia.transforms.LoadXray` transposes to MONAI's
x-first orientation.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.content import require_picture
from monai_pneumonia.io.policy import XrayPolicy, make_meta

__all__ = ["LUMA_WEIGHTS", "read_raster"]

#: ITU-R BT.601 luma weights for R, G, B.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _to_grey(img) -> tuple[np.ndarray, int]:
    """Pillow image -> (float32 grey array in [0, 1], bit depth)."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32), 1
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img).astype(np.float32) / 65535.0, 16
    if mode == "I":  # 16-bit PNGs opened by older Pillow versions
        arr = np.asarray(img)
        return arr.astype(np.float32) / 65535.0, 16
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        return np.clip(arr, 0.0, 1.0), 32
    if mode == "L":  # the common case: no channel copy
        return np.asarray(img, dtype=np.float32) / 255.0, 8
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel(0), dtype=np.float32) / 255.0, 8
    if mode in ("P", "PA"):
        img = img.convert("RGBA" if "transparency" in img.info or mode == "PA" else "RGB")
    elif mode not in ("RGB", "RGBA", "RGBa", "RGBX"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    rgb = np.asarray(img, dtype=np.float32)[..., :3]
    return (rgb @ LUMA_WEIGHTS) / 255.0, 8


def read_raster(path: str | os.PathLike, policy: XrayPolicy | None = None, fmt: str = "png") -> tuple[np.ndarray, dict]:
    """Read a PNG or JPEG picture.

    Args:
        path: the file.
        policy: acceptance policy (only the size limit applies to pictures).
        fmt: the format sniffed from the content, stored in ``meta["format"]``.

    Returns:
        ``(image, meta)``: float32 ``(rows, columns)`` in [0, 1], and the metadata of
        :func:`~monai_pneumonia.io.policy.make_meta`.

    Raises:
        XrayInputError: unreadable, truncated, too large, no picture.
    """
    policy = policy or XrayPolicy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                policy.check_size(path, height, width)
                # before exif_transpose, whose copy has no n_frames: an animated PNG (APNG) or multi-frame file
                frames = getattr(img, "n_frames", 1)
                if frames > 1 or getattr(img, "is_animated", False):
                    raise XrayInputError(path, f"animated/multi-frame picture ({frames} frames)")
                img.load()
                img = ImageOps.exif_transpose(img)
                image, bits = _to_grey(img)
    except XrayInputError:
        raise
    except Image.DecompressionBombError as exc:
        raise XrayInputError(path, f"image too large (Pillow decompression-bomb guard: {exc})") from exc
    except Exception as exc:  # UnidentifiedImageError, truncated data (OSError), bad chunks (SyntaxError)
        raise XrayInputError(path, f"cannot decode {fmt.upper()} ({type(exc).__name__}: {exc})") from exc
    require_picture(path, image)
    rows, columns = image.shape
    return image, make_meta(
        path, fmt, rows, columns, intensity_rule=f"divide:{2**bits - 1 if bits < 32 else 1}", bits=bits
    )
