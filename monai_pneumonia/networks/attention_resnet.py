"""ResNet with residual attention (CBAM / SE) and multi-scale feature fusion, built from MONAI's ResNet blocks."""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from monai.utils import str2bool

from monai_pneumonia.decision import is_positive

from .blocks import ATTENTION_TYPES, AttentionResNetBlock, AttentionResNetBottleneck, MultiScaleFusion
from .pretrained import load_pretrained

__all__ = ["DEPTHS", "AttentionResNet"]

#: depth -> (block class, blocks per stage); the layouts of He et al. 2016 / torchvision.
DEPTHS: dict[int, tuple[type[AttentionResNetBlock | AttentionResNetBottleneck], tuple[int, int, int, int]]] = {
    18: (AttentionResNetBlock, (2, 2, 2, 2)),
    34: (AttentionResNetBlock, (3, 4, 6, 3)),
    50: (AttentionResNetBottleneck, (3, 4, 6, 3)),
    101: (AttentionResNetBottleneck, (3, 4, 23, 3)),
}

_STAGE_PLANES = (64, 128, 256, 512)


def _validate_args(
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    depth: int,
    attention: str | None,
    fusion: bool,
    dropout_prob: float,
    reduction: int,
    fusion_channels: int | None,
    operating_threshold: float,
    attention_stages: tuple[int, ...],
) -> None:
    """Raise a ValueError naming the first invalid constructor argument of :class:`AttentionResNet`."""
    if spatial_dims not in (1, 2, 3):
        raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}.")
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth!r}.")
    if attention not in ATTENTION_TYPES:
        raise ValueError(f"attention must be one of {ATTENTION_TYPES}, got {attention!r}.")
    if not isinstance(fusion, bool):
        raise ValueError(f"fusion must be True or False, got {fusion!r}.")
    for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("reduction", reduction)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if fusion_channels is not None and (not isinstance(fusion_channels, int) or fusion_channels < 1):
        raise ValueError(f"fusion_channels must be a positive integer or None, got {fusion_channels!r}.")
    if not 0.0 <= float(dropout_prob) <= 1.0:
        raise ValueError(f"dropout_prob must be in [0, 1], got {dropout_prob!r}.")
    if not 0.0 <= float(operating_threshold) <= 1.0:
        raise ValueError(f"operating_threshold must be in [0, 1], got {operating_threshold!r}.")
    if not attention_stages or any(s not in (1, 2, 3, 4) for s in attention_stages):
        raise ValueError(f"attention_stages must be a non-empty subset of (1, 2, 3, 4), got {attention_stages!r}.")


class AttentionResNet(nn.Module):
    """ResNet-18/34/50/101 with attention in the residual blocks and multi-scale fusion before the classifier.

    The "improved ResNet-50" of the pneumonia paper (attention + multi-scale feature fusion), as a configurable MONAI
    network for ablations and export.

    * Backbone: MONAI's ``ResNetBlock`` / ``ResNetBottleneck`` (subclassed in :mod:`.blocks` to take an attention
      module), a 7x7 stride-2 stem + 3x3 stride-2 max-pool (as torchvision; MONAI's ``ResNet`` defaults to a stride-1
      stem, 4x the compute), type-B shortcuts (1x1 conv + norm), ``spatial_dims``-generic (1D/2D/3D).
    * ``attention``: ``"cbam"`` (channel MLP on avg+max pooled features, then a 7x7 conv on the channel-avg+max maps;
      Woo et al. 2018) or ``"se"`` (MONAI ``ChannelSELayer``, reduction 16; Hu et al. 2018), applied to the residual
      branch of every block, after its last norm and before the shortcut addition; ``None`` for none.
    * ``fusion``: :class:`~.blocks.MultiScaleFusion` of stages 2-4 (pooled concatenation; the design is justified
      there): stages 2 and 3 projected to ``fusion_channels`` by 1x1 conv + BN + ReLU and average-pooled, stage 4
      average-pooled at full width, concatenated.
    * Head: dropout (``dropout_prob``) then a linear layer. ``forward`` returns logits ``(N, num_classes)``, no softmax.

    With ``attention=None, fusion=False`` the network is exactly MONAI's
    ``resnet50(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)`` (depth 50): same modules, same
    state-dict keys and shapes (plus the ``operating_threshold`` buffer), same outputs for the same weights.

    **Operating threshold.** The persistent float32 scalar buffer ``operating_threshold`` (default 0.5) is the decision
    threshold on the pneumonia probability (``softmax(logits)[:, positive_class]`` for ``num_classes >= 2``,
    ``sigmoid(logits[:, 0])`` for ``num_classes == 1``; the positive class is index 1 by convention). It is chosen on
    *validation* data at the end of training (never on test data) with :meth:`set_operating_threshold` and travels
    with the weights: it is in ``state_dict()`` (so in plain checkpoints loadable with
    ``torch.load(..., weights_only=True)``) and in ``torch.jit.trace`` exports (``traced.operating_threshold``). It
    does not take part in ``forward`` (ONNX graphs therefore do not contain it; store it as model metadata there).
    Use :meth:`predict` to apply it. Note that ``net.to(dtype)`` casts it like every other floating buffer.

    **Grad-CAM.** :attr:`cam_layer` is the ``named_modules()`` name of the last spatial feature layer (``"layer4"``)::

        GradCAM(nn_module=net, target_layers=net.cam_layer)

    **Cost** (1x224x224, ``num_classes=2``, depth 50, defaults otherwise; measured with
    ``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and matrix products only (not norms,
    activations, pooling or the attention's element-wise products) and reports FLOPs = 2 x multiply-accumulates;
    GMACs = GFLOPs / 2; parameters with ``sum(p.numel() for p in net.parameters())``)::

        configuration            parameters   vs plain   GFLOPs   GMACs
        plain (None, False)      23,509,698      +0.0%    8.017   4.008
        + SE                     26,040,690     +10.8%    8.022   4.011
        + CBAM                   26,042,290     +10.8%    8.030   4.015
        + fusion                 23,904,962      +1.7%    8.325   4.163
        + CBAM + fusion          26,437,554     +12.5%    8.338   4.169  (the defaults)

    MONAI's ``resnet50(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)`` has 23,512,130
    parameters and 8.017 GFLOPs, the plain row exactly; torchvision's 3-channel ResNet-50 (1000 classes) has
    25,557,032 parameters. Most of the fusion cost is the stage-2 projection at 28x28 (0.10 GMACs).

    Args:
        spatial_dims: number of spatial dimensions of the input (1, 2 or 3). Defaults to 2.
        in_channels: number of input channels. Defaults to 1 (grayscale radiographs).
        num_classes: number of outputs (logits). Defaults to 2 (normal, pneumonia).
        depth: ResNet depth, one of 18, 34, 50, 101. Defaults to 50.
        attention: ``"cbam"``, ``"se"`` or ``None``. Defaults to ``"cbam"``.
        fusion: fuse stages 2-4 before the classifier (also the strings ``"true"``/``"false"`` of a command-line
            override). Defaults to True.
        dropout_prob: dropout probability before the linear head. Defaults to 0.0 (set it in the training recipe,
            the same for every arm of an ablation).
        reduction: reduction ratio of the attention MLPs. Defaults to 16.
        attention_kernel_size: kernel size of the CBAM spatial-attention convolution. Defaults to 7.
        fusion_channels: projection width of stages 2 and 3 in the fusion; ``None`` for a 1/8 of the stage-4 width
            (256 for depth 50/101, 64 for depth 18/34).
        operating_threshold: initial value of the ``operating_threshold`` buffer, in [0, 1]. Defaults to 0.5.
        bias_downsample: bias in the 1x1 shortcut convolutions. Defaults to True, as MONAI's ``ResNet`` (torchvision
            has none; :func:`~.pretrained.load_pretrained` sets them to zero).
        act: activation, MONAI ``Act`` name or ``(name, kwargs)``. Defaults to in-place ReLU.
        norm: normalisation, MONAI ``Norm`` name or ``(name, kwargs)``. Defaults to batch norm.
        pretrained_path: optional path of a torchvision-format ResNet state dict loaded with
            :func:`~.pretrained.load_pretrained` (2D only); the report is kept in ``self.pretrained_report``.
        attention_stages: the stages (1-4) whose blocks get attention. Defaults to all four, as in the CBAM and SE
            papers. Attention on the large stage-1/2 maps is memory-bound element-wise work: on the 2-core CPU
            this project trains on, CBAM in every block cut training throughput (bf16, batch 32, 224 px) from
            about 11 to 4.7 img/s, CBAM in stages 3-4 only to 8.9-9.2 img/s (``benchmarks/bench_training.py``), so
            the bundle uses ``(3, 4)``: attention where the features are semantic, at a quarter of the cost.

    Raises:
        ValueError: for an unsupported ``spatial_dims``, ``depth`` or ``attention``, non-positive ``in_channels``,
            ``num_classes``, ``reduction`` or ``fusion_channels``, a ``dropout_prob`` or ``operating_threshold``
            outside [0, 1], or ``attention_stages`` not a non-empty subset of (1, 2, 3, 4).
    """

    #: ``named_modules()`` name of the last spatial feature layer, the Grad-CAM target.
    cam_layer: str = "layer4"

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 50,
        attention: str | None = "cbam",
        fusion: bool = True,
        dropout_prob: float = 0.0,
        reduction: int = 16,
        attention_kernel_size: int = 7,
        fusion_channels: int | None = None,
        operating_threshold: float = 0.5,
        bias_downsample: bool = True,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
        pretrained_path: str | os.PathLike | None = None,
        attention_stages: tuple[int, ...] | list[int] = (1, 2, 3, 4),
    ) -> None:
        super().__init__()
        attention_stages = tuple(sorted(set(attention_stages)))
        if isinstance(fusion, str):  # a command-line override such as "false" must not read as a truthy string
            fusion = str2bool(fusion, raise_exc=False, default=fusion)
        _validate_args(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            depth=depth,
            attention=attention,
            fusion=fusion,
            dropout_prob=dropout_prob,
            reduction=reduction,
            fusion_channels=fusion_channels,
            operating_threshold=operating_threshold,
            attention_stages=attention_stages,
        )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.depth = depth
        self.attention_type = attention
        self.attention_stages = attention_stages
        self.use_fusion = fusion

        block, layers = DEPTHS[depth]
        conv_type = Conv[Conv.CONV, spatial_dims]
        self._block_kwargs = {
            "spatial_dims": spatial_dims,
            "act": act,
            "norm": norm,
            "attention": attention,
            "reduction": reduction,
            "attention_kernel_size": attention_kernel_size,
        }
        self._bias_downsample = bias_downsample
        self._norm = norm

        self.in_planes = _STAGE_PLANES[0]
        self.conv1 = conv_type(in_channels, self.in_planes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=self.in_planes)
        self.act = get_act_layer(name=act)
        self.maxpool = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, _STAGE_PLANES[0], layers[0], stride=1, stage=1)
        self.layer2 = self._make_layer(block, _STAGE_PLANES[1], layers[1], stride=2, stage=2)
        self.layer3 = self._make_layer(block, _STAGE_PLANES[2], layers[2], stride=2, stage=3)
        self.layer4 = self._make_layer(block, _STAGE_PLANES[3], layers[3], stride=2, stage=4)

        stage_channels = [p * block.expansion for p in _STAGE_PLANES[1:]]
        if self.use_fusion:
            width = fusion_channels if fusion_channels is not None else stage_channels[-1] // 8
            self.fusion: MultiScaleFusion | None = MultiScaleFusion(
                spatial_dims, stage_channels, width, keep_last=True, act=act, norm=norm
            )
            head_in = self.fusion.out_channels
        else:
            self.fusion = None
            head_in = stage_channels[-1]
        self.avgpool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.dropout = nn.Dropout(p=dropout_prob)
        self.fc = nn.Linear(head_in, num_classes)
        self.register_buffer("operating_threshold", torch.tensor(float(operating_threshold), dtype=torch.float32))

        self._init_weights(conv_type)

        self.pretrained_report = None
        if pretrained_path is not None:
            self.pretrained_report = load_pretrained(self, pretrained_path)

    def _make_layer(
        self,
        block: type[AttentionResNetBlock | AttentionResNetBottleneck],
        planes: int,
        blocks: int,
        stride: int,
        stage: int,
    ) -> nn.Sequential:
        """One ResNet stage: ``blocks`` residual blocks, the first with ``stride`` and a type-B shortcut if needed."""
        spatial_dims = self.spatial_dims
        block_kwargs = dict(self._block_kwargs)
        if stage not in self.attention_stages:
            block_kwargs["attention"] = None
        downsample = None
        if stride != 1 or self.in_planes != planes * block.expansion:
            downsample = nn.Sequential(
                Conv[Conv.CONV, spatial_dims](
                    self.in_planes, planes * block.expansion, kernel_size=1, stride=stride, bias=self._bias_downsample
                ),
                get_norm_layer(name=self._norm, spatial_dims=spatial_dims, channels=planes * block.expansion),
            )
        layers = [block(self.in_planes, planes, stride=stride, downsample=downsample, **block_kwargs)]
        self.in_planes = planes * block.expansion
        layers += [block(self.in_planes, planes, **block_kwargs) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, conv_type: type[nn.Module]) -> None:
        """MONAI ``ResNet`` initialisation: Kaiming-normal (fan-out) convolutions, unit/zero norms, zero linear bias."""
        for m in self.modules():
            if isinstance(m, conv_type):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)) and m.weight is not None:
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled (and fused) feature vector that feeds the dropout + linear head.

        Args:
            x: input of shape ``(N, in_channels, *spatial)``.

        Returns:
            features of shape ``(N, fc.in_features)``.
        """
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        if self.fusion is not None:
            return self.fusion([c2, c3, c4])
        return torch.flatten(self.avgpool(c4), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: input of shape ``(N, in_channels, *spatial)``; spatial sizes of at least 32 (the network downsamples by 32).

        Returns:
            logits of shape ``(N, num_classes)`` (no softmax).
        """
        return self.fc(self.dropout(self.features(x)))

    @torch.no_grad()
    def set_operating_threshold(self, value: float) -> None:
        """Store the decision threshold chosen on validation data.

        Args:
            value: threshold on the positive-class probability, in [0, 1].

        Raises:
            ValueError: when ``value`` is outside [0, 1] or not finite.
        """
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"operating threshold must be in [0, 1], got {value!r}.")
        self.operating_threshold.fill_(value)

    def positive_probability(self, logits: torch.Tensor, positive_class: int = 1) -> torch.Tensor:
        """Probability of the positive (pneumonia) class from logits.

        Args:
            logits: output of :meth:`forward`, shape ``(N, num_classes)``.
            positive_class: index of the positive class (ignored when ``num_classes == 1``). Defaults to 1.

        Returns:
            probabilities of shape ``(N,)``.
        """
        if logits.shape[1] == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits.float(), dim=1)[:, positive_class]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, positive_class: int = 1) -> torch.Tensor:
        """Binary decisions at the stored :attr:`operating_threshold` (``probability >= threshold``).

        Args:
            x: input of shape ``(N, in_channels, *spatial)``.
            positive_class: index of the positive class. Defaults to 1.

        Returns:
            a bool tensor of shape ``(N,)``, True for the positive class.
        """
        probability = self.positive_probability(self(x), positive_class).float().cpu().numpy()
        return torch.from_numpy(is_positive(probability, float(self.operating_threshold))).to(x.device)
