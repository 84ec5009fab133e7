"""Transfer initialisation of :class:`~monai_pneumonia.networks.AttentionResNet` from torchvision ResNet weights.

:func:`load_pretrained` reads a torchvision-format ResNet state dict (e.g. the ImageNet weights a user has downloaded
as ``resnet50-*.pth``) from a local file with ``torch.load(..., weights_only=True)``, maps the torchvision keys onto
this network's names, adapts the 3-channel stem to ``in_channels``, skips a classifier of another shape, leaves the
attention, fusion and (skipped) head modules at their initialisation, and returns a :class:`PretrainedReport`.

torchvision layout (``torchvision.models.resnet``)::

    conv1.weight                                   (64, 3, 7, 7)
    bn1.{weight,bias,running_mean,running_var,num_batches_tracked}
    layer{1-4}.{i}.conv{1,2[,3]}.weight            3x3 convs in BasicBlock (18/34), 1x1-3x3-1x1 in Bottleneck (50/101)
    layer{1-4}.{i}.bn{1,2[,3]}.{...}
    layer{1-4}.0.downsample.0.weight               1x1 conv, no bias
    layer{1-4}.0.downsample.1.{...}                batch norm
    fc.{weight,bias}                               (1000, 512 * expansion), (1000,)

:func:`torchvision_resnet_layout` writes this layout out explicitly (no torchvision needed); its parameter totals
equal torchvision's documented ones (ResNet-18 11,689,512; -34 21,797,672; -50 25,557,032; -101 44,549,160).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn as nn

__all__ = [
    "PretrainedReport",
    "adapt_stem_weight",
    "load_pretrained",
    "map_torchvision_key",
    "torchvision_resnet_layout",
]

logger = logging.getLogger(__name__)

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
#: (torchvision key pattern, this network's key template); every torchvision ResNet key matches exactly one.
TORCHVISION_KEY_MAP: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^conv1\.weight$"), "conv1.weight"),
    (re.compile(rf"^bn1\.{_BN}$"), r"bn1.\1"),
    (re.compile(r"^layer([1-4])\.(\d+)\.conv([123])\.weight$"), r"layer\1.\2.conv\3.weight"),
    (re.compile(rf"^layer([1-4])\.(\d+)\.bn([123])\.{_BN}$"), r"layer\1.\2.bn\3.\4"),
    (re.compile(r"^layer([1-4])\.(\d+)\.downsample\.0\.weight$"), r"layer\1.\2.downsample.0.weight"),
    (re.compile(rf"^layer([1-4])\.(\d+)\.downsample\.1\.{_BN}$"), r"layer\1.\2.downsample.1.\3"),
    (re.compile(r"^fc\.(weight|bias)$"), r"fc.\1"),
)

_TV_DEPTHS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
_STEM_MODES = ("auto", "sum", "mean", "repeat")


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: the file read (``None`` for an in-memory state dict).
        loaded: network keys that received a value from the file.
        missing: network keys that did not (attention, fusion, a skipped head, the threshold buffer, shortcut biases
            absent from torchvision files, which are set to zero: see ``zeroed``); they keep their initialisation.
        unexpected: file keys that were not used (unknown names, blocks this depth does not have, skipped heads).
        skipped: file keys that map onto this network but were not loaded because the shapes differ (``fc.*`` when
            ``num_classes != 1000`` or with fusion).
        adapted: keys whose value was transformed to fit (the stem when ``in_channels != 3``), with how.
        zeroed: network keys set to zero to match the source (bias of 1x1 shortcut convolutions).
    """

    path: str | None = None
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adapted: dict[str, str] = field(default_factory=dict)
    zeroed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line with the counts and the adapted/skipped keys."""
        return (
            f"pretrained {self.path or '<state dict>'}: {len(self.loaded)} loaded, {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, skipped {self.skipped}, adapted {self.adapted}, "
            f"{len(self.zeroed)} shortcut biases zeroed"
        )


def map_torchvision_key(key: str) -> str | None:
    """Map one torchvision ResNet key onto this network's name.

    Args:
        key: a torchvision state-dict key, e.g. ``"layer1.0.downsample.0.weight"``.

    Returns:
        the :class:`AttentionResNet` key, or ``None`` when the key is not part of the torchvision ResNet layout.
    """
    for pattern, template in TORCHVISION_KEY_MAP:
        if pattern.match(key):
            return pattern.sub(template, key)
    return None


def torchvision_resnet_layout(depth: int = 50, num_classes: int = 1000, in_channels: int = 3) -> dict[str, tuple]:
    """The keys and shapes of torchvision's ``resnet{depth}().state_dict()``, written out without torchvision.

    Args:
        depth: 18, 34, 50, 101 or 152.
        num_classes: rows of ``fc``. Defaults to 1000 (ImageNet).
        in_channels: input channels of ``conv1``. Defaults to 3.

    Returns:
        an ordered ``{key: shape}`` dict (``num_batches_tracked`` has shape ``()``).

    Raises:
        ValueError: for an unknown depth.
    """
    if depth not in _TV_DEPTHS:
        raise ValueError(f"depth must be one of {sorted(_TV_DEPTHS)}, got {depth!r}.")
    kind, layers = _TV_DEPTHS[depth]
    expansion = 4 if kind == "bottleneck" else 1
    layout: dict[str, tuple] = {}

    def bn(prefix: str, c: int) -> None:
        layout.update(
            {
                f"{prefix}.weight": (c,),
                f"{prefix}.bias": (c,),
                f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,),
                f"{prefix}.num_batches_tracked": (),
            }
        )

    layout["conv1.weight"] = (64, in_channels, 7, 7)
    bn("bn1", 64)
    in_planes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for i in range(blocks):
            p = f"layer{stage}.{i}"
            if kind == "basic":
                layout[f"{p}.conv1.weight"] = (planes, in_planes, 3, 3)
                bn(f"{p}.bn1", planes)
                layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
            else:
                layout[f"{p}.conv1.weight"] = (planes, in_planes, 1, 1)
                bn(f"{p}.bn1", planes)
                layout[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn2", planes)
                layout[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
                bn(f"{p}.bn3", planes * 4)
            if i == 0 and (stage > 1 or in_planes != planes * expansion):
                layout[f"{p}.downsample.0.weight"] = (planes * expansion, in_planes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            in_planes = planes * expansion
    layout["fc.weight"] = (num_classes, 512 * expansion)
    layout["fc.bias"] = (num_classes,)
    return layout


def adapt_stem_weight(weight: torch.Tensor, in_channels: int, mode: str = "auto") -> tuple[torch.Tensor, str]:
    """Adapt a 3-channel (RGB) stem kernel ``(out, 3, *k)`` to ``in_channels`` input channels.

    * ``"sum"``: ``w.sum(1) / in_channels`` on every channel. For ``in_channels == 1`` this is the plain sum over RGB:
      a grayscale image ``g`` fed as RGB ``(g, g, g)`` gives ``sum_c w_c * g``, so the 1-channel network reproduces
      the RGB network on a replicated grayscale image exactly (up to the per-channel ImageNet normalisation, which
      a grayscale pipeline replaces by one mean/std).
    * ``"mean"``: ``w.mean(1)`` on every channel (scale of one RGB channel).
    * ``"repeat"``: RGB kernels tiled cyclically over the channels, scaled by ``3 / in_channels`` (timm's rule).
    * ``"auto"``: copy for 3 channels, ``"sum"`` for 1, ``"repeat"`` otherwise.

    Args:
        weight: the source kernel, shape ``(out, 3, *kernel)``.
        in_channels: channels of the target stem.
        mode: ``"auto"``, ``"sum"``, ``"mean"`` or ``"repeat"``.

    Returns:
        the adapted kernel ``(out, in_channels, *kernel)`` and the name of the rule used (``"copy"`` when unchanged).

    Raises:
        ValueError: for an unknown mode or a source that does not have 3 input channels.
    """
    if mode not in _STEM_MODES:
        raise ValueError(f"stem mode must be one of {_STEM_MODES}, got {mode!r}.")
    if weight.ndim < 3 or weight.shape[1] != 3:
        raise ValueError(f"expected an RGB stem kernel (out, 3, *kernel), got shape {tuple(weight.shape)}.")
    if mode == "auto":
        if in_channels == 3:
            return weight.clone(), "copy"
        mode = "sum" if in_channels == 1 else "repeat"
    reps = [1, in_channels] + [1] * (weight.ndim - 2)
    if mode == "sum":
        return (weight.sum(1, keepdim=True) / in_channels).repeat(reps), "sum"
    if mode == "mean":
        return weight.mean(1, keepdim=True).repeat(reps), "mean"
    idx = torch.arange(in_channels) % 3
    return weight[:, idx] * (3.0 / in_channels), "repeat"


def _read_state_dict(
    source: str | os.PathLike | Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], str | None]:
    if isinstance(source, Mapping):
        state, path = dict(source), None
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained weights not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, Mapping) and wrapper in state and isinstance(state[wrapper], Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(state).__name__}.")
    prefix = "module."  # DataParallel / DistributedDataParallel checkpoints
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}, path


def load_pretrained(
    net: nn.Module,
    path: str | os.PathLike | Mapping[str, torch.Tensor],
    stem_mode: str = "auto",
    load_head: bool = True,
) -> PretrainedReport:
    """Initialise ``net`` from a torchvision-format 2D ResNet state dict.

    Backbone weights (stem, ``layer1``-``layer4``: convolutions, batch norms with running statistics, shortcuts) are
    copied; the 3-channel stem is adapted to ``net.in_channels`` (:func:`adapt_stem_weight`; 1 channel: sum over RGB);
    ``fc`` is copied only when its shape matches (it does not when ``num_classes != 1000`` or with fusion), otherwise
    reported as skipped and left initialised; attention and fusion modules are left initialised; shortcut-conv biases
    that the file lacks (torchvision has none, MONAI's ``ResNet`` has them) are set to zero so the backbone computes
    exactly what the torchvision network computes.

    Args:
        net: an :class:`~monai_pneumonia.networks.AttentionResNet` (or a network with the same key layout and
            ``spatial_dims``/``in_channels`` attributes).
        path: a local ``.pth``/``.pt`` file, read with ``torch.load(path, map_location="cpu", weights_only=True)``,
            or an in-memory state dict. ``{"state_dict": ...}``/``{"model": ...}`` wrappers and ``module.`` prefixes
            are unwrapped.
        stem_mode: how to adapt the stem to ``in_channels != 3``: ``"auto"``, ``"sum"``, ``"mean"``, ``"repeat"``.
        load_head: copy ``fc`` when its shape matches. Defaults to True.

    Returns:
        a :class:`PretrainedReport` (also logged at INFO level).

    Raises:
        FileNotFoundError: when ``path`` does not exist.
        ValueError: when the network is not 2D, the file is not a 2D torchvision ResNet state dict, or backbone shapes
            differ (a file of another depth or width).
    """
    state, file_path = _read_state_dict(path)
    spatial_dims = getattr(net, "spatial_dims", 2)
    stem = state.get("conv1.weight")
    if stem is None:
        raise ValueError("not a torchvision ResNet state dict: it has no 'conv1.weight'.")
    if stem.ndim != 4:
        raise ValueError(
            f"expected a 2D torchvision ResNet state dict (4D conv1.weight), got shape {tuple(stem.shape)}."
        )
    if spatial_dims != 2:
        raise ValueError(
            f"torchvision ImageNet weights are 2D; they cannot initialise a {spatial_dims}D network "
            "(build it with spatial_dims=2, or inflate the kernels yourself)."
        )

    target = net.state_dict()
    report = PretrainedReport(path=file_path)
    new_values: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []
    for key, value in state.items():
        name = map_torchvision_key(key)
        if name is None or name not in target:
            report.unexpected.append(key)
            continue
        want = target[name].shape
        if name == "conv1.weight" and value.shape[1] != want[1]:
            value, rule = adapt_stem_weight(value, int(want[1]), stem_mode)
            report.adapted[name] = f"{rule} over RGB ({tuple(stem.shape)} -> {tuple(value.shape)})"
        if value.shape != want:
            if name.startswith("fc."):
                report.skipped.append(key)
                report.unexpected.append(key)
                continue
            mismatched.append(f"{key}: file {tuple(value.shape)} vs network {tuple(want)}")
            continue
        if name.startswith("fc.") and not load_head:
            report.skipped.append(key)
            report.unexpected.append(key)
            continue
        new_values[name] = value.to(dtype=target[name].dtype)
    if mismatched:
        raise ValueError(
            f"{len(mismatched)} backbone tensors do not fit (another depth or width?): " + "; ".join(mismatched[:5])
        )
    for name in target:
        if re.fullmatch(r"layer[1-4]\.\d+\.downsample\.0\.bias", name) and f"{name[:-4]}weight" in new_values:
            new_values[name] = torch.zeros_like(target[name])
            report.zeroed.append(name)

    net.load_state_dict(new_values, strict=False)
    report.loaded = [k for k in target if k in new_values and k not in report.zeroed]
    report.missing = [k for k in target if k not in new_values or k in report.zeroed]
    logger.info(report.summary())
    return report
