"""Attention and fusion blocks: shapes in 1D/2D/3D, the formulas, and identity with MONAI's blocks without attention."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck

from monai_pneumonia.networks import (
    AttentionResNetBlock,
    AttentionResNetBottleneck,
    CBAMBlock,
    ChannelAttention,
    MultiScaleFusion,
    SpatialAttention,
    make_attention,
)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("attention", ["cbam", "se", None])
def test_make_attention_shapes(spatial_dims, attention):
    x = torch.randn(2, 32, *([6] * spatial_dims))
    module = make_attention(attention, spatial_dims, 32)
    assert module(x).shape == x.shape
    expected = {"cbam": CBAMBlock, "se": ChannelSELayer, None: nn.Identity}[attention]
    assert isinstance(module, expected)


def test_make_attention_rejects_unknown():
    with pytest.raises(ValueError, match="attention must be one of"):
        make_attention("eca", 2, 32)


def test_se_has_reduction_16():
    se = make_attention("se", 2, 64)
    linears = [m for m in se.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 4), (4, 64)]


def test_channel_attention_matches_formula():
    torch.manual_seed(0)
    ca = ChannelAttention(32, reduction=16)
    x = torch.randn(2, 32, 5, 5)
    w = torch.sigmoid(ca.mlp(x.mean((2, 3))) + ca.mlp(x.amax((2, 3))))
    torch.testing.assert_close(ca(x), x * w[:, :, None, None])
    assert ca.mlp[0].out_features == 2


def test_spatial_attention_matches_formula():
    torch.manual_seed(0)
    sa = SpatialAttention(2, kernel_size=7).eval()
    assert sa.conv.kernel_size == (7, 7) and sa.conv.in_channels == 2 and sa.conv.bias is None
    x = torch.randn(2, 8, 9, 9)
    maps = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    torch.testing.assert_close(sa(x), x * torch.sigmoid(sa.norm(sa.conv(maps))))
    with pytest.raises(ValueError, match="odd"):
        SpatialAttention(2, kernel_size=6)


def test_cbam_is_channel_then_spatial():
    torch.manual_seed(0)
    cbam = CBAMBlock(3, 16).eval()
    x = torch.randn(1, 16, 4, 4, 4)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    assert cbam.spatial.conv.kernel_size == (7, 7, 7)


@pytest.mark.parametrize(
    "ours, theirs, planes, out_planes",
    [(AttentionResNetBlock, ResNetBlock, 16, 16), (AttentionResNetBottleneck, ResNetBottleneck, 8, 32)],
)
def test_block_without_attention_equals_monai_block(ours, theirs, planes, out_planes):
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(16, out_planes, 1, stride=2), nn.BatchNorm2d(out_planes))
    a = ours(16, planes, spatial_dims=2, stride=2, downsample=down, attention=None).eval()
    b = theirs(16, planes, spatial_dims=2, stride=2, downsample=down).eval()
    b.load_state_dict(a.state_dict())
    assert a.state_dict().keys() == b.state_dict().keys()
    x = torch.randn(2, 16, 8, 8)
    torch.testing.assert_close(a(x), b(x))


@pytest.mark.parametrize("attention", ["cbam", "se"])
def test_attention_acts_on_residual_branch_before_addition(attention):
    torch.manual_seed(0)
    block = AttentionResNetBottleneck(32, 8, spatial_dims=2, attention=attention).eval()
    x = torch.randn(1, 32, 6, 6)
    branch = block.act(block.bn1(block.conv1(x)))
    branch = block.act(block.bn2(block.conv2(branch)))
    branch = block.bn3(block.conv3(branch))
    torch.testing.assert_close(block(x), torch.relu(block.attention(branch) + x))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("keep_last", [True, False])
def test_multiscale_fusion(spatial_dims, keep_last):
    fusion = MultiScaleFusion(spatial_dims, (8, 16, 32), projected_channels=4, keep_last=keep_last)
    feats = [torch.randn(2, c, *([s] * spatial_dims)) for c, s in ((8, 8), (16, 4), (32, 2))]
    out = fusion(feats)
    expected = 4 + 4 + 32 if keep_last else 12
    assert fusion.out_channels == expected and out.shape == (2, expected)
    if keep_last:  # the deepest stage enters at full width: the plain descriptor is part of the fused one
        torch.testing.assert_close(out[:, -32:], feats[-1].mean(tuple(range(2, 2 + spatial_dims))))
    with pytest.raises(ValueError):
        MultiScaleFusion(spatial_dims, (8,), projected_channels=4)
