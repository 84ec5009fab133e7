"""Visualisation: Grad-CAM maps, the overlay renderer and PNG output (see :mod:`.overlay` for the (W, H) convention)."""

from .cam import grad_cam, normalize_per_image
from .overlay import as_uint8_picture, encode_png, overlay_cam, overlay_name, save_png
from .render import SCALE_NOTE, cam_at_size, caption, evidence_map, explain, render_cam

__all__ = [
    "SCALE_NOTE",
    "as_uint8_picture",
    "cam_at_size",
    "caption",
    "encode_png",
    "evidence_map",
    "explain",
    "grad_cam",
    "normalize_per_image",
    "overlay_cam",
    "overlay_name",
    "render_cam",
    "save_png",
]
