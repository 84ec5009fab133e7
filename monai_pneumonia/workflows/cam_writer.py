"""Save a Grad-CAM overlay PNG for every classified input of an inference run (a thin ignite adapter)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.utils import str2bool

from monai_pneumonia.decision import positive_probability
from monai_pneumonia.networks.checkpoint import operating_threshold
from monai_pneumonia.visualize import explain, overlay_name, render_cam, save_png
from monai_pneumonia.workflows.items import source_path

__all__ = ["CAM_PATHS_KEY", "CamWriter"]

#: ``engine.state`` attribute where :class:`CamWriter` records ``{source path: overlay path}``.
CAM_PATHS_KEY = "cam_paths"


class CamWriter:
    """Save a Grad-CAM overlay PNG for every classified input of an inference run.

    Each overlay is drawn by :func:`~monai_pneumonia.visualize.render_cam` on the film's display image (the loader's
    output, at its aspect ratio), with a colour scale and the probability and decision as a caption: the same
    picture as ``predict --save-cam`` and the DICOM listener's Secondary Capture. Files are
    ``<output_dir>/<overlay_name(source)>`` (:func:`~monai_pneumonia.visualize.overlay_name`). The path of each
    overlay is kept in ``engine.state.cam_paths`` (source path -> overlay path) for the prediction writer's ``cam``
    column.

    Args:
        output_dir: the overlay folder.
        network: the model.
        preprocessing: the inference preprocessing (its loader gives the display image).
        enabled: attach nothing when False (so a config can switch it with a knob such as ``save_cam``); the
            strings of a command line (``--save_cam true``) are accepted.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module, preprocessing: Callable | None = None,
                 enabled: bool | str = True) -> None:
        self.output_dir = Path(output_dir)
        self.network = network
        self.preprocessing = preprocessing
        self.enabled = str2bool(enabled)

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (nothing when disabled)."""
        if self.enabled:
            if self.preprocessing is None:
                raise ValueError("CamWriter needs the inference preprocessing: it draws on the loader's display image")
            engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, CAM_PATHS_KEY, {}))
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._save)

    def _save(self, engine: Engine) -> None:
        threshold = operating_threshold(self.network)
        written = getattr(engine.state, CAM_PATHS_KEY)
        for item in engine.state.output or []:
            path = source_path(item)
            display, cam = explain(self.network, self.preprocessing, path)
            overlay = render_cam(display, cam, positive_probability(item["pred"]), threshold)
            target = self.output_dir / overlay_name(path)
            save_png(overlay, target)
            written[path] = os.fspath(target)
