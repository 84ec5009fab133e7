"""Random border and corner erasing: take away the image edge, where collimation edges and text markers sit.

Letters, lead markers and the collimator's edge are placed by the technologist, not by the disease; a network that
reads them learns the machine, not the lungs. Erasing random bands along the edges and squares in the corners
during training removes that shortcut.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["RandBorderErase", "RandBorderErased", "RandBorderEraseD", "RandBorderEraseDict"]


class RandBorderErase(RandomizableTransform):
    """Fill random bands along the image edges and squares in its corners with a constant.

    Each of the 2 * ``spatial_dims`` edges gets, with probability ``edge_prob``, a band of random width up to
    ``max_band`` of that side; each corner gets, with probability ``corner_prob``, a square of random side up to
    ``max_corner`` of the smaller side. The fill is the image minimum (black, as outside the collimator).

    Args:
        prob: probability of erasing anything at all.
        max_band: largest band width, a fraction of the side.
        max_corner: largest corner square, a fraction of the smaller side.
        edge_prob: probability of a band on each edge.
        corner_prob: probability of a square in each corner.
    """

    def __init__(
        self,
        prob: float = 0.5,
        max_band: float = 0.12,
        max_corner: float = 0.2,
        edge_prob: float = 0.5,
        corner_prob: float = 0.5,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        for name, value in (("max_band", max_band), ("max_corner", max_corner)):
            if not 0.0 <= value < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {value!r}")
        self.max_band, self.max_corner = max_band, max_corner
        self.edge_prob, self.corner_prob = edge_prob, corner_prob
        self._slices: list[tuple[slice, ...]] = []

    def randomize(self, shape: tuple[int, ...]) -> None:  # type: ignore[override]
        """Draw the erased regions for an image of spatial ``shape``."""
        super().randomize(None)
        self._slices = []
        if not self._do_transform:
            return
        for axis, side in enumerate(shape):
            for at_end in (False, True):
                if self.R.rand() < self.edge_prob:
                    width = int(self.R.randint(0, int(self.max_band * side) + 1))
                    if width:
                        span = slice(side - width, side) if at_end else slice(0, width)
                        self._slices.append(tuple(span if a == axis else slice(None) for a in range(len(shape))))
        corner = int(self.max_corner * min(shape))
        for ends in np.ndindex(*(2,) * len(shape)):
            if corner and self.R.rand() < self.corner_prob:
                size = int(self.R.randint(1, corner + 1))
                self._slices.append(
                    tuple(slice(side - size, side) if end else slice(0, size) for side, end in zip(shape, ends, strict=True))
                )

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Erase the regions of one channel-first image (all channels alike).

        Args:
            img: (C, *spatial) image.
            randomize: draw new regions (``False`` reuses the last draw).

        Returns:
            The image with the regions set to its minimum (a copy; the input is not changed).
        """
        if randomize:
            self.randomize(tuple(img.shape[1:]))
        if not self._slices:
            return img
        out = img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        fill = out.min()
        for region in self._slices:
            out[(slice(None), *region)] = fill
        return out


class RandBorderErased(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandBorderErase`: the same regions for every key of one item.

    Args:
        keys: the image key(s).
        prob: probability of erasing anything at all.
        max_band, max_corner, edge_prob, corner_prob: see :class:`RandBorderErase`.
        allow_missing_keys: do not raise for a missing key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        max_band: float = 0.12,
        max_corner: float = 0.2,
        edge_prob: float = 0.5,
        corner_prob: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.eraser = RandBorderErase(1.0, max_band, max_corner, edge_prob, corner_prob)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.eraser.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        first = True
        for key in self.key_iterator(d):
            d[key] = self.eraser(d[key], randomize=first)
            first = False
        return d


RandBorderEraseD = RandBorderEraseDict = RandBorderErased
