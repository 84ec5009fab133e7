"""load_pretrained with synthetic torchvision-layout state dicts (no torchvision needed)."""

from __future__ import annotations

import math

import pytest
import torch

from monai_pneumonia.networks import (
    AttentionResNet,
    PretrainedReport,
    adapt_stem_weight,
    load_pretrained,
    map_torchvision_key,
    torchvision_resnet_layout,
)

# torchvision's documented parameter counts (torchvision.models docs, "num_params") and state-dict sizes
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160}


def synthetic_torchvision_state(depth: int = 18, num_classes: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the layout of torchvision's resnet{depth}().state_dict() (positive running variances)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_resnet_layout(depth, num_classes).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_layout_matches_documented_torchvision_counts(depth):
    layout = torchvision_resnet_layout(depth)
    learnable = sum(
        math.prod(s)
        for k, s in layout.items()
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert learnable == TORCHVISION_PARAMS[depth]
    if depth == 50:
        assert len(layout) == 320  # len(torchvision.models.resnet50().state_dict())
        assert layout["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
        assert layout["layer4.2.conv3.weight"] == (2048, 512, 1, 1)
        assert layout["fc.weight"] == (1000, 2048)
    if depth == 18:
        assert "layer1.0.downsample.0.weight" not in layout and layout["layer2.0.downsample.0.weight"] == (
            128,
            64,
            1,
            1,
        )


def test_key_map():
    assert map_torchvision_key("conv1.weight") == "conv1.weight"
    assert map_torchvision_key("bn1.running_var") == "bn1.running_var"
    assert map_torchvision_key("layer3.5.conv3.weight") == "layer3.5.conv3.weight"
    assert (
        map_torchvision_key("layer2.0.downsample.1.num_batches_tracked") == "layer2.0.downsample.1.num_batches_tracked"
    )
    assert map_torchvision_key("fc.bias") == "fc.bias"
    assert map_torchvision_key("classifier.weight") is None
    assert map_torchvision_key("layer5.0.conv1.weight") is None
    # every torchvision key maps onto a key of the plain network of the same depth
    with torch.device("meta"):
        net_keys = set(
            AttentionResNet(depth=50, in_channels=3, num_classes=1000, attention=None, fusion=False).state_dict()
        )
    mapped = {map_torchvision_key(k) for k in torchvision_resnet_layout(50)}
    assert mapped <= net_keys
    assert net_keys - mapped == {"operating_threshold"} | {f"layer{i}.0.downsample.0.bias" for i in range(1, 5)}


def test_load_from_file_full_model(tmp_path):
    state = synthetic_torchvision_state(18)
    state["junk.weight"] = torch.zeros(3)
    path = tmp_path / "resnet18-tv.pth"
    torch.save(state, path)
    net = AttentionResNet(depth=18, in_channels=1, num_classes=2, attention="cbam", fusion=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = load_pretrained(net, path)
    after = net.state_dict()

    assert isinstance(report, PretrainedReport) and report.path == str(path)
    # keys mapped, values copied
    torch.testing.assert_close(after["layer3.1.conv2.weight"], state["layer3.1.conv2.weight"])
    torch.testing.assert_close(after["layer2.0.downsample.1.running_var"], state["layer2.0.downsample.1.running_var"])
    assert "layer4.1.bn2.running_mean" in report.loaded
    # stem adapted by summing over RGB
    torch.testing.assert_close(after["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))
    assert "conv1.weight" in report.adapted and "sum" in report.adapted["conv1.weight"]
    # head skipped (2 classes, fused width), left initialised
    assert sorted(report.skipped) == ["fc.bias", "fc.weight"]
    torch.testing.assert_close(after["fc.weight"], before["fc.weight"])
    # unexpected: the junk key and the skipped head
    assert {"junk.weight", "fc.weight", "fc.bias"} <= set(report.unexpected)
    # missing: attention, fusion, head, threshold; they keep their initialisation
    assert any(".attention.channel.mlp" in k for k in report.missing)
    assert any(k.startswith("fusion.projections") for k in report.missing)
    assert {"fc.weight", "operating_threshold"} <= set(report.missing)
    for key in report.missing:
        if key not in report.zeroed:
            torch.testing.assert_close(after[key], before[key])
    # shortcut biases (absent in torchvision) set to zero
    assert report.zeroed == [f"layer{i}.0.downsample.0.bias" for i in (2, 3, 4)]
    assert all(after[k].abs().sum() == 0 for k in report.zeroed)
    assert set(report.loaded).isdisjoint(report.missing)
    assert set(report.loaded) | set(report.missing) == set(after)
    assert "loaded" in report.summary()


def test_head_loaded_when_shapes_match():
    state = synthetic_torchvision_state(18, num_classes=1000)
    net = AttentionResNet(depth=18, in_channels=3, num_classes=1000, attention="se", fusion=False)
    report = load_pretrained(net, state)
    assert {"fc.weight", "fc.bias"} <= set(report.loaded) and not report.skipped and not report.adapted
    torch.testing.assert_close(net.fc.weight, state["fc.weight"])


def test_grayscale_net_reproduces_rgb_net_on_replicated_input():
    """Summing the stem over RGB makes the 1-channel net equal the 3-channel net on (g, g, g) input."""
    state = synthetic_torchvision_state(18, num_classes=1000)
    rgb = AttentionResNet(depth=18, in_channels=3, num_classes=1000, attention=None, fusion=False).eval()
    gray = AttentionResNet(depth=18, in_channels=1, num_classes=1000, attention=None, fusion=False).eval()
    load_pretrained(rgb, state)
    load_pretrained(gray, state)
    g = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(g), rgb(g.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)


def test_constructor_argument(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(synthetic_torchvision_state(18), path)
    net = AttentionResNet(depth=18, pretrained_path=path)
    assert isinstance(net.pretrained_report, PretrainedReport) and "conv1.weight" in net.pretrained_report.loaded


def test_errors(tmp_path):
    state = synthetic_torchvision_state(18)
    with pytest.raises(ValueError, match="2D"):
        load_pretrained(AttentionResNet(spatial_dims=3, depth=18), state)
    state3d = dict(state, **{"conv1.weight": torch.zeros(64, 3, 7, 7, 7)})
    with pytest.raises(ValueError, match="2D"):
        load_pretrained(AttentionResNet(depth=18), state3d)
    with pytest.raises(ValueError, match="do not fit"):  # a ResNet-50 file into a ResNet-18 network
        load_pretrained(
            AttentionResNet(depth=18), {k: torch.zeros(s) for k, s in torchvision_resnet_layout(50).items()}
        )
    with pytest.raises(ValueError, match="conv1.weight"):
        load_pretrained(AttentionResNet(depth=18), {"foo": torch.zeros(1)})
    with pytest.raises(FileNotFoundError):
        load_pretrained(AttentionResNet(depth=18), tmp_path / "missing.pth")


def test_stem_modes():
    w = torch.randn(64, 3, 7, 7)
    summed, rule = adapt_stem_weight(w, 1)
    assert rule == "sum" and torch.allclose(summed, w.sum(1, keepdim=True))
    mean, _ = adapt_stem_weight(w, 2, "mean")
    assert torch.allclose(mean, w.mean(1, keepdim=True).repeat(1, 2, 1, 1))
    rep, rule = adapt_stem_weight(w, 4)
    assert rule == "repeat" and rep.shape == (64, 4, 7, 7)
    torch.testing.assert_close(rep[:, 3], w[:, 0] * 0.75)
    same, rule = adapt_stem_weight(w, 3)
    assert rule == "copy" and torch.equal(same, w)
    with pytest.raises(ValueError):
        adapt_stem_weight(w, 1, "max")
