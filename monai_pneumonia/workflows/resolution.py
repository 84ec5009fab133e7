"""Progressive resizing: most training epochs at a low resolution, the last ones at the inference size."""

from __future__ import annotations

from collections.abc import Mapping

from ignite.engine import Engine, Events
from monai.transforms import Resized

__all__ = ["ProgressiveResize"]


class ProgressiveResize:
    """Set the training resolution per epoch: ``schedule`` maps a first epoch (1-based) to a square side.

    A ResNet's cost grows with the pixel count, so epochs at 160 px take about half the time of epochs at 224 px;
    ending at the size inference uses lets the network (and its batch-norm statistics) adapt to it. The handler
    changes the ``Resized`` transform of the training augmentations at ``EPOCH_STARTED``, before the data loader
    starts the epoch's workers.

    Args:
        transform: the training chain's ``Resized`` (after the random crop).
        schedule: ``{first_epoch: size}``, e.g. ``{1: 160, 9: 224}``; keys may be strings (JSON).
    """

    def __init__(self, transform: Resized, schedule: Mapping[int | str, int]) -> None:
        if not schedule:
            raise ValueError("schedule must name at least one epoch")
        self.transform = transform
        self.schedule = sorted((int(epoch), int(size)) for epoch, size in schedule.items())
        if self.schedule[0][0] != 1:
            raise ValueError(f"schedule must start at epoch 1, got {self.schedule[0][0]}")

    def size_at(self, epoch: int) -> int:
        """The side length used in ``epoch`` (1-based)."""
        return [size for first, size in self.schedule if first <= epoch][-1]

    def attach(self, engine: Engine) -> None:
        """Register the handler's event on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._apply)

    def _apply(self, engine: Engine) -> None:
        size = self.size_at(engine.state.epoch)
        spatial_dims = len(self.transform.resizer.spatial_size)
        self.transform.resizer.spatial_size = (size,) * spatial_dims
