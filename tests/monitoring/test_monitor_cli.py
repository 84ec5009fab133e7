"""``monai-pneumonia monitor``: monitor.json / monitor.html from a records file, the reference sidecar, user errors."""

from __future__ import annotations

import json

from monai_pneumonia.cli import main
from monai_pneumonia.monitoring import load_reference
from monai_pneumonia.results import file_sha256
from tests.monitoring.test_drift import records


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_save_a_reference_then_monitor_a_shifted_stream(tmp_path, capsys):
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    validation = _write(tmp_path / "validation.jsonl", records(400, seed=0))
    sidecar = tmp_path / "model.reference.json"
    assert main(["monitor", str(validation), "--save-reference", str(sidecar), "--model", str(model)]) == 0
    assert load_reference(sidecar).model_sha256 == file_sha256(model)
    capsys.readouterr()

    stream = _write(tmp_path / "stream.jsonl", records(300, seed=1) + records(300, seed=2, sharpness=0.01, t0=1e4))
    assert main(["monitor", str(stream), "--output", str(tmp_path / "out"), "--reference", str(sidecar)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["drift"] is True and summary["alarms"] == ["sharpness"]
    report = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert report["drift"] is True and [w["drift"] for w in report["windows"]] == [False, True]
    assert report["windows"][1]["signals"]["sharpness"]["test"] == "ks"
    page = (tmp_path / "out" / "monitor.html").read_text()
    assert page.count("data:image/png;base64,") >= 5 and "DRIFT" in page and "<script" not in page
    assert "not for diagnosis or triage" in page  # the intended use on every human-readable result

    same = _write(tmp_path / "same.jsonl", records(300, seed=3))
    assert main(["monitor", str(same), "--output", str(tmp_path / "same"), "--reference", str(sidecar)]) == 0
    assert json.loads((tmp_path / "same" / "monitor.json").read_text())["drift"] is False


def test_a_missing_reference_or_records_file_is_one_line_and_status_2(tmp_path, capsys):
    stream = _write(tmp_path / "stream.jsonl", records(120, seed=1))
    assert main(["monitor", str(stream), "--output", str(tmp_path / "o"), "--reference", str(tmp_path / "none.json")]) == 2
    assert main(["monitor", str(tmp_path / "absent.jsonl"), "--output", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "none.json" in errors[0] and "absent.jsonl" in errors[1]
