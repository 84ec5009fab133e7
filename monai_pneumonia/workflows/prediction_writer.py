"""Write ``predictions.csv`` and ``errors.csv`` of an inference run (a thin ignite adapter over :mod:`monai_pneumonia.results`)."""

from __future__ import annotations

import logging
import os

import torch
from ignite.engine import Engine

from monai_pneumonia.decision import CLASS_NAMES
from monai_pneumonia.errors import NoReadableInputError
from monai_pneumonia.networks.checkpoint import model_identity
from monai_pneumonia.results import ERRORS_FILE, Refusal, write_predictions
from monai_pneumonia.workflows.collector import ResultCollector

__all__ = ["PredictionWriter"]

logger = logging.getLogger(__name__)


class PredictionWriter(ResultCollector):
    """Write ``predictions.csv`` and ``errors.csv`` with :func:`~monai_pneumonia.results.write_predictions`.

    The columns are :data:`~monai_pneumonia.results.PREDICTION_COLUMNS`.

    Args:
        output_dir: where the files go.
        network: the model (its ``operating_threshold`` decides ``NORMAL`` or ``PNEUMONIA``).

    Raises:
        NoReadableInputError: at completion, when no input at all could be read (after writing ``errors.csv``),
            so that the run exits non-zero.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module) -> None:
        super().__init__(output_dir, network, with_labels=False)

    def write(self, engine: Engine, threshold: float, refused: list[Refusal]) -> None:
        identity = model_identity(self.network)
        rows = [{**r, **identity, "prediction": CLASS_NAMES[r["prediction"]], "threshold": threshold}
                for r in self.records]
        write_predictions(self.output_dir, rows, refused)
        logger.info("%d predictions (threshold %.4f), %d refused, written to %s",
                    len(rows), threshold, len(refused), self.output_dir)
        if not rows:
            raise NoReadableInputError(f"no input could be read: {len(refused)} refused, see {self.output_dir / ERRORS_FILE}")
