"""Grad-CAM maps for the pneumonia class, computed with MONAI's :class:`monai.visualize.GradCAM`."""

from __future__ import annotations

import torch
from monai.visualize import GradCAM

__all__ = ["grad_cam", "normalize_per_image"]


def normalize_per_image(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map of a batch to [0, 1] (min to 0, max to 1; a constant map becomes 0).

    MONAI's default Grad-CAM normaliser maps (min, max) to (1, 0), i.e. it inverts the map; this one does not.

    Args:
        maps: (N, 1, *spatial) Grad-CAM maps.

    Returns:
        The maps, float32, each in [0, 1].
    """
    maps = torch.as_tensor(maps, dtype=torch.float32)
    flat = maps.reshape(maps.shape[0], -1)
    low = flat.min(dim=1).values.view(-1, *([1] * (maps.ndim - 1)))
    span = (flat.max(dim=1).values.view_as(low) - low).clamp_min(torch.finfo(torch.float32).tiny)
    return ((maps - low) / span).clamp_(0.0, 1.0)


#: Attribute under which a network keeps its ``GradCAM`` objects, one per layer.
_CAM_ATTRIBUTE = "_monai_pneumonia_grad_cams"


def _cam_of(module: torch.nn.Module, layer: str) -> GradCAM:
    """The network's ``GradCAM`` for ``layer``, built once.

    MONAI's ``GradCAM`` registers forward and backward hooks on the layer when it is built and keeps no handle to
    remove them, so building one per call would stack another pair of hooks on every call: a long-running service
    would slow down and grow without bound. The object lives on the network, not in a module-level cache.
    """
    cams = module.__dict__.setdefault(_CAM_ATTRIBUTE, {})
    if layer not in cams:
        cams[layer] = GradCAM(nn_module=module, target_layers=layer, postprocessing=normalize_per_image)
    return cams[layer]


def grad_cam(network: torch.nn.Module, images: torch.Tensor, class_index: int = 1, layer: str | None = None) -> torch.Tensor:
    """Grad-CAM of ``class_index`` (1 = pneumonia) on the network's ``cam_layer``.

    Args:
        network: an :class:`~monai_pneumonia.networks.AttentionResNet` (or a DDP/DataParallel wrapper of one);
            it is put in eval mode for the call and restored after.
        images: preprocessed inputs (N, C, *spatial), as the network sees them.
        class_index: the logit whose gradient drives the map.
        layer: a name from ``network.named_modules()``; defaults to ``network.cam_layer``.

    Returns:
        (N, 1, *spatial) float32 maps in [0, 1], upsampled to the input size, on the CPU.
    """
    module = getattr(network, "module", network)
    target = layer or module.cam_layer
    was_training = module.training
    module.eval()
    try:
        parameter = next(module.parameters())
        inputs = torch.as_tensor(images).detach().to(device=parameter.device, dtype=torch.float32)
        cam = _cam_of(module, target)
        with torch.enable_grad():
            maps = cam(x=inputs, class_idx=class_index)
    finally:
        module.train(was_training)
    return maps.detach().float().cpu()
