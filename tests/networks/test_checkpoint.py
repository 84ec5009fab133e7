"""Checkpoint edits: storing a threshold and the half-precision release copy load back into the float32 network."""

import pytest
import torch

from monai_pneumonia.errors import CheckpointError
from monai_pneumonia.networks import AttentionResNet, half_precision_checkpoint, load_checkpoint, store_threshold


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    net = AttentionResNet(depth=18, attention="cbam", fusion=True, attention_stages=(3, 4), operating_threshold=0.3)
    net.train()
    net(torch.randn(4, 1, 64, 64))  # non-trivial batch-norm statistics
    path = tmp_path / "model.pt"
    torch.save(net.eval().state_dict(), path)
    return path


def _network(state):
    net = AttentionResNet(depth=18, attention="cbam", fusion=True, attention_stages=(3, 4)).eval()
    net.load_state_dict(state)
    return net


def test_store_threshold_round_trip(checkpoint, tmp_path):
    written = store_threshold(checkpoint, 0.7312, output=tmp_path / "out.pt")
    state = load_checkpoint(written)
    assert state["operating_threshold"].dtype == torch.float32
    assert float(_network(state).operating_threshold) == pytest.approx(0.7312)
    assert float(load_checkpoint(checkpoint)["operating_threshold"]) == pytest.approx(0.3), "source changed"
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        store_threshold(checkpoint, 1.0)


def test_not_a_bundle_checkpoint_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: no 'operating_threshold'"):
        store_threshold(tmp_path / "other.pt", 0.5)


def test_half_precision_halves_the_file_and_keeps_the_outputs(checkpoint, tmp_path):
    half = half_precision_checkpoint(checkpoint, tmp_path / "half.pt")
    state = torch.load(half, weights_only=True)
    floats = {k: v.dtype for k, v in state.items() if v.is_floating_point()}
    assert floats.pop("operating_threshold") == torch.float32
    assert set(floats.values()) == {torch.float16}
    assert half.stat().st_size < 0.55 * checkpoint.stat().st_size
    x = torch.randn(3, 1, 64, 64)
    with torch.no_grad():
        full = torch.softmax(_network(load_checkpoint(checkpoint))(x), 1)[:, 1]
        reduced_net = _network(state)
        reduced = torch.softmax(reduced_net(x), 1)[:, 1]
    assert next(reduced_net.parameters()).dtype == torch.float32
    assert float(reduced_net.operating_threshold) == pytest.approx(0.3)
    assert torch.allclose(full, reduced, atol=1e-3)


@pytest.mark.parametrize("threshold", [float("nan"), 1.5, -0.5, float("inf")])
def test_a_threshold_outside_the_unit_interval_is_refused_on_load(checkpoint, tmp_path, threshold):
    state = torch.load(checkpoint, weights_only=True)
    state["operating_threshold"] = torch.tensor(threshold)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt: the stored operating_threshold .* not a number in \[0, 1\]"):
        load_checkpoint(tmp_path / "bad.pt")


def test_non_finite_weights_and_truncated_files_are_refused_on_load(checkpoint, tmp_path):
    state = torch.load(checkpoint, weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point() and k != "operating_threshold")
    state[key][...] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=f"nan.pt: the weights hold NaN or infinite values \\(first in {key}\\)"):
        load_checkpoint(tmp_path / "nan.pt")
    data = checkpoint.read_bytes()
    for size in (0, 100, len(data) // 2):
        (tmp_path / "cut.pt").write_bytes(data[:size])
        with pytest.raises(CheckpointError, match="cut.pt: unreadable or truncated checkpoint"):
            load_checkpoint(tmp_path / "cut.pt")
