"""The intended-use gate's atypicality tier as an engine handler, for the bundle's ``monai.bundle run`` workflow.

A thin adapter over :class:`~monai_pneumonia.networks.atypicality.AtypicalityReference` (the computation):
after each iteration it scores the films (their network inputs, in the decollated ``engine.state.output``) with
the eager network's pooled features, moves refused films from ``engine.state.output`` to ``engine.state.refused``
(so the writers list them in ``errors.csv``) and adds the ``atypical`` flag to the others' ``xray_flags``. List it
before the writers in ``handlers``.
"""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from monai_pneumonia.networks.atypicality import AtypicalityReference
from monai_pneumonia.results import Refusal, format_flags
from monai_pneumonia.workflows.items import source_path

__all__ = ["AtypicalityGate"]


class AtypicalityGate:
    """Refuse or flag atypical films in an inference run.

    Args:
        network: the eager network (features come from it, float32).
        reference: the checkpoint's reference (``None``: the handler does nothing, e.g. no sidecar shipped).
        image_key: the batch key of the network input.
    """

    def __init__(self, network: torch.nn.Module, reference: AtypicalityReference | None, image_key: str = "image"):
        self.network = network.eval()  # the evaluator puts only its own (runtime) network in eval mode
        self.reference = reference
        self.image_key = image_key

    def attach(self, engine: Engine) -> None:
        """Run after every iteration (before the writers, which are attached after it)."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        outputs = engine.state.output
        if self.reference is None or not outputs:
            return
        # MONAI's engines decollate the output into one dict per film, each holding its network input
        images = torch.stack([torch.as_tensor(item[self.image_key]) for item in outputs])
        metas = [item[self.image_key].meta for item in outputs]
        verdicts = self.reference.gate_images(self.network, images, [format_flags(meta) for meta in metas])
        kept = []
        for item, meta, verdict in zip(outputs, metas, verdicts, strict=True):
            if verdict.reason:
                path = source_path(item, self.image_key)
                engine.state.refused.append(Refusal(path, verdict.reason))  # the reason alone, as the loader's
                continue
            meta.update(verdict.meta())
            kept.append(item)
        engine.state.output = kept
