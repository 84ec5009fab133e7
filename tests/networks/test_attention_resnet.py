"""AttentionResNet: configurations, parity with MONAI's ResNet, the threshold buffer, Grad-CAM, exports."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from monai.networks.nets import resnet18, resnet50
from monai.visualize import GradCAM
from torch.utils.flop_counter import FlopCounterMode

from monai_pneumonia.networks import AttentionResNet

pytestmark = pytest.mark.filterwarnings("ignore:`torch\\.jit:DeprecationWarning")

SWITCHES = [(a, f) for a in ("cbam", "se", None) for f in (True, False)]


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def tiny(**kwargs) -> AttentionResNet:
    torch.manual_seed(0)
    return AttentionResNet(depth=18, **kwargs).eval()


def monai_resnet50():
    with torch.device("meta"):
        return resnet50(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)


# --- architecture ----------------------------------------------------------------------------------------------


def test_plain_resnet50_is_monai_resnet50():
    with torch.device("meta"):
        plain = AttentionResNet(attention=None, fusion=False)
    ref = monai_resnet50()
    assert n_params(plain) == n_params(ref)
    ours = {k: v.shape for k, v in plain.state_dict().items() if k != "operating_threshold"}
    assert ours == {k: v.shape for k, v in ref.state_dict().items()}


def test_default_model_adds_between_0_and_35_percent():
    with torch.device("meta"):
        full = AttentionResNet()
        se = AttentionResNet(attention="se", fusion=False)
    base = n_params(monai_resnet50())
    assert 1.0 < n_params(full) / base < 1.35
    assert 1.05 < n_params(se) / base < 1.15  # SE-ResNet-50 adds about 10%


def test_plain_depth18_computes_what_monai_resnet18_computes():
    net = tiny(attention=None, fusion=False)
    torch.manual_seed(1)
    ref = resnet18(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2).eval()
    sd = ref.state_dict()
    sd["operating_threshold"] = net.operating_threshold
    net.load_state_dict(sd)
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(net(x), ref(x))


@pytest.mark.parametrize("attention, fusion", SWITCHES)
def test_every_switch_2d(attention, fusion):
    net = tiny(attention=attention, fusion=fusion, dropout_prob=0.3)
    out = net(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert (net.fusion is not None) == fusion
    has_attention = any(type(m).__name__ in ("CBAMBlock", "ChannelSELayer") for m in net.modules())
    assert has_attention == (attention is not None)
    assert net.dropout.p == 0.3


@pytest.mark.parametrize("attention, fusion", [("cbam", True), ("se", False), (None, True)])
def test_3d(attention, fusion):
    net = tiny(spatial_dims=3, in_channels=2, num_classes=3, attention=attention, fusion=fusion)
    out = net(torch.randn(1, 2, 32, 32, 32))
    assert out.shape == (1, 3) and torch.isfinite(out).all()
    assert net.conv1.weight.shape == (64, 2, 7, 7, 7)


def test_1d():
    assert tiny(spatial_dims=1)(torch.randn(2, 1, 64)).shape == (2, 2)


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
@pytest.mark.parametrize("attention, fusion", [("cbam", True), (None, False)])
def test_depths_shapes(depth, attention, fusion):
    with torch.device("meta"):
        net = AttentionResNet(depth=depth, attention=attention, fusion=fusion)
        out = net(torch.empty(2, 1, 224, 224))
    assert out.shape == (2, 2)
    assert len(net.layer3) == {18: 2, 34: 6, 50: 6, 101: 23}[depth]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"depth": 20}, "depth"),
        ({"attention": "eca"}, "attention"),
        ({"attention": "CBAM"}, "attention"),
        ({"attention": "None"}, "attention"),
        ({"fusion": "maybe"}, "fusion"),
        ({"fusion": 0}, "fusion"),
        ({"spatial_dims": 4}, "spatial_dims"),
        ({"in_channels": 0}, "in_channels"),
        ({"num_classes": 0}, "num_classes"),
        ({"dropout_prob": 1.5}, "dropout_prob"),
        ({"operating_threshold": 1.2}, "operating_threshold"),
        ({"fusion_channels": 0}, "fusion_channels"),
        ({"reduction": 0}, "reduction"),
        ({"attention_stages": ()}, "attention_stages"),
        ({"attention_stages": (0, 3)}, "attention_stages"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionResNet(**kwargs)


@pytest.mark.parametrize("text, expected", [("false", False), ("False", False), ("true", True)])
def test_fusion_from_command_line_text(text, expected):
    """``--network_def#fusion false`` reaches the constructor as a string; it must switch fusion off."""
    net = AttentionResNet(depth=18, attention=None, fusion=text)
    assert net.use_fusion is expected
    assert (net.fusion is not None) is expected


def test_logits_not_probabilities():
    net = tiny()
    with torch.no_grad():
        net.fc.bias.copy_(torch.tensor([3.0, 5.0]))
        out = net(torch.randn(2, 1, 64, 64))
    assert not torch.allclose(out.sum(1), torch.ones(2))


# --- operating threshold ---------------------------------------------------------------------------------------


def test_threshold_buffer_round_trip(tmp_path):
    net = tiny()
    assert net.operating_threshold.dtype == torch.float32 and net.operating_threshold.ndim == 0
    assert float(net.operating_threshold) == 0.5
    assert "operating_threshold" in dict(net.named_buffers())
    net.set_operating_threshold(0.35)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["operating_threshold"].dtype == torch.float32
    other = tiny()
    other.load_state_dict(state)
    assert float(other.operating_threshold) == pytest.approx(0.35)
    with pytest.raises(ValueError):
        net.set_operating_threshold(1.5)


def test_predict_uses_threshold():
    net = tiny()
    x = torch.randn(4, 1, 64, 64)
    with torch.no_grad():
        p = net.positive_probability(net(x))
    net.set_operating_threshold(0.0)
    assert net.predict(x).all()
    net.set_operating_threshold(float(p.median()))
    assert torch.equal(net.predict(x), p >= net.operating_threshold)


# --- Grad-CAM --------------------------------------------------------------------------------------------------


def test_gradcam_tiny():
    net = tiny()
    assert net.cam_layer in dict(net.named_modules())
    cam = GradCAM(nn_module=net, target_layers=net.cam_layer)
    out = cam(torch.randn(1, 1, 64, 64))
    assert out.shape == (1, 1, 64, 64) and torch.isfinite(out).all()


@pytest.mark.slow
def test_default_model_224_output_and_gradcam():
    torch.manual_seed(0)
    net = AttentionResNet().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 224, 224)).shape == (2, 2)
    out = GradCAM(nn_module=net, target_layers=net.cam_layer)(torch.randn(1, 1, 224, 224))
    assert out.shape == (1, 1, 224, 224) and torch.isfinite(out).all()


# --- exports ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention, fusion", [("cbam", True), ("se", False)])
def test_torchscript_trace_matches_eager(tmp_path, attention, fusion):
    net = tiny(attention=attention, fusion=fusion)
    net.set_operating_threshold(0.42)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        traced.save(str(tmp_path / "model.ts"))
        loaded = torch.jit.load(str(tmp_path / "model.ts"))
        x2 = torch.randn(3, 1, 96, 64)  # another batch and size: nothing was frozen by tracing
        torch.testing.assert_close(loaded(x2), net(x2), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(loaded(x), net(x), atol=1e-4, rtol=1e-4)
    assert float(loaded.operating_threshold) == pytest.approx(0.42)
    assert "operating_threshold" in dict(loaded.named_buffers())


@pytest.mark.slow
def test_torchscript_trace_default_model_224():
    torch.manual_seed(0)
    net = AttentionResNet().eval()
    x = torch.randn(1, 1, 224, 224)
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), net(x), atol=1e-4, rtol=1e-4)


def test_onnx_export_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net = tiny()
    x = torch.randn(2, 1, 64, 64)
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["pred"], verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, net(x).numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_channels_last_and_bf16_autocast(spatial_dims):
    net = tiny(spatial_dims=spatial_dims)
    size = 64 if spatial_dims == 2 else 32
    x = torch.randn(2, 1, *([size] * spatial_dims))
    fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
    with torch.no_grad():
        ref = net(x)
        net_cl = net.to(memory_format=fmt)
        out_cl = net_cl(x.contiguous(memory_format=fmt))
        torch.testing.assert_close(out_cl, ref, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = net_cl(x.contiguous(memory_format=fmt))
    assert out_bf16.shape == (2, 2) and torch.isfinite(out_bf16).all()
    assert (out_bf16.float() - ref).abs().max() < 0.1 * ref.abs().max() + 0.1
    assert net.operating_threshold.dtype == torch.float32


def test_bf16_autocast_training_step():
    net = tiny().train()
    x = torch.randn(2, 1, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(net.conv1.weight.grad).all()


def test_torch_compile_aot_eager():
    net = tiny()
    x = torch.randn(2, 1, 64, 64)
    compiled = torch.compile(net, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_torch_compile_inductor():
    """Inductor needs a C++ compiler; about 50 s on 2 shared CPU cores."""
    net = tiny()
    x = torch.randn(2, 1, 64, 64)
    compiled = torch.compile(net)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-4, rtol=1e-4)


# --- the cost table in the docstring ---------------------------------------------------------------------------


def test_docstring_cost_table_is_measured():
    """Meta-device forward: shapes and FLOP counts without computing anything (about 2 s)."""
    rows = re.findall(
        r"^\s+(plain \(None, False\)|\+ [A-Za-z +]+?)\s{2,}([\d,]+)\s+\S+\s+([\d.]+)\s+([\d.]+)",
        AttentionResNet.__doc__,
        flags=re.M,
    )
    configs = {
        "plain (None, False)": {"attention": None, "fusion": False},
        "+ SE": {"attention": "se", "fusion": False},
        "+ CBAM": {"attention": "cbam", "fusion": False},
        "+ fusion": {"attention": None, "fusion": True},
        "+ CBAM + fusion": {},
    }
    assert [r[0] for r in rows] == list(configs)
    for name, params, gflops, gmacs in rows:
        with torch.device("meta"):
            net = AttentionResNet(**configs[name]).eval()
            with FlopCounterMode(display=False) as counter:
                net(torch.empty(1, 1, 224, 224))
        assert n_params(net) == int(params.replace(",", ""))
        assert math.isclose(counter.get_total_flops() / 1e9, float(gflops), abs_tol=1e-3)
        assert math.isclose(counter.get_total_flops() / 2e9, float(gmacs), abs_tol=1e-3)


def test_attention_only_in_the_chosen_stages():
    net = tiny(attention="cbam", fusion=False, attention_stages=[4, 3])
    assert net.attention_stages == (3, 4)
    for stage in (1, 2, 3, 4):
        blocks = getattr(net, f"layer{stage}")
        kinds = {type(block.attention).__name__ for block in blocks}
        assert kinds == ({"CBAMBlock"} if stage in (3, 4) else {"Identity"}), (stage, kinds)
    assert net(torch.randn(2, 1, 64, 64)).shape == (2, 2)
