"""Visualisation: Grad-CAM maps, overlays and PNG output (see :mod:`.overlay` for the (W, H) orientation convention)."""

from .cam import grad_cam, normalize_per_image
from .overlay import as_uint8_picture, encode_png, overlay_cam, save_png

__all__ = ["as_uint8_picture", "encode_png", "grad_cam", "normalize_per_image", "overlay_cam", "save_png"]
