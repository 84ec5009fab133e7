"""Inferers that run the network under mixed precision and the channels-last memory layout.

MONAI's engines call ``inferer(inputs, network)`` for every forward pass, so this is the one place where the
fast path is switched on for training, validation, evaluation and inference alike. MONAI's own ``amp`` flag
only enters ``torch.autocast("cuda")``; CPUs with AVX-512 BF16 gain as much from bfloat16 autocast, which this
inferer applies on any device type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["AutocastInferer"]

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None, None: None}


class AutocastInferer(Inferer):
    """Forward pass under ``torch.autocast`` with optional channels-last inputs; outputs are float32.

    Args:
        dtype: autocast dtype, ``"bfloat16"`` (default; no gradient scaling needed), ``"float16"`` (pair with
            MONAI's ``amp=True`` on CUDA for its gradient scaler) or ``None``/``"float32"`` to disable autocast.
        channels_last: convert 4-D inputs to ``torch.channels_last`` (the network should be converted too, with
            ``network.to(memory_format=torch.channels_last)``); 5-D inputs use ``channels_last_3d``.

    Example::

        inferer = AutocastInferer(dtype="bfloat16", channels_last=True)
        logits = inferer(images, network)
    """

    def __init__(self, dtype: str | None = "bfloat16", channels_last: bool = True) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(k for k in _DTYPES if k)} or None, got {dtype!r}.")
        self.dtype = _DTYPES[dtype]
        self.channels_last = channels_last

    def _layout(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:
            return inputs
        if inputs.ndim == 4:
            return inputs.contiguous(memory_format=torch.channels_last)
        if inputs.ndim == 5:
            return inputs.contiguous(memory_format=torch.channels_last_3d)
        return inputs

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        """Run ``network(inputs, *args, **kwargs)``.

        Args:
            inputs: a batch (N, C, *spatial); a MetaTensor is passed on as a plain tensor.
            network: the model.

        Returns:
            The network output as float32.
        """
        if hasattr(inputs, "as_tensor"):
            inputs = inputs.as_tensor()
        inputs = self._layout(inputs)
        if self.dtype is None:
            return network(inputs, *args, **kwargs)
        with torch.autocast(device_type=inputs.device.type, dtype=self.dtype):
            outputs = network(inputs, *args, **kwargs)
        return outputs.float()
