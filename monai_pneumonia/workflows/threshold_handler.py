"""Choose the operating threshold on every validation pass and store it in the network (a thin ignite adapter).

The rule is one of :data:`monai_pneumonia.decision.THRESHOLD_RULES`, run by
:func:`monai_pneumonia.evaluation.choose_threshold`; the threshold lands in the network's ``operating_threshold``
buffer and so travels in ``model.pt``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.utils import evenly_divisible_all_gather

from monai_pneumonia.decision import DEFAULT_THRESHOLD_RULE, positive_probability
from monai_pneumonia.evaluation import binary_metrics, choose_threshold
from monai_pneumonia.networks.checkpoint import operating_threshold
from monai_pneumonia.workflows.items import class_index

__all__ = ["OperatingThresholdHandler"]

logger = logging.getLogger(__name__)


class OperatingThresholdHandler:
    """Choose the decision threshold on each validation pass and store it in the network.

    Attach it to the validation evaluator *before* the ``CheckpointSaver``: every saved checkpoint then carries
    the threshold chosen on its own validation predictions. Under DDP every rank must attach it (it gathers the
    predictions of all ranks). It also puts ``val_threshold``, ``val_sensitivity`` and ``val_specificity`` in
    ``engine.state.metrics`` for the stats handlers.

    Args:
        network: the model whose ``operating_threshold`` buffer is set (a DDP wrapper is unwrapped).
        method: a rule of :data:`~monai_pneumonia.decision.THRESHOLD_RULES` (Youden's J by default).
        output_transform: maps ``engine.state.output`` to ``(preds, labels)`` lists (default: the ``pred`` and
            ``label`` keys).
        method_kwargs: extra arguments of the rule (e.g. ``{"target": 0.97}``).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        method: str = DEFAULT_THRESHOLD_RULE,
        output_transform: Callable | None = None,
        method_kwargs: dict | None = None,
    ) -> None:
        self.network = network
        self.method = method
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.method_kwargs = method_kwargs or {}
        self._probs: list[float] = []
        self._labels: list[int] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._choose)

    def _reset(self, engine: Engine) -> None:
        self._probs, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        self._probs.extend(positive_probability(p) for p in preds)
        self._labels.extend(class_index(y) for y in labels)

    def _choose(self, engine: Engine) -> None:
        probs = evenly_divisible_all_gather(torch.tensor(self._probs, dtype=torch.float64), concat=True)
        labels = evenly_divisible_all_gather(torch.tensor(self._labels, dtype=torch.int64), concat=True)
        probs, labels = probs.cpu().numpy(), labels.cpu().numpy()
        if len(np.unique(labels)) < 2:
            logger.warning("validation has a single class: operating threshold left at %.4f",
                           operating_threshold(self.network))
            return
        threshold = choose_threshold(labels, probs, method=self.method, **self.method_kwargs)
        getattr(self.network, "module", self.network).set_operating_threshold(threshold)
        summary = binary_metrics(labels, probs, threshold, n_bootstrap=0)
        engine.state.metrics["val_threshold"] = threshold
        engine.state.metrics["val_sensitivity"] = summary["sensitivity"]
        engine.state.metrics["val_specificity"] = summary["specificity"]
