"""ONNX Runtime forward passes: the same logits as the eager network, a cache keyed by the checkpoint, the knob."""

from __future__ import annotations

import sys

import pytest
import torch

from monai_pneumonia.networks import AttentionResNet, OnnxRuntimeNetwork, runtime_network
from monai_pneumonia.networks.runtime import default_cache_dir

pytest.importorskip("onnxruntime")


@pytest.fixture
def network() -> AttentionResNet:
    torch.manual_seed(0)
    net = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18, attention="cbam", fusion=True,
                          attention_stages=(3, 4))
    net.set_operating_threshold(0.3)
    return net.eval()


def test_onnxruntime_gives_the_eager_logits_at_any_batch_and_size(network, tmp_path):
    fast = runtime_network(network, "onnxruntime", cache_dir=tmp_path, image_size=32)
    assert isinstance(fast, OnnxRuntimeNetwork)
    for shape in [(1, 1, 32, 32), (5, 1, 32, 32), (3, 1, 48, 40)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = network(x)
        got = fast(x)
        assert got.shape == expected.shape and got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert float(fast.operating_threshold) == pytest.approx(0.3)


def test_channels_last_and_autocast_inputs_are_accepted(network, tmp_path):
    fast = runtime_network(network, "onnxruntime", cache_dir=tmp_path, image_size=32)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = network(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fast(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_export_is_cached_by_checkpoint(network, tmp_path):
    ckpt = tmp_path / "model.pt"
    torch.save(network.state_dict(), ckpt)
    cache = tmp_path / "cache"
    first = runtime_network(network, "onnxruntime", ckpt_path=ckpt, cache_dir=cache, image_size=32)
    exported = sorted(cache.glob("*.onnx"))
    assert [first.path] == exported
    stamp = first.path.stat().st_mtime_ns
    second = runtime_network(network, "onnxruntime", ckpt_path=ckpt, cache_dir=cache, image_size=32)
    assert second.path == first.path and second.path.stat().st_mtime_ns == stamp  # reused, not exported again
    with torch.no_grad():
        network.fc.bias += 1.0
    torch.save(network.state_dict(), ckpt)  # another checkpoint: another export, never the stale one
    third = runtime_network(network, "onnxruntime", ckpt_path=ckpt, cache_dir=cache, image_size=32)
    assert third.path != first.path and len(list(cache.glob("*.onnx"))) == 2
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(third(x), network(x), rtol=1e-4, atol=1e-4)


def test_an_unwritable_cache_falls_back_to_a_temporary_export(network, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    fast = runtime_network(network, "onnxruntime", cache_dir=blocker / "cache", image_size=32)
    assert fast.path.is_file() and blocker not in fast.path.parents
    assert "cannot cache the ONNX export" in caplog.text


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MONAI_PNEUMONIA_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "onnx"
    monkeypatch.delenv("MONAI_PNEUMONIA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "monai-pneumonia" / "onnx"


def test_backend_choice(network, tmp_path, monkeypatch):
    assert runtime_network(network, "eager") is network
    assert runtime_network(network, "auto", device="cuda:0") is network  # ONNX Runtime serves the CPU only
    with pytest.raises(ValueError, match="CPU only"):
        runtime_network(network, "onnxruntime", device="cuda:0")
    with pytest.raises(ValueError, match="expected one of auto, eager, onnxruntime"):
        runtime_network(network, "tensorrt")
    assert isinstance(runtime_network(network, "auto", cache_dir=tmp_path, image_size=32), OnnxRuntimeNetwork)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed
    assert runtime_network(network, "auto", cache_dir=tmp_path, image_size=32) is network
    with pytest.raises(ImportError):
        runtime_network(network, "onnxruntime", cache_dir=tmp_path, image_size=32)
