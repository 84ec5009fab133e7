"""Tests of ``monai-pneumonia datalist``."""

from __future__ import annotations

import json

import pytest

from monai_pneumonia.cli import main
from monai_pneumonia.data import SPLITS, assert_patients_disjoint
from tests.data import write_tiny_dicom, write_tiny_image


@pytest.fixture
def class_tree(tmp_path):
    for n in range(6):
        write_tiny_image(tmp_path / "data" / "NORMAL" / f"IM-{n:04d}-0001.png")
        write_tiny_image(tmp_path / "data" / "normal" / f"NORMAL2-IM-{n:04d}-0001.png")
        write_tiny_image(tmp_path / "data" / "PNEUMONIA" / f"person{n}_virus_{n}.png")
        write_tiny_image(tmp_path / "data" / "PNEUMONIA" / f"person{n}_bacteria_{n + 10}.png")
    return tmp_path / "data"


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["datalist", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--labels", "--output", "--val-fraction", "--test-fraction", "--seed", "--patient-pattern"):
        assert option in text
    assert "--validation-patients" in text and "sop_instance_uid,label" in text


def test_folder_to_file_round_trip(class_tree, tmp_path, capsys):
    out = tmp_path / "out" / "datalist.json"
    argv = ["datalist", str(class_tree), "-o", str(out), "--val-fraction", "0.2", "--test-fraction", "0.2"]
    assert main([*argv, "--validation-patients", "^NORMAL2-IM-000[01]$"]) == 0
    datalist = json.loads(out.read_text())
    assert sum(len(datalist[split]) for split in SPLITS) == 24 and datalist["test"]
    assert {"NORMAL2-IM-0000", "NORMAL2-IM-0001"} <= {item["patient"] for item in datalist["validation"]}
    assert_patients_disjoint(datalist)
    err = capsys.readouterr().err
    assert "training" in err and "patients" in err and str(out) in err
    assert main([*argv, "--validation-patients", "^NORMAL2-IM-000[01]$"]) == 0
    assert json.loads(out.read_text()) == datalist  # same input and seed: same output


def test_csv_to_stdout_with_patient_pattern(tmp_path, capsys):
    write_tiny_image(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("path,label\nP1/a.png,NORMAL\nP1/b.png,normal\nP2/c.png,PNEUMONIA\n")
    assert main(["datalist", str(tmp_path / "l.csv"), "--val-fraction", "0", "--patient-pattern", r"/(P\d)/"]) == 0
    datalist = json.loads(capsys.readouterr().out)
    assert [item["patient"] for item in datalist["training"]] == ["P1", "P1", "P2"]


def test_dicom_with_labels(tmp_path, capsys):
    write_tiny_dicom(tmp_path / "pacs" / "IM1", "1.2.1", patient_id="A")
    write_tiny_dicom(tmp_path / "pacs" / "IM2", "1.2.2", patient_id="B")
    write_tiny_dicom(tmp_path / "pacs" / "IM3", "1.2.3", patient_id="C")
    (tmp_path / "l.csv").write_text("sop_instance_uid,label\n1.2.1,0\n1.2.2,1\n")
    assert main(["datalist", str(tmp_path / "pacs"), "--labels", str(tmp_path / "l.csv"), "--val-fraction", "0"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["training"]) == 2
    assert "unlabeled (left out): 1" in captured.err


def test_errors_are_reported(tmp_path, capsys):
    assert main(["datalist", str(tmp_path / "missing")]) == 1
    assert "missing: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["datalist", str(tmp_path), "--val-fraction", "1.5"])
