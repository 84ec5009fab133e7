"""The unfit detector (atypicality sidecar format 3): fitting, folding, the flag it adds and the sidecar."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.transforms import Activationsd
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.inferers import AutocastInferer
from monai_pneumonia.networks import AttentionResNet
from monai_pneumonia.networks.atypicality import ATYPICAL_FLAG, AtypicalityReference, pooled_features
from monai_pneumonia.networks.atypicality_fit import fit_detector, fit_reference
from monai_pneumonia.networks.unfit_detector import UnfitDetector, grid_key
from monai_pneumonia.results import film_record
from monai_pneumonia.transforms import xray_preprocessing
from monai_pneumonia.workflows.gate import AtypicalityGate
from tests.conftest import write_picture


def _features(rng, n, shift=0.0):
    return {"a": rng.normal(size=(n, 6)) + shift, "a.grid": rng.normal(size=(n, 24))}


def test_detector_folds_the_standardisation_into_the_logistic_regression():
    rng = np.random.default_rng(0)
    fit, unfit = _features(rng, 80), _features(rng, 60, shift=1.5)
    detector = fit_detector(fit, unfit, ("a", "a.grid"), c=0.1)
    x = np.concatenate([np.concatenate([f["a"], f["a.grid"]], axis=1) for f in (fit, unfit)])
    y = np.r_[np.zeros(80), np.ones(60)]
    scaler = StandardScaler().fit(x)
    expected = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000).fit(scaler.transform(x), y)
    films = _features(rng, 7, shift=0.7)
    stacked = np.concatenate([films["a"], films["a.grid"]], axis=1)
    np.testing.assert_allclose(detector.logit(films), expected.decision_function(scaler.transform(stacked)), rtol=1e-7)
    assert np.mean(detector.logit(unfit) > 0) > 0.9 and np.mean(detector.logit(fit) < 0) > 0.9


def test_detector_validates_and_names_what_is_missing():
    with pytest.raises(ValueError, match="one length"):
        UnfitDetector(("a",), np.zeros(3), np.zeros(4), 0.0)
    with pytest.raises(ValueError, match="finite"):
        UnfitDetector(("a",), np.zeros(3), np.array([0, np.nan, 0]), 0.0)
    detector = UnfitDetector(("a",), np.zeros(3), np.ones(3), -1.0, flag_limit=0.5)
    with pytest.raises(KeyError):
        detector.logit({"b": np.zeros((1, 3))})
    with pytest.raises(ValueError, match="expects 3 features, got 2"):
        detector.logit({"a": np.zeros((1, 2))})
    assert detector.is_flagged(0.6) and not detector.is_flagged(0.5) and detector.is_flagged(float("nan"))


def _reference_with_detector():
    rng = np.random.default_rng(1)
    train = {"a": rng.normal(size=(60, 6))}
    reference = fit_reference(train, [0, 1] * 30, "ab" * 32, n_components=4).with_limits(3.0, 30.0)
    detector = UnfitDetector(("a", "b.grid"), np.zeros(10), np.r_[np.zeros(6), np.ones(4)], 0.0, flag_limit=2.0)
    return reference.with_detector(detector)


def test_gate_flags_on_either_score_and_refuses_on_the_distance_only():
    reference = _reference_with_detector()
    assert reference.layer_names == ("a", "b") and reference.needs_grid
    films = {"a": np.zeros((3, 6)), "b.grid": np.array([[0.0] * 4, [1.0] * 4, [0.0] * 4])}
    films["a"][2] += 40  # far: refused whatever the detector says
    verdicts = reference.gate(films, ["", "view_missing", ""])
    assert [v.unfit_score for v in verdicts] == [0.0, 4.0, 0.0]
    assert verdicts[0].flags == "" and verdicts[0].reason == ""
    assert verdicts[1].flags == f"view_missing;{ATYPICAL_FLAG}" and verdicts[1].reason == ""
    assert verdicts[1].atypicality <= reference.flag_limit  # flagged by the detector alone
    assert verdicts[2].reason.startswith("not a frontal chest radiograph: atypicality")
    assert verdicts[1].meta() == {"atypicality": verdicts[1].atypicality, "unfit_score": 4.0,
                                  "xray_flags": f"view_missing;{ATYPICAL_FLAG}"}
    without = reference.with_detector(None)
    assert without.layer_names == ("a",) and not without.needs_grid
    assert [v.unfit_score for v in without.gate(films, ["", "", ""])] == [None, None, None]
    assert "unfit_score" not in without.gate(films, ["", "", ""])[0].meta()


def test_format_3_sidecar_keeps_the_detector_and_its_limit(tmp_path):
    reference = _reference_with_detector()
    reference = reference.with_detector(reference.detector.with_limit(1.25, "detector rule"))
    path = reference.save(tmp_path / "model.atypicality.npz")
    loaded = AtypicalityReference.load(path)
    assert loaded.detector.keys == ("a", "b.grid") and loaded.detector.flag_limit == 1.25
    assert loaded.detector.rule == "detector rule" and loaded.layer_names == ("a", "b")
    np.testing.assert_array_equal(loaded.detector.weights, reference.detector.weights)
    films = {"a": np.ones((2, 6)), "b.grid": np.ones((2, 4))}
    assert [v.flags for v in loaded.gate(films, ["", ""])] == [v.flags for v in reference.gate(films, ["", ""])]
    assert not list(tmp_path.glob(".*.partial"))  # written atomically


def test_grid_features_keep_the_layout_that_a_turned_film_changes():
    torch.manual_seed(0)
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18).eval()
    image = torch.rand(1, 1, 32, 32)
    image[..., :16, :] += 2.0  # a bright top half
    turned = torch.flip(image, dims=(2,))
    plain = pooled_features(network, torch.cat([image, turned]), ("layer1",))
    assert set(plain) == {"layer1"}
    grid = pooled_features(network, torch.cat([image, turned]), ("layer1",), grid=True)
    cells = grid[grid_key("layer1")].reshape(2, 64, 2, 2)
    np.testing.assert_allclose(cells.mean(axis=(2, 3)), grid["layer1"], rtol=1e-5, atol=1e-6)
    # the top row of the film is the bottom row of the turned one
    np.testing.assert_allclose(cells[0, :, 0].mean(), cells[1, :, 1].mean(), rtol=0.2)
    assert abs(cells[0, :, 0].mean() - cells[0, :, 1].mean()) > abs(
        cells[0, :, 0].mean() - cells[1, :, 1].mean())


def test_an_upside_down_film_is_flagged_by_the_detector_the_same_way_in_the_classifier_and_the_bundle_handler(
        tiny_dataset, tmp_path):
    torch.manual_seed(0)
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18).eval()
    classifier = BundleClassifier(
        preprocessing=xray_preprocessing(keys="image", spatial_size=32, intensity="histeq"), network=network,
        inferer=AutocastInferer(dtype=None), postprocessing=Activationsd(keys="pred", softmax=True),
        device=torch.device("cpu"), batch_size=8)
    training = sorted(tiny_dataset.rglob("*.png"))
    flipped = []
    for path in training:  # the tiny pictures brighten downwards, like a film's abdomen: upside down they do not
        target = tmp_path / "flipped" / path.name
        target.parent.mkdir(exist_ok=True)
        Image.open(path).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(target)
        flipped.append(target)

    def features(paths):
        batch = next(classifier.batches(paths, batch_size=len(paths)))
        return pooled_features(network, batch["image"].as_tensor(), ("layer1", "layer4"), grid=True)

    fit, unfit = features(training), features(flipped)
    reference = fit_reference({k: fit[k] for k in ("layer1", "layer4")}, [int("PNEUMONIA" in str(p)) for p in training],
                              "0" * 64, n_components=4).with_limits(1e6, 1e7)  # the distance flags nothing here
    detector = fit_detector(fit, unfit, ("layer1", "layer1.grid", "layer4", "layer4.grid"), c=1.0)
    classifier.atypicality = reference.with_detector(detector.with_limit(float(detector.logit(fit).max())))
    upright, upside_down = tmp_path / "upright.png", tmp_path / "upside_down.png"
    write_picture(upright, 0, seed=555)
    Image.open(upright).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(upside_down)
    results = classifier.classify([upright, upside_down])
    assert [r.meta["xray_flags"] for r in results] == ["", ATYPICAL_FLAG]
    assert results[1].meta["unfit_score"] > classifier.atypicality.detector.flag_limit > results[0].meta["unfit_score"]
    assert results[1].meta["atypicality"] < reference.flag_limit  # flagged by the detector, not the distance
    record = film_record(results[1].prob_pneumonia, results[1].prediction, 0.5, results[1].meta)
    assert record["unfit_score"] == pytest.approx(results[1].meta["unfit_score"], abs=1e-6)
    assert record["flags"] == ATYPICAL_FLAG
    # the bundle workflow's handler: the same verdicts on the same network inputs
    batch = next(classifier.batches([upright, upside_down]))
    outputs = [{"image": batch["image"][i], "pred": torch.tensor([0.5, 0.5])} for i in range(2)]
    engine = SimpleNamespace(state=SimpleNamespace(output=outputs, refused=[]))
    AtypicalityGate(network, classifier.atypicality)(engine)
    assert [item["image"].meta["xray_flags"] for item in engine.state.output] == ["", ATYPICAL_FLAG]
    np.testing.assert_allclose([item["image"].meta["unfit_score"] for item in engine.state.output],
                               [r.meta["unfit_score"] for r in results], rtol=1e-5)
