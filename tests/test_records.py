"""The per-film record schema (monai_pneumonia.results): fields, no identifiers, and reading records files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_pneumonia.results import RECORD_FIELDS, RecordError, film_record, read_records, refusal_record

DICOM_META = {"format": "dicom", "xray_flags": "view_missing", "StudyInstanceUID": "1.2.3.4", "SOPInstanceUID": "1.2.3.5",
              "SeriesInstanceUID": "1.2.3.6", "PatientName": "Doe^Jane", "Manufacturer": "ACME", "Modality": "DX",
              "ManufacturerModelName": "X1", "PhotometricInterpretation": "MONOCHROME1", "ViewPosition": "",
              "spacing": np.array([0.15, 0.14]), "spacing_known": True, "spacing_source": "ImagerPixelSpacing",
              "image_statistics": {"p1": np.float32(0.01), "p50": 0.5, "p99": 0.99, "mean": 0.49, "sharpness": 0.02,
                                   "rows": 2000, "columns": 1800}, "atypicality": 3.5}


def test_a_record_has_the_schema_fields_and_no_identifier():
    record = film_record(0.8, "PNEUMONIA", 0.5, DICOM_META, model_sha256="ab" * 32, time=100.0)
    assert list(record) == list(RECORD_FIELDS)
    assert record["acquisition"] == {"Manufacturer": "ACME", "ManufacturerModelName": "X1", "Modality": "DX",
                                     "PhotometricInterpretation": "MONOCHROME1", "PixelSpacing": [0.14, 0.15],
                                     "SpacingSource": "ImagerPixelSpacing"}
    assert record["image_statistics"]["rows"] == 2000 and record["image_statistics"]["p1"] == pytest.approx(0.01)
    assert record["atypicality"] == 3.5 and record["flags"] == "view_missing" and record["time"] == 100.0
    text = json.dumps(record)  # serialisable, and nothing of the identifying metadata copied
    for value in ("1.2.3.4", "1.2.3.5", "1.2.3.6", "Doe"):
        assert value not in text


def test_a_png_record_has_no_acquisition_fields_and_null_atypicality():
    record = film_record(0.1, "NORMAL", 0.5, {"format": "png", "Manufacturer": "", "spacing_known": False})
    assert record["acquisition"] == {} and record["atypicality"] is None and record["flags"] == ""


def test_read_records_takes_predict_lines_and_results_log_events(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [{"image": "/data/a.png", **film_record(0.2, "NORMAL", 0.5, time=1.0)},
             {"time": 2.0, "event": "classified", "sop_instance_uid": "1.2.3", "record": film_record(0.9, "PNEUMONIA", 0.5, time=2.0)},
             {"time": 3.0, "event": "refused", "sop_instance_uid": "1.2.4", "reason": "CT"},
             {"time": 4.0, "event": "delivered", "sop_instance_uid": "1.2.3"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    records = list(read_records(path))
    assert [r.get("probability") for r in records] == [0.2, 0.9, None]
    assert records[2] == refusal_record("CT", time=3.0)
    assert "image" not in records[0]  # no file names in records


def test_a_broken_records_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(film_record(0.2, "NORMAL", 0.5)) + "\n{not json\n")
    with pytest.raises(RecordError, match=r"bad\.jsonl:2"):
        list(read_records(path))


def test_a_loaded_dicom_film_gives_its_acquisition_fields_and_no_uid(tmp_path):
    from monai_pneumonia.transforms import xray_preprocessing
    from tests.factories import gradient_picture, write_dicom

    path = write_dicom(tmp_path / "film.dcm", gradient_picture(), pixel_spacing=(0.2, 0.2),
                       extra={"Manufacturer": "ACME", "ManufacturerModelName": "X1", "PatientName": "Doe^Jane"})
    meta = dict(xray_preprocessing(spatial_size=32)({"image": str(path)})["image"].meta)
    record = film_record(0.4, "NORMAL", 0.5, meta)
    assert record["acquisition"]["Manufacturer"] == "ACME" and record["acquisition"]["ManufacturerModelName"] == "X1"
    assert record["acquisition"]["PixelSpacing"] == [0.2, 0.2] and record["acquisition"]["Modality"] == "DX"
    assert (record["image_statistics"]["rows"], record["image_statistics"]["columns"]) == (96, 80)
    text = json.dumps(record)
    assert meta["SOPInstanceUID"] and meta["SOPInstanceUID"] not in text and "Doe" not in text
