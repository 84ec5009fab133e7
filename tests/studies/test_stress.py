"""Stress validation with the tiny trained bundle: per-shift evaluations, the pooled threshold, storing it."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from monai_pneumonia.cli import main
from monai_pneumonia.evaluation import choose_threshold
from monai_pneumonia.studies import (
    acquisition_series,
    pool_predictions,
    rescore_stress,
    shipping_decision,
    stress_report,
    stress_test,
)

SHIFTS = ["none", "blur-2", "noise-0.06"]


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    return bundle


@pytest.fixture()
def datalist(tiny_dataset, tmp_path):
    images = sorted(tiny_dataset.rglob("*.png"))
    items = [{"image": str(p), "label": int(p.parent.name == "PNEUMONIA"), "patient": p.stem} for p in images]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [], "validation": items, "test": []}))
    return path


def _probs(folder):
    with open(folder / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return np.array([int(r["label"]) for r in rows]), np.array([float(r["prob_pneumonia"]) for r in rows])


def test_stress_test_evaluates_every_shift_and_pools_the_threshold(bundle_copy, datalist, tmp_path):
    out = tmp_path / "stress"
    report = stress_test(datalist, out, shifts=SHIFTS, bundle_root=bundle_copy, n_bootstrap=50,
                         threshold_method="bayes-guarded")
    stored = float(torch.load(bundle_copy / "models" / "model.pt", weights_only=True)["operating_threshold"])
    assert report["stored_threshold"] == pytest.approx(stored, abs=1e-6)
    assert list(report["shifts"]) == SHIFTS
    pooled_labels, pooled_probs = [], []
    for name in SHIFTS:
        labels, probs = _probs(out / name)
        assert len(labels) == 24
        pooled_labels.append(labels)
        pooled_probs.append(probs)
        assert report["shifts"][name]["at_stored"]["n"] == 24
    assert not np.allclose(pooled_probs[0], pooled_probs[1]), "the blur shift did not reach the model"
    labels, probs = np.concatenate(pooled_labels), np.concatenate(pooled_probs)
    expected = choose_threshold(labels, probs, method="bayes-guarded")
    assert report["threshold_method"] == "bayes-guarded"
    assert report["stressed_threshold"] == pytest.approx(expected)
    assert json.loads((out / "stress.json").read_text())["stressed_threshold"] == pytest.approx(expected)
    pooled = report["pooled"]["at_stressed"]
    assert pooled["balanced_accuracy"] == pytest.approx(0.5 * (pooled["sensitivity"] + pooled["specificity"]))
    normals = probs[labels == 0]
    # the tiny data's normals are all IM- files: their pooled specificity is that of every normal
    assert report["series"]["at_stressed"] == {"IM": {"n": len(normals), "specificity": pytest.approx((normals < expected).mean())}}


def test_acquisition_series_of_the_public_file_names():
    assert acquisition_series("/d/NORMAL/NORMAL2-IM-1427-0001.jpeg") == "NORMAL2"
    assert acquisition_series("IM-0115-0001.jpeg") == "IM"
    assert acquisition_series("person1_virus_6.jpeg") == "other"


def test_another_data_set_names_its_own_series():
    series = {"site-a": "A_", "site-b": "B_"}
    assert [acquisition_series(name, series) for name in ("A_1.dcm", "/x/B_2.dcm", "IM-0115-0001.jpeg")] == [
        "site-a", "site-b", "other"]


def test_the_report_gives_the_specificity_of_the_series_it_is_given():
    predictions = {"none": (["A_1.png", "A_2.png", "B_1.png", "p_1.png", "p_2.png"], np.array([0, 0, 0, 1, 1]),
                            np.array([0.1, 0.6, 0.2, 0.9, 0.4]))}
    results = {"none": {"description": "clean", "at_stored": {}}}
    report = stress_report(predictions, results, 0.5, "validation", "d.json", series={"a": "A_", "b": "B_"})
    assert report["series"]["at_stored"] == {"a": {"n": 2, "specificity": 0.5}, "b": {"n": 1, "specificity": 1.0}}
    assert stress_report(predictions, results, 0.5, "validation", "d.json")["series"]["at_stored"] == {}


def test_pool_predictions_keeps_shift_order_and_pairs():
    clean = (["a.jpeg", "b.jpeg"], np.array([0, 1]), np.array([0.1, 0.9]))
    blurred = (["a.jpeg", "b.jpeg"], np.array([0, 1]), np.array([0.2, 0.7]))
    images, labels, probs = pool_predictions([clean, blurred])
    assert images == ["a.jpeg", "b.jpeg", "a.jpeg", "b.jpeg"]
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])
    np.testing.assert_allclose(probs, [0.1, 0.9, 0.2, 0.7])


def test_shipping_decision_applies_the_rule_and_needs_the_same_images(bundle_copy, datalist, tmp_path):
    first = tmp_path / "a"
    stress_test(datalist, first, shifts=["none", "blur-2"], bundle_root=bundle_copy, n_bootstrap=0)
    second = tmp_path / "b"
    shutil.copytree(first, second)
    decision = shipping_decision(first, second)
    assert decision["ship"] is True  # equal models: "not lower" on both criteria
    assert decision["auc_difference"]["difference"] == pytest.approx(0.0)
    report = json.loads((second / "stress.json").read_text())
    report["pooled"]["at_stressed"]["balanced_accuracy"] += 0.01
    (second / "stress.json").write_text(json.dumps(report))
    assert shipping_decision(first, second)["ship"] is False
    with open(second / "blur-2" / "predictions.csv") as stream:
        lines = stream.readlines()
    (second / "blur-2" / "predictions.csv").write_text("".join([lines[0], *lines[2:]]))
    with pytest.raises(ValueError, match="same images"):
        shipping_decision(first, second)


def test_cli_stores_the_stressed_threshold(bundle_copy, datalist, tmp_path, capsys):
    status = main(["study", "stress", str(datalist), "--output", str(tmp_path / "out"), "--bundle", str(bundle_copy),
                   "--shifts", "none", "blur-1", "--store-threshold"])
    assert status == 0
    report = json.loads((tmp_path / "out" / "stress.json").read_text())
    assert report["threshold_method"] == "youden"
    assert report["split"] == "validation", "a threshold is chosen on the validation list, never on the test list"
    state = torch.load(bundle_copy / "models" / "model.pt", weights_only=True)
    assert float(state["operating_threshold"]) == pytest.approx(report["stressed_threshold"], abs=1e-6)
    printed = capsys.readouterr().out
    assert "| blur-1 |" in printed
    assert "per normal series" in printed


def test_cli_shortcut_and_comparison(bundle_copy, datalist, tmp_path, capsys):
    args = ["study", "stress", str(datalist), "--bundle", str(bundle_copy), "--shifts", "none"]
    assert main([*args, "--output", str(tmp_path / "one")]) == 0
    assert main([*args, "--output", str(tmp_path / "two"), "--shortcut", "--compare-with", str(tmp_path / "one")]) == 0
    printed = capsys.readouterr().out
    assert "Grad-CAM energy share on 24 clean images" in printed
    assert '"ship": true' in printed
    report = json.loads((tmp_path / "two" / "stress.json").read_text())
    assert report["shortcut"]["n"] == 24


def test_rescore_rebuilds_the_report_by_another_rule_without_running_the_model(bundle_copy, datalist, tmp_path):
    out = tmp_path / "stress"
    original = stress_test(datalist, out, shifts=["none", "blur-2"], bundle_root=bundle_copy, n_bootstrap=0,
                           threshold_method="youden")
    original["shortcut"] = {"n": 24, "marker": True}
    (out / "stress.json").write_text(json.dumps(original))
    (bundle_copy / "models" / "model.pt").unlink()  # no model: rescoring must not evaluate
    same = rescore_stress(out, threshold_method="youden")
    assert same["stressed_threshold"] == pytest.approx(original["stressed_threshold"])
    for key in ("at_stored", "at_stressed"):
        for metric in ("auc", "balanced_accuracy", "sensitivity", "specificity"):
            assert same["pooled"][key][metric] == pytest.approx(original["pooled"][key][metric])
    assert same["shortcut"] == {"n": 24, "marker": True}
    labels, probs = map(np.concatenate, zip(_probs(out / "none"), _probs(out / "blur-2"), strict=True))
    other = rescore_stress(out, threshold_method="bayes-guarded")
    assert other["threshold_method"] == "bayes-guarded"
    assert other["stressed_threshold"] == pytest.approx(choose_threshold(labels, probs, method="bayes-guarded"))
    assert json.loads((out / "stress.json").read_text())["threshold_method"] == "bayes-guarded"
    strict = rescore_stress(out, threshold_method="specificity", threshold_target=0.99)
    assert strict["threshold_target"] == 0.99
    assert strict["stressed_threshold"] == pytest.approx(choose_threshold(labels, probs, "specificity", target=0.99))
    with pytest.raises(ValueError, match="takes no target"):
        rescore_stress(out, threshold_method="youden", threshold_target=0.9)
    assert main(["study", "rescore", str(out), "--threshold-method", "sensitivity", "--threshold-target", "0.9"]) == 0
    assert json.loads((out / "stress.json").read_text())["stressed_threshold"] == pytest.approx(
        choose_threshold(labels, probs, "sensitivity", target=0.9))
    assert main(["study", "rescore", str(out)]) == 0
    with pytest.raises(SystemExit):  # rescoring runs no model: it takes no --shortcut
        main(["study", "rescore", str(out), "--shortcut"])
    assert json.loads((out / "stress.json").read_text())["stressed_threshold"] == pytest.approx(
        original["stressed_threshold"])
