"""The per-input results and refusals of an evaluation or inference run, collected for a writer.

:class:`ResultCollector` records every classified input (source, pneumonia probability, policy flags and, for an
evaluation, the label), decides each at the network's stored threshold when the run completes, takes the
refusals the evaluator kept and, under ``torchrun``, merges every process's share
(:func:`~monai_pneumonia.workflows.distributed.gather_results`) so that one process writes. Subclasses write the
files.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monai_pneumonia.decision import decide, positive_probability
from monai_pneumonia.networks.checkpoint import operating_threshold
from monai_pneumonia.results import Refusal
from monai_pneumonia.workflows.cam_writer import CAM_PATHS_KEY
from monai_pneumonia.workflows.datasets import REFUSED_KEY
from monai_pneumonia.workflows.distributed import gather_results
from monai_pneumonia.workflows.items import class_index, item_flags, source_path

__all__ = ["ResultCollector"]


class ResultCollector:
    """Collects per-input results and refusals of an evaluation or inference run; subclasses write them.

    Each record is ``{"image", "prob_pneumonia", "flags"[, "label"], "prediction", "cam"}`` (``prediction`` the
    class index at the stored threshold, ``cam`` the overlay :class:`~monai_pneumonia.workflows.CamWriter` wrote
    for it in this run, ``""`` without one).

    Args:
        output_dir: where the files go (created if needed).
        network: the model (its ``operating_threshold`` decides the predicted class).
        with_labels: collect ``label`` too (evaluation).
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module, with_labels: bool) -> None:
        self.output_dir = Path(output_dir)
        self.network = network
        self.with_labels = with_labels
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def _collect(self, engine: Engine) -> None:
        for item in engine.state.output or []:
            prob = positive_probability(item["pred"])
            if not math.isfinite(prob):  # a NaN never becomes a decision: the input is refused, with the reason
                path = source_path(item)
                engine.state.refused.append(Refusal(path, f"the model gave no usable answer (score {prob})"))
                continue
            record = {"image": source_path(item), "prob_pneumonia": prob, "flags": item_flags(item)}
            if self.with_labels:
                record["label"] = class_index(item["label"])
            self.records.append(record)

    def _complete(self, engine: Engine) -> None:
        threshold = operating_threshold(self.network)
        overlays = getattr(engine.state, CAM_PATHS_KEY, {})
        for record in self.records:
            record["prediction"] = decide(record["prob_pneumonia"], threshold)
            record["cam"] = overlays.get(record["image"], "")
        refused = list(getattr(engine.state, REFUSED_KEY, []))
        self.records, refused, is_writer = gather_results(engine, self.records, refused)  # torchrun: one writer
        if is_writer:
            self.write(engine, threshold, refused)

    def write(self, engine: Engine, threshold: float, refused: list[Refusal]) -> None:
        """Write the run's files (rank 0 only under ``torchrun``)."""
        raise NotImplementedError
