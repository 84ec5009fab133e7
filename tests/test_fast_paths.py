"""The bundle's fast path (bf16 autocast + channels-last) gives fp32's answers on real radiographs.

``tests/test_inferers.py`` checks the inferer on random tensors; here the inputs are the shipped sample films
(JPEG and DICOM, both classes) through the bundle's own preprocessing, and the network, inferer and
preprocessing all come from ``bundle/configs/inference.json``.

A freshly initialised network barely tells films apart: with its batch-norm layers at their initial statistics
(mean 0, variance 1) every film gets almost the same probability, and any difference looks small. The random
network's batch-norm statistics are therefore first estimated on the films (as training would), which gives
activations of realistic size and probabilities that differ between films; the classifier keeps its random
initialisation. When a trained checkpoint is present (``bundle/models/model.pt``) the configured network with
those weights is checked too.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import list_data_collate

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
CHECKPOINT = REPO / "bundle" / "models" / "model.pt"
#: Largest allowed difference in the pneumonia probability between the fast path and fp32 eager.
TOLERANCE = 0.01
PNEUMONIA = 1


def _config(depth: int | None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(REPO / "bundle" / "configs" / "inference.json")
    parser["bundle_root"] = str(REPO / "bundle")
    parser["device"] = torch.device("cpu")
    if depth is not None:
        parser["network_def#depth"] = depth
    return parser


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """Every sample film after the bundle's preprocessing, as one batch."""
    files = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png", ".dcm"))
    assert {p.parent.name for p in files} == {"NORMAL", "PNEUMONIA"} and len(files) >= 6
    preprocessing = _config(None).get_parsed_content("preprocessing")
    return list_data_collate([preprocessing({"image": str(path)}) for path in files])["image"].as_tensor()


def _calibrate_batch_norm(network: torch.nn.Module, images: torch.Tensor) -> None:
    """Replace the batch-norm running statistics by those of ``images`` (cumulative average over one pass)."""
    for module in network.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    network.train()
    with torch.no_grad():
        network(images)
    network.eval()


def _fp32_and_fast(config: ConfigParser, network: torch.nn.Module, images: torch.Tensor):
    """Pneumonia probabilities of fp32 eager and of the configured inferer on a channels-last copy."""
    inferer = config.get_parsed_content("inferer")
    assert inferer.dtype == torch.bfloat16 and inferer.channels_last  # what inference.json configures
    with torch.no_grad():
        reference = torch.softmax(network(images), dim=1)[:, PNEUMONIA]
        fast_network = copy.deepcopy(network).to(memory_format=torch.channels_last)  # as the config's "network"
        fast = torch.softmax(inferer(images, fast_network), dim=1)[:, PNEUMONIA]
    return reference, fast


def test_configured_fast_path_matches_fp32_on_real_images(batch):
    config = _config(depth=18)
    torch.manual_seed(0)
    network = config.get_parsed_content("network_def")
    _calibrate_batch_norm(network, batch)
    reference, fast = _fp32_and_fast(config, network, batch)
    assert batch.shape[1:] == (1, 224, 224)
    assert float(reference.max() - reference.min()) > 0.05, "the films should get different probabilities"
    difference = (fast - reference).abs()
    assert float(difference.max()) < TOLERANCE, f"bf16 differs from fp32 by up to {float(difference.max()):.4f}"
    assert float(difference.max()) > 0.0  # the fast path really ran in reduced precision


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="no trained checkpoint at bundle/models/model.pt")
def test_trained_model_fast_path_matches_fp32_on_real_images(batch):
    config = _config(depth=None)
    network = config.get_parsed_content("network_def")
    network.load_state_dict(torch.load(CHECKPOINT, map_location="cpu", weights_only=True))
    reference, fast = _fp32_and_fast(config, network.eval(), batch)
    difference = (fast - reference).abs()
    assert float(difference.max()) < TOLERANCE, f"bf16 differs from fp32 by up to {float(difference.max()):.4f}"


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="no trained checkpoint at bundle/models/model.pt")
def test_onnxruntime_backend_gives_the_fp32_decisions_of_the_shipped_model(batch, tmp_path):
    """The bundle's default backend on this CPU: decisions equal to fp32 eager, probabilities within 0.01 (far less)."""
    pytest.importorskip("onnxruntime")
    from monai_pneumonia.networks import OnnxRuntimeNetwork, runtime_network

    config = _config(depth=None)
    network = config.get_parsed_content("network_def")
    network.load_state_dict(torch.load(CHECKPOINT, map_location="cpu", weights_only=True))
    network.eval()
    fast = runtime_network(network, config.get_parsed_content("backend"), CHECKPOINT, cache_dir=tmp_path)
    assert isinstance(fast, OnnxRuntimeNetwork)  # "auto" on a CPU with onnxruntime installed
    threshold = float(network.operating_threshold)
    with torch.no_grad():
        reference = torch.softmax(network(batch), dim=1)[:, PNEUMONIA]
    candidate = torch.softmax(config.get_parsed_content("inferer")(batch, fast), dim=1)[:, PNEUMONIA]
    assert torch.equal(candidate >= threshold, reference >= threshold)
    difference = float((candidate - reference).abs().max())
    assert difference < 1e-4, f"ONNX Runtime differs from fp32 eager by up to {difference:.2e}"
