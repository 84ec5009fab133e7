"""An evaluator that runs MONAI's supervised evaluation on batches that may carry refused inputs."""

from __future__ import annotations

from typing import Any

from ignite.engine import Events
from monai.engines import SupervisedEvaluator
from monai.utils import CommonKeys

from monai_pneumonia.workflows.datasets import REFUSED_KEY

__all__ = ["XrayEvaluator"]


class XrayEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` that accepts batches from :func:`~monai_pneumonia.workflows.collate_with_refusals`.

    Refusal records are appended to ``engine.state.refused`` (a list of :class:`~monai_pneumonia.results.Refusal`,
    reset at every run) and removed from the batch; a batch in which every input was refused produces an empty output
    instead of calling the network. Everything else is :class:`monai.engines.SupervisedEvaluator`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_event_handler(Events.STARTED, self._reset_refusals)

    @staticmethod
    def _reset_refusals(engine: XrayEvaluator) -> None:
        engine.state.refused = []

    def _iteration(self, engine: SupervisedEvaluator, batchdata: dict[str, Any]) -> dict:
        if isinstance(batchdata, dict) and REFUSED_KEY in batchdata:
            engine.state.refused.extend(batchdata.pop(REFUSED_KEY))
            if CommonKeys.IMAGE not in batchdata:
                return {}
        return super()._iteration(engine, batchdata)
