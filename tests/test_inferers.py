"""AutocastInferer: bf16 + channels-last forward passes."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from monai_pneumonia.inferers import AutocastInferer
from monai_pneumonia.networks import AttentionResNet


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18).eval()


def test_bf16_channels_last_agrees_with_fp32(network):
    inputs = MetaTensor(torch.randn(4, 1, 64, 64))
    with torch.no_grad():
        reference = torch.softmax(AutocastInferer(dtype=None, channels_last=False)(inputs, network), 1)
        fast_net = network.to(memory_format=torch.channels_last)
        fast = AutocastInferer(dtype="bfloat16", channels_last=True)(inputs, fast_net)
    assert fast.dtype == torch.float32
    assert torch.softmax(fast, 1).sub(reference).abs().max() < 0.02


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype"):
        AutocastInferer(dtype="int8")
