"""The one Grad-CAM renderer: the map on the film as the radiologist sees it, with a colour scale and a caption.

The bundle's :class:`~monai_pneumonia.workflows.CamWriter`, the evaluation report's gallery, ``predict
--save-cam``, the DICOM listener's Secondary Capture and the MONAI Label app all draw through here:

* :func:`explain` runs the preprocessing once: its first transform (the loader) gives the *display image* —
  the film after the DICOM display pipeline, at its own aspect ratio — and the rest gives the network input, on
  which Grad-CAM is computed. The preprocessing resizes without keeping the aspect ratio, so the map stretches
  back onto the display image exactly (:func:`cam_at_size`).
* :func:`render_cam` blends the map over the display image scaled to a useful size (long side between
  ``min_side`` and ``max_side``), adds a colour scale on the right and, given the probability and the
  threshold, a caption with the decision (:mod:`monai_pneumonia.decision`).

Grad-CAM maps are normalised per image (each map's maximum is 1), so a map alone says where the network looked,
not how strongly it found pneumonia: a normal film at p = 0.015 would show a full-strength blob. Given the
probability, the drawn map is :func:`evidence_map` = ``P(pneumonia) x map``, so one colour scale (0 to 1) means the
same on every film and a film without evidence shows none; without it, the scale is labelled *relative*.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib
import numpy as np
import torch
from monai.transforms import Compose
from PIL import Image, ImageDraw, ImageFont

from monai_pneumonia.decision import PNEUMONIA_INDEX, class_name, is_positive
from monai_pneumonia.visualize.cam import grad_cam
from monai_pneumonia.visualize.overlay import _to_2d, _unit

__all__ = ["SCALE_NOTE", "cam_at_size", "caption", "evidence_map", "explain", "render_cam"]

_BACKGROUND = (16, 16, 16)
_TEXT = (240, 240, 240)
#: The caption's second line: what the colour scale means on a captioned overlay.
SCALE_NOTE = "colour = P(pneumonia) x Grad-CAM, one scale for every film"


def explain(network: torch.nn.Module, preprocessing: Compose, path: str | os.PathLike,
            device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The display image of a file and the Grad-CAM map of the pneumonia class on the network input.

    Args:
        network: the classifier network.
        preprocessing: the bundle's ``preprocessing`` (a ``Compose`` whose first transform is the loader).
        path: the image file.
        device: where the network runs (default: the network's device).

    Returns:
        ``(display, cam)``: the loader's image ``(1, W, H)`` in [0, 1] and the map ``(1, w, h)`` in [0, 1] at
        the network input's size, both on the CPU.

    Raises:
        XrayInputError: the file is refused (via MONAI's ``RuntimeError`` wrapper, see
            :func:`~monai_pneumonia.errors.find_cause`).
    """
    loader, *rest = preprocessing.transforms
    loaded = loader({"image": os.fspath(path)})
    image = Compose(rest)(loaded)["image"]
    if device is None:
        device = next(network.parameters()).device
    cam = grad_cam(network, torch.as_tensor(image).unsqueeze(0).to(device), PNEUMONIA_INDEX)[0]
    return torch.as_tensor(loaded["image"]).cpu(), cam.detach().cpu()


def cam_at_size(cam: Any, rows: int, columns: int) -> np.ndarray:
    """A map in MONAI's ``(1, W, H)`` or ``(W, H)`` layout, row-major and resized bilinearly to ``(rows, columns)``.

    Returns:
        ``float64`` array ``(rows, columns)`` in [0, 1].
    """
    heat = _unit(_to_2d(cam, "cam").T)
    resized = Image.fromarray(heat.astype(np.float32)).resize((columns, rows), Image.Resampling.BILINEAR)
    return _unit(np.asarray(resized, dtype=np.float64))


def evidence_map(heat: np.ndarray, prob_pneumonia: float) -> np.ndarray:
    """A per-image normalised map (max 1) weighted by the probability: its scale carries the model's evidence.

    Returns:
        ``P(pneumonia) * heat`` in [0, 1] (a NaN probability counts as no evidence).
    """
    weight = float(np.clip(np.nan_to_num(prob_pneumonia, nan=0.0), 0.0, 1.0))
    return _unit(np.asarray(heat, dtype=np.float64) * weight)


def caption(prob_pneumonia: float, threshold: float) -> str:
    """The caption burned into an overlay: probability, threshold and decision."""
    relation = ">=" if is_positive(prob_pneumonia, threshold) else "<"
    return (f"P(pneumonia) {prob_pneumonia:.3f} {relation} threshold {threshold:.3f}: "
            f"{class_name(prob_pneumonia, threshold)} (research use)")


def render_cam(
    display: Any,
    cam: Any,
    prob_pneumonia: float | None = None,
    threshold: float | None = None,
    *,
    alpha: float = 0.4,
    colormap: str = "jet",
    min_side: int = 512,
    max_side: int = 1024,
) -> np.ndarray:
    """Draw a Grad-CAM map over the display image, with a colour scale and (optionally) the decision caption.

    Args:
        display: the loader's image, ``(1, W, H)`` or ``(W, H)`` in [0, 1] (MONAI layout).
        cam: the map in the same layout, any size (stretched onto the image).
        prob_pneumonia: with ``threshold``, burn the caption of :func:`caption` under the picture and draw
            :func:`evidence_map` (the scale then means the same on every film); without, the map is drawn as
            given and its scale labelled relative.
        threshold: the operating threshold.
        alpha: weight of the colour map, in [0, 1].
        colormap: a matplotlib colormap name.
        min_side: the picture's long side is scaled up to at least this.
        max_side: and down to at most this (aspect ratio kept).

    Returns:
        uint8 RGB ``(rows, columns, 3)``, row-major.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    grey = _unit(_to_2d(display, "display").T)
    long_side = max(grey.shape)
    scale = min(max(long_side, min_side), max_side) / long_side
    rows, columns = max(1, round(grey.shape[0] * scale)), max(1, round(grey.shape[1] * scale))
    grey = _unit(np.asarray(Image.fromarray(grey.astype(np.float32)).resize((columns, rows), Image.Resampling.BILINEAR),
                            dtype=np.float64))
    has_caption = prob_pneumonia is not None and threshold is not None
    heat = cam_at_size(cam, rows, columns)
    if has_caption:
        heat = evidence_map(heat, prob_pneumonia)
    cmap = matplotlib.colormaps[colormap]
    blended = (1.0 - alpha) * grey[..., None] + alpha * cmap(heat)[..., :3]
    picture = Image.fromarray(np.round(blended * 255.0).astype(np.uint8))

    font_px = max(12, rows // 40)
    font = ImageFont.load_default(size=font_px)
    bar_width, margin = max(10, columns // 40), font_px // 2
    top_label, bottom_label = ("1.0", "0.0") if has_caption else ("max", "0")
    label_width = int(max(font.getlength(top_label), font.getlength("relative"))) + margin
    caption_height = 7 * font_px // 2 if has_caption else 0
    canvas = Image.new("RGB", (columns + 2 * margin + bar_width + label_width, rows + caption_height), _BACKGROUND)
    canvas.paste(picture, (0, 0))
    gradient = np.linspace(1.0, 0.0, rows)[:, None].repeat(bar_width, axis=1)  # top: most relevant
    canvas.paste(Image.fromarray(np.round(cmap(gradient)[..., :3] * 255.0).astype(np.uint8)), (columns + margin, 0))
    draw = ImageDraw.Draw(canvas)
    label_x = columns + margin + bar_width + margin // 2
    draw.text((label_x, 0), top_label, fill=_TEXT, font=font)
    draw.text((label_x, rows - font_px - 2), bottom_label, fill=_TEXT, font=font)
    if has_caption:
        draw.text((margin, rows + font_px // 2), caption(prob_pneumonia, threshold), fill=_TEXT, font=font)
        draw.text((margin, rows + 2 * font_px), SCALE_NOTE, fill=_TEXT, font=font)
    else:
        draw.text((label_x, rows // 2 - font_px // 2), "relative", fill=_TEXT, font=font)
    return np.asarray(canvas)
