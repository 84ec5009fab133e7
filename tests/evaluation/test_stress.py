"""Stress validation with the tiny trained bundle: per-shift evaluations, the pooled threshold, storing it."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from monai_pneumonia.cli import main
from monai_pneumonia.evaluation import select_threshold, stress_test

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
    report = stress_test(datalist, out, shifts=SHIFTS, bundle_root=bundle_copy, n_bootstrap=50)
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
    expected = select_threshold(np.concatenate(pooled_labels), np.concatenate(pooled_probs))
    assert report["stressed_threshold"] == pytest.approx(expected)
    assert json.loads((out / "stress.json").read_text())["stressed_threshold"] == pytest.approx(expected)


def test_cli_stores_the_stressed_threshold(bundle_copy, datalist, tmp_path, capsys):
    status = main(["stress", str(datalist), "--output", str(tmp_path / "out"), "--bundle", str(bundle_copy),
                   "--shifts", "none", "blur-1", "--store-threshold"])
    assert status == 0
    report = json.loads((tmp_path / "out" / "stress.json").read_text())
    state = torch.load(bundle_copy / "models" / "model.pt", weights_only=True)
    assert float(state["operating_threshold"]) == pytest.approx(report["stressed_threshold"], abs=1e-6)
    assert "| blur-1 |" in capsys.readouterr().out


def test_cli_refuses_the_test_split(datalist, tmp_path):
    with pytest.raises(SystemExit, match="test split"):
        main(["stress", str(datalist), "--split", "test", "--output", str(tmp_path / "out")])
