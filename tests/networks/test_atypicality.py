"""The intended-use gate's atypicality score: features, reference, sidecar binding and the two tiers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.transforms import Activationsd
from PIL import Image
from scipy.spatial.distance import cdist
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from monai_pneumonia.inference import BundleClassifier, Classification, Refusal
from monai_pneumonia.inferers import AutocastInferer
from monai_pneumonia.networks import AttentionResNet
from monai_pneumonia.networks.atypicality import (
    ATYPICAL_FLAG,
    AtypicalityReference,
    FeatureTap,
    load_reference,
    pooled_features,
    sidecar_path,
)
from monai_pneumonia.networks.atypicality_fit import fit_reference, scale_stages
from monai_pneumonia.results import file_sha256
from monai_pneumonia.transforms import xray_preprocessing
from tests.conftest import REPO, write_picture

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _tiny_network() -> AttentionResNet:
    torch.manual_seed(0)
    return AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18).eval()


def test_feature_tap_pools_each_stage_and_removes_its_hooks():
    network = _tiny_network()
    features = pooled_features(network, torch.rand(3, 1, 32, 32), LAYERS)
    assert [features[name].shape for name in LAYERS] == [(3, 64), (3, 128), (3, 256), (3, 512)]
    assert all(not module._forward_hooks for module in (network.layer1, network.layer4))
    with pytest.raises(KeyError, match="nolayer"):
        FeatureTap(network, ["nolayer"])


def test_distance_is_the_class_conditional_mahalanobis_distance():
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(120, 20)), rng.integers(0, 2, 120)
    layer = fit_reference({"a": features}, labels, "0" * 64, n_components=8).layers[0]
    pca = PCA(8, svd_solver="full").fit(features)
    projected = pca.transform(features)
    means = np.stack([projected[labels == c].mean(axis=0) for c in (0, 1)])
    precision = LedoitWolf(assume_centered=True).fit(projected - means[labels]).precision_
    expected = (cdist(pca.transform(features[:10]), means, "mahalanobis", VI=precision) ** 2).min(axis=1) / 8
    np.testing.assert_allclose(layer.distance(features[:10]), expected, rtol=1e-8)


def test_tiers_and_reasons_name_no_value_but_the_score():
    reference = fit_reference({"a": np.random.default_rng(1).normal(size=(40, 6))}, [0, 1] * 20, "ab" * 32,
                              n_components=4).with_limits(2.0, 5.0)
    assert reference.judge(1.0, "view_missing") == ("", "view_missing")
    assert reference.judge(3.0, "view_missing") == ("", f"view_missing;{ATYPICAL_FLAG}")
    reason, _ = reference.judge(9.0, "")
    assert reason.startswith("not a frontal chest radiograph: atypicality 9.0 above the refusal limit 5.0")
    assert reference.tier(float("nan")) == "refuse"
    with pytest.raises(ValueError, match="flag <= refuse"):
        reference.with_limits(5.0, 2.0)


def test_sidecar_is_bound_to_its_model(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    reference = fit_reference({"a": np.random.default_rng(2).normal(size=(30, 5))}, [0] * 15 + [1] * 15,
                              file_sha256(checkpoint), n_components=3).with_limits(1.5, 3.0, "rule")
    reference.save(sidecar_path(checkpoint))
    assert sidecar_path(checkpoint).name == "model.atypicality.npz"
    loaded = load_reference(checkpoint)
    assert loaded.rule == "rule" and loaded.layer_names == ("a",)
    assert (loaded.flag_limit, loaded.refuse_limit) == (1.5, 3.0)
    checkpoint.write_bytes(b"other weights")
    with pytest.raises(ValueError, match="another model"):
        load_reference(checkpoint)
    assert load_reference(checkpoint, False) is None
    assert load_reference(tmp_path / "none.pt") is None  # no sidecar: no atypicality gate
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="not an atypicality sidecar"):
        AtypicalityReference.load(tmp_path / "bad.npz")


def _two_stage_reference():
    rng = np.random.default_rng(4)
    train = {"a": rng.normal(size=(60, 6)), "b": rng.normal(size=(60, 9)) * 3}
    reference = fit_reference(train, [0, 1] * 30, "cd" * 32, n_components=4)
    validation = {"a": rng.normal(size=(25, 6)), "b": rng.normal(size=(25, 9)) * 3}
    return reference, validation, rng


def test_version_2_scales_each_stage_by_its_validation_median_and_takes_the_maximum():
    reference, validation, rng = _two_stage_reference()
    scaled = scale_stages(reference, validation)
    raw = np.stack([layer.distance(validation[layer.name]) for layer in reference.layers])
    np.testing.assert_allclose([layer.scale for layer in scaled.layers], np.median(raw, axis=1))
    np.testing.assert_allclose(np.median(scaled.stage_distances(validation), axis=1), [1.0, 1.0])
    films = {"a": rng.normal(size=(5, 6)), "b": rng.normal(size=(5, 9)) * 3}
    films["a"][0] += 50  # atypical at one stage only
    expected = np.max([layer.distance(films[layer.name]) / m for layer, m in zip(
        reference.layers, np.median(raw, axis=1), strict=True)], axis=0)
    np.testing.assert_allclose(scaled.score(films), expected)
    assert scaled.combine == "max" and reference.combine == "mean"
    np.testing.assert_allclose(reference.score(films), np.mean(
        [layer.distance(films[layer.name]) for layer in reference.layers], axis=0))
    # scaling twice replaces the scales instead of compounding them
    np.testing.assert_allclose([layer.scale for layer in scale_stages(scaled, validation).layers],
                               [layer.scale for layer in scaled.layers])


def test_version_2_sidecar_keeps_its_scales_and_a_version_1_sidecar_still_reads(tmp_path):
    reference, validation, _ = _two_stage_reference()
    scaled = scale_stages(reference, validation).with_limits(1.2, 4.0, "rule")
    loaded = AtypicalityReference.load(scaled.save(tmp_path / "v2.npz"))
    assert loaded.combine == "max"
    np.testing.assert_allclose([layer.scale for layer in loaded.layers], [layer.scale for layer in scaled.layers])
    np.testing.assert_allclose(loaded.score(validation), scaled.score(validation), rtol=1e-5)
    with np.load(tmp_path / "v2.npz") as data:  # a format-1 sidecar: no scales, no combination, mean of stages
        old = {k: data[k] for k in data.files if k not in ("scales", "combine")}
    np.savez(tmp_path / "v1.npz", **{**old, "format": np.array(1)})
    version1 = AtypicalityReference.load(tmp_path / "v1.npz")
    assert version1.combine == "mean" and [layer.scale for layer in version1.layers] == [1.0, 1.0]
    np.testing.assert_allclose(version1.score(validation), reference.score(validation), rtol=1e-5)
    np.savez(tmp_path / "v9.npz", **{**old, "format": np.array(9)})
    with pytest.raises(ValueError, match="format 9"):
        AtypicalityReference.load(tmp_path / "v9.npz")
    with pytest.raises(ValueError, match="unknown atypicality combination"):
        reference.with_scales([1.0, 1.0], "median")
    with pytest.raises(ValueError, match="positive"):
        reference.with_scales([1.0, 0.0], "max")


def _odd_pictures(folder) -> list:
    """Images unlike the tiny data set's smooth gradients: a checkerboard and salt-and-pepper noise."""
    rng = np.random.default_rng(5)
    checker = ((np.indices((40, 40)).sum(axis=0) // 4) % 2 * 255).astype(np.uint8)
    noise = (rng.random((40, 40)) > 0.5).astype(np.uint8) * 255
    paths = [folder / "checker.png", folder / "noise.png"]
    for path, pixels in zip(paths, (checker, noise), strict=False):
        Image.fromarray(pixels).save(path)
    return paths


@pytest.fixture(scope="module")
def gated(tiny_dataset, tmp_path_factory):
    """A classifier on a tiny untrained network with a reference fitted on the tiny pictures' features."""
    classifier = BundleClassifier(
        preprocessing=xray_preprocessing(keys="image", spatial_size=32, intensity="histeq"), network=_tiny_network(),
        inferer=AutocastInferer(dtype=None), postprocessing=Activationsd(keys="pred", softmax=True),
        device=torch.device("cpu"), batch_size=4)
    training = sorted(tiny_dataset.rglob("*.png"))
    batch = next(classifier.batches(training, batch_size=len(training)))
    labels = [int("PNEUMONIA" in str(path)) for path in training]
    features = pooled_features(classifier.network, batch["image"].as_tensor(), LAYERS)
    reference = fit_reference(features, labels, "0" * 64, n_components=8)
    folder = tmp_path_factory.mktemp("gate")
    typical = folder / "typical.png"
    write_picture(typical, 0, seed=999)
    inputs = [typical, *_odd_pictures(folder)]
    scores = reference.score(pooled_features(classifier.network, next(classifier.batches(inputs))["image"].as_tensor(),
                                             LAYERS))
    return classifier, reference, inputs, scores, reference.score(features)


def test_unlike_images_score_above_every_training_picture(gated):
    _, _, _, scores, training_scores = gated
    assert scores[1:].min() > training_scores.max() >= scores[0]


def test_classifier_refuses_far_flags_between_and_costs_no_other_film(gated, tmp_path):
    classifier, reference, (typical, *odd), scores, training_scores = gated
    low, high = sorted(odd, key=lambda p: scores[[typical, *odd].index(p)])
    mid_score, far_score = sorted(scores[1:])
    classifier.atypicality = reference.with_limits((training_scores.max() + mid_score) / 2, (mid_score + far_score) / 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    try:
        results = classifier.classify([high, typical, broken, low])
    finally:
        classifier.atypicality = None
    assert [type(r) for r in results] == [Refusal, Classification, Refusal, Classification]
    assert results[0].image == str(high) and "not a frontal chest radiograph: atypicality" in results[0].error
    assert str(high) not in results[0].error  # the reason alone: a spool path would hold the UID
    assert ATYPICAL_FLAG not in results[1].meta["xray_flags"] and results[1].meta["atypicality"] == pytest.approx(scores[0])
    assert results[3].meta["xray_flags"].split(";")[-1] == ATYPICAL_FLAG


def test_a_sidecar_for_another_model_is_an_error(tmp_path):
    checkpoint = tmp_path / "model.pt"
    network = AttentionResNet(**{k: v for k, v in _bundle_network().items() if k != "_target_"}, depth=18)
    torch.save(network.state_dict(), checkpoint)
    fit_reference({"layer4": np.random.default_rng(3).normal(size=(20, 512))}, [0, 1] * 10, "f" * 64,
                  n_components=4).save(sidecar_path(checkpoint))
    with pytest.raises(ValueError, match="another model"):
        BundleClassifier.from_bundle(REPO / "bundle", ckpt_path=checkpoint, device="cpu", backend="eager",
                                     **{"network_def#depth": 18, "image_size": 32})


def _bundle_network() -> dict:
    config = json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())["network_def"]
    return {k: v for k, v in config.items() if k != "depth"}
