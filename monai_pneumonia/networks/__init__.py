"""Networks of monai-pneumonia: the attention + multi-scale-fusion ResNet and its transfer initialisation."""

from .attention_resnet import DEPTHS, AttentionResNet
from .atypicality import AtypicalityReference, FeatureTap, load_reference, pooled_features
from .blocks import (
    ATTENTION_TYPES,
    AttentionResNetBlock,
    AttentionResNetBottleneck,
    CBAMBlock,
    ChannelAttention,
    MultiScaleFusion,
    SpatialAttention,
    make_attention,
)
from .checkpoint import (
    THRESHOLD_KEY,
    half_precision_checkpoint,
    load_checkpoint,
    load_weights,
    model_identity,
    operating_threshold,
    store_threshold,
)
from .pretrained import (
    PretrainedReport,
    adapt_stem_weight,
    load_pretrained,
    map_torchvision_key,
    torchvision_resnet_layout,
)
from .runtime import BACKENDS, OnnxRuntimeNetwork, export_onnx, runtime_network

__all__ = [
    "ATTENTION_TYPES",
    "BACKENDS",
    "DEPTHS",
    "THRESHOLD_KEY",
    "AttentionResNet",
    "AtypicalityReference",
    "FeatureTap",
    "AttentionResNetBlock",
    "AttentionResNetBottleneck",
    "CBAMBlock",
    "ChannelAttention",
    "MultiScaleFusion",
    "OnnxRuntimeNetwork",
    "PretrainedReport",
    "SpatialAttention",
    "adapt_stem_weight",
    "export_onnx",
    "half_precision_checkpoint",
    "load_checkpoint",
    "load_pretrained",
    "load_reference",
    "pooled_features",
    "make_attention",
    "load_weights",
    "model_identity",
    "operating_threshold",
    "store_threshold",
    "map_torchvision_key",
    "runtime_network",
    "torchvision_resnet_layout",
]
