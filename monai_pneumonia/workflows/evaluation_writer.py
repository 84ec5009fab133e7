"""Write the files of a labelled evaluation: ``metrics.json``, ``predictions.csv``, ``errors.csv``, ``report.html``.

A thin ignite adapter: the figures come from :func:`monai_pneumonia.evaluation.binary_metrics`, the report and
the choice of its gallery cases from :mod:`monai_pneumonia.evaluation.report`, the file schemas from
:mod:`monai_pneumonia.results`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine

from monai_pneumonia import __version__
from monai_pneumonia.decision import CLASS_NAMES
from monai_pneumonia.errors import NoReadableInputError
from monai_pneumonia.evaluation import binary_metrics, gallery_cases, write_report
from monai_pneumonia.networks.checkpoint import model_identity
from monai_pneumonia.results import ERRORS_FILE, Refusal, atomic_write, file_sha256, write_errors, write_predictions
from monai_pneumonia.visualize import explain, render_cam
from monai_pneumonia.workflows.collector import ResultCollector

__all__ = ["EvaluationWriter"]

logger = logging.getLogger(__name__)


class EvaluationWriter(ResultCollector):
    """Write ``metrics.json``, ``predictions.csv``, ``errors.csv`` and the HTML ``report.html``.

    Metrics (pneumonia positive, 95% CIs) come from :func:`monai_pneumonia.evaluation.binary_metrics` at the
    model's stored threshold; ``predictions.csv`` has the columns :data:`~monai_pneumonia.results.
    EVALUATION_COLUMNS`. The report's Grad-CAM gallery shows false negatives first, then false positives, then
    correct cases (:func:`~monai_pneumonia.evaluation.gallery_cases`); the maps are computed by re-running
    ``preprocessing`` on those cases only.

    Args:
        output_dir: where the files go.
        network: the evaluated model.
        preprocessing: the evaluation preprocessing (the same as for inference), used for the gallery.
        gallery_size: Grad-CAM overlays per group (false negatives, false positives, true positives, true
            negatives); 0 disables the gallery.
        n_bootstrap: bootstrap resamples for the confidence intervals.
        title: the report's heading.
        checkpoint: the evaluated ``model.pt``; the report names it with its SHA-256 (with the threshold, the
            package version and the date), so a reader knows exactly which model the figures belong to.
        data_source: what was evaluated, in words (e.g. ``"'test' list of datalist.json"``), shown in the report.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        network: torch.nn.Module,
        preprocessing: Callable | None = None,
        gallery_size: int = 4,
        n_bootstrap: int = 2000,
        title: str = "Pneumonia classifier: evaluation report",
        checkpoint: str | os.PathLike | None = None,
        data_source: str | None = None,
    ) -> None:
        super().__init__(output_dir, network, with_labels=True)
        self.preprocessing = preprocessing
        self.gallery_size = gallery_size
        self.n_bootstrap = n_bootstrap
        self.title = title
        self.checkpoint = checkpoint
        self.data_source = data_source

    def model_info(self, threshold: float, refused: int) -> dict[str, Any]:
        """The facts the report's header states about the model and the data."""
        info: dict[str, Any] = {"threshold": threshold}
        if self.checkpoint is not None and Path(self.checkpoint).is_file():
            info["model"] = f"{os.fspath(self.checkpoint)} (SHA-256 {file_sha256(self.checkpoint)})"
        else:
            info["model"] = "checkpoint not recorded"
        network = getattr(self.network, "module", self.network)
        profile = getattr(network, "site_profile", None)
        if profile is not None:
            info["site profile"] = (f"{profile.path} (SHA-256 {profile.sha256}), rule {profile.rule}, threshold "
                                    f"{profile.threshold:.4f} in place of the model's {network.shipped_threshold:.4f}")
        info["software"] = f"monai-pneumonia {__version__}"
        if self.data_source:
            info["evaluated"] = self.data_source
        info["refused inputs"] = refused
        return info

    def write(self, engine: Engine, threshold: float, refused: list[Refusal]) -> None:
        if not self.records:
            write_errors(self.output_dir, refused)
            raise NoReadableInputError(f"nothing to evaluate: {len(refused)} inputs refused, see {self.output_dir / ERRORS_FILE}")
        identity = model_identity(self.network)
        rows = [{**r, **identity, "prediction": CLASS_NAMES[r["prediction"]], "threshold": threshold}
                for r in self.records]
        write_predictions(self.output_dir, rows, refused, labelled=True)
        labels = np.array([r["label"] for r in self.records])
        probs = np.array([r["prob_pneumonia"] for r in self.records])
        metrics = binary_metrics(labels, probs, threshold, n_bootstrap=self.n_bootstrap)
        metrics["n_refused"] = len(refused)
        metrics.update(identity)
        atomic_write(self.output_dir / "metrics.json", json.dumps(metrics, indent=2))
        gallery = gallery_cases(self.records, self.gallery_size) if self.preprocessing is not None else []
        if gallery:
            logger.info("report: Grad-CAM overlays for %d gallery cases", len(gallery))
        for done, record in enumerate(gallery, start=1):
            record["cam_png"] = self._cam_overlay(record, threshold)
            if done % 8 == 0 or done == len(gallery):
                logger.info("report: Grad-CAM overlay %d/%d", done, len(gallery))
        write_report(self.records, metrics, self.output_dir / "report.html", title=self.title,
                     model_info=self.model_info(threshold, len(refused)))
        logger.info("report written to %s", self.output_dir / "report.html")
        logger.info("evaluation of %d images: %s", len(self.records),
                    ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "sensitivity", "specificity", "auc")
                              if metrics.get(k) is not None))

    def _cam_overlay(self, record: dict, threshold: float) -> np.ndarray:
        display, cam = explain(self.network, self.preprocessing, record["image"])
        return render_cam(display, cam, record["prob_pneumonia"], threshold)
