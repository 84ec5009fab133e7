"""Batch-norm statistics for an averaged (EMA) model, recomputed before it is validated or saved."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice

import torch
from ignite.engine import Engine, Events
from monai.utils import convert_to_tensor
from torch.optim.swa_utils import update_bn

__all__ = ["BatchNormRecalibration"]


class BatchNormRecalibration:
    """Recompute the running batch-norm statistics of ``model`` at the end of every epoch.

    Averaged weights do not come with the statistics of their own activations: running means and variances
    averaged alongside the weights (ignite ``EMAHandler(handle_buffers="update")``) belong to none of the averaged
    networks, and early in training, while the weights still move fast, such a model can score far below the live
    one (measured here: validation AUC 0.87 against 0.99 after 5 epochs; 0.99 once recomputed). This is SWA's remedy
    (Izmailov et al., 2018): a pass over training images in train mode, without gradients
    (``torch.optim.swa_utils.update_bn``). Attach it before the ``ValidationHandler``, which also runs at the end of
    an epoch, so that validation, threshold and the saved checkpoints all see the recomputed statistics.

    Args:
        model: the averaged model.
        loader: batches (dicts with ``"image"``) of training images without augmentation.
        device: where ``model`` runs.
        max_batches: batches to use per recalibration (``None``: the whole loader).
    """

    def __init__(self, model: torch.nn.Module, loader: Iterable[dict], device: torch.device | str = "cpu",
                 max_batches: int | None = None) -> None:
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {max_batches}")
        self.model = model
        self.loader = loader
        self.device = torch.device(device)
        self.max_batches = max_batches

    def attach(self, engine: Engine) -> None:
        """Recalibrate at every ``EPOCH_COMPLETED`` of ``engine`` (the trainer)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _images(self) -> Iterator[torch.Tensor]:
        for batch in islice(self.loader, self.max_batches):
            image = convert_to_tensor(batch["image"], track_meta=False)  # a MetaTensor becomes a plain tensor
            yield image.to(self.device, memory_format=torch.channels_last)

    def __call__(self, engine: Engine | None = None) -> None:
        """Recompute the statistics (the model is left in eval mode)."""
        update_bn(self._images(), self.model)
        self.model.eval()
