"""``monai-pneumonia demo`` on the shipped samples."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from monai_pneumonia.cli import main
from monai_pneumonia.cli.demo import MANIFEST, default_samples_dir, describe_samples
from monai_pneumonia.data import load_datalist
from tests.conftest import REPO


def test_samples_load_the_same_from_dicom_and_jpeg():
    rows = describe_samples(default_samples_dir())
    dicoms = [row for row in rows if row.get("format") == "dicom"]
    assert len(dicoms) >= 4 and any(row["photometric"] == "MONOCHROME1" for row in dicoms)
    assert all(row["mad_vs_jpeg"] < 0.01 for row in dicoms)
    assert not any("refused" in row for row in rows)


def test_demo_without_a_model_describes_the_samples(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    assert main(["demo", "--bundle", str(tmp_path), "--output-dir", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "No trained model" in printed and "MONOCHROME1" in printed


def test_demo_with_a_model_writes_predictions_overlays_and_report(tiny_bundle, tmp_path, capsys):
    output = tmp_path / "demo"
    assert main(["demo", "--bundle", str(tiny_bundle), "--output-dir", str(output)]) == 0
    with open(output / "inference" / "predictions.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    samples = [p for p in default_samples_dir().rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(rows) == len(samples)
    assert len(list((output / "inference" / "cam").glob("*.png"))) == len(samples)
    assert json.loads((output / "evaluation" / "metrics.json").read_text())["n"] == len(samples)
    assert (output / "evaluation" / "report.html").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "HTML report" in printed
    assert "validation films of the shipped model" in printed and "never trained on them" in printed
    # a DICOM encoding of a picture gets the JPEG's answer
    probability = {row["image"]: float(row["prob_pneumonia"]) for row in rows}
    pairs = [(name, name[: -len(".dcm")] + ".jpeg") for name in probability if name.endswith(".dcm")]
    assert pairs and all(abs(probability[dcm] - probability[jpeg]) < 0.02 for dcm, jpeg in pairs)


def test_the_samples_are_validation_films_of_the_shipped_model():
    """The demo's films are held out by the shipped model's split (train.json defaults), so its report never
    scores films the model trained on; the manifest lists exactly the sample files."""
    samples = default_samples_dir()
    manifest = json.loads((samples / MANIFEST).read_text())
    files = sorted(str(p.relative_to(samples)) for p in samples.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(manifest["files"]) == files
    train = REPO.parent / "shared" / "data" / "chest_xray" / "train"
    train = Path(os.environ.get("CHEST_XRAY_TRAIN", train))
    if not train.is_dir():
        pytest.skip(f"{train} missing: cannot recompute the shipped model's split")
    split = load_datalist(dataset_dir=train, val_fraction=manifest["split"]["val_fraction"],
                          seed=manifest["split"]["seed"])
    validation = {Path(item["image"]).stem for item in split["validation"]}
    assert {Path(name).stem for name in files} <= validation
