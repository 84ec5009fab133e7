"""BundleClassifier: the in-process inference path gives the bundle workflow's answers."""

from __future__ import annotations

import csv

import pytest
import torch

from monai_pneumonia.decision import CLASS_NAMES
from monai_pneumonia.inference import BundleClassifier, Classification
from monai_pneumonia.results import Refusal
from monai_pneumonia.workflows.datasets import REFUSED_KEY
from tests.conftest import REPO, TINY, run_bundle


@pytest.fixture(scope="module")
def classifier(trained_bundle):
    return BundleClassifier.from_bundle(REPO / "bundle", ckpt_path=trained_bundle["ckpt_dir"] / "model.pt",
                                        device="cpu", **{"network_def#depth": 18, "image_size": 32})


def test_classifier_matches_the_inference_workflow(classifier, trained_bundle, tmp_path):
    images = sorted(str(p) for p in trained_bundle["dataset_dir"].rglob("*.png"))
    (tmp_path / "bad.png").write_bytes(b"nope")
    results = classifier.classify([*images, tmp_path / "bad.png"])
    refusals = [r for r in results if isinstance(r, Refusal)]
    answers = {r.image: r for r in results if isinstance(r, Classification)}
    assert [r.image for r in refusals] == [str(tmp_path / "bad.png")] and refusals[0].error
    run_bundle("run", "--config_file", str(REPO / "bundle" / "configs" / "inference.json"), "--dataset_dir",
               str(trained_bundle["dataset_dir"]), "--ckpt_dir", str(trained_bundle["ckpt_dir"]), "--output_dir",
               str(tmp_path / "out"), *TINY)
    with open(tmp_path / "out" / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(answers) == 24
    for row in rows:
        answer = answers[row["image"]]
        assert answer.prob_pneumonia == pytest.approx(float(row["prob_pneumonia"]), abs=1e-5)
        assert answer.prediction == row["prediction"]
        assert answer.prediction == CLASS_NAMES[int(answer.prob_pneumonia >= classifier.threshold)]


def test_classifier_grad_cam(classifier, trained_bundle):
    display, cam = classifier.grad_cam(next(trained_bundle["dataset_dir"].rglob("*.png")))
    assert display.shape == (1, 40, 40)  # the loader's image at the file's own size, not the 32-px network input
    assert cam.shape == (1, 32, 32)
    assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        BundleClassifier.from_bundle(REPO / "bundle", ckpt_path=tmp_path / "model.pt")


def test_foreign_checkpoint_is_refused_by_name(tmp_path):
    foreign = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 8)}, foreign)
    with pytest.raises(ValueError, match="resnet.pt.*operating_threshold"):
        BundleClassifier.from_bundle(REPO / "bundle", ckpt_path=foreign)


def test_classify_returns_results_in_input_order(classifier, trained_bundle, tmp_path):
    first, second = sorted(str(p) for p in trained_bundle["dataset_dir"].rglob("*.png"))[:2]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    results = classifier.classify([first, bad, second])
    assert [r.image for r in results] == [first, str(bad), second]
    assert [type(r) for r in results] == [Classification, Refusal, Classification]
    alone = {path: classifier(path) for path in (first, second)}
    for result in (results[0], results[2]):
        assert result.prob_pneumonia == pytest.approx(alone[result.image].prob_pneumonia, abs=1e-4)
    assert isinstance(classifier(bad), Refusal)


def test_iterate_streams_one_result_per_input_in_order(classifier, trained_bundle, tmp_path):
    images = sorted(str(p) for p in trained_bundle["dataset_dir"].rglob("*.png"))[:5]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    inputs = [images[0], bad, *images[1:]]
    streamed = list(classifier.iterate(inputs, batch_size=2))
    assert [r.image for r in streamed] == [str(p) for p in inputs]
    assert [r.image for r in classifier.classify(inputs)] == [r.image for r in streamed]


def test_batches_are_the_preprocessed_inputs_in_order_with_refusals_by_position(classifier, trained_bundle, tmp_path):
    images = sorted(str(p) for p in trained_bundle["dataset_dir"].rglob("*.png"))[:3]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    batches = list(classifier.batches([images[0], bad, images[1], images[2]], batch_size=2))
    assert [len(b["image"]) for b in batches] == [1, 2]
    assert [(r.image, r.index) for r in batches[0][REFUSED_KEY]] == [(str(bad), 1)] and not batches[1][REFUSED_KEY]
    alone = classifier.preprocessing({"image": images[2]})["image"]
    assert batches[1]["image"].shape == (2, *alone.shape)
    assert torch.equal(batches[1]["image"][1].as_tensor(), alone.as_tensor())
