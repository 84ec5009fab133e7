"""``monai-pneumonia predict`` runs the bundle's inference workflow and prints its results."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from monai_pneumonia.cli import main
from monai_pneumonia.cli.predict import print_table

TINY_OVERRIDES = ["--batch-size", "4"]


@pytest.fixture()
def tiny(tiny_bundle, trained_bundle):
    return {"bundle": tiny_bundle, "ckpt_dir": tiny_bundle / "models", "dataset_dir": trained_bundle["dataset_dir"]}


def test_predict_json_matches_the_inference_workflow(tiny, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    status = main(["predict", str(tiny["dataset_dir"]), str(broken), "--bundle", str(tiny["bundle"]),
                   "--ckpt-dir", str(tiny["ckpt_dir"]), "--output-dir", str(tmp_path / "out"), "--json",
                   *TINY_OVERRIDES])
    assert status == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    classified = [row for row in printed if not row.get("refused")]
    assert len(classified) == 24
    assert [row["image"] for row in printed if row.get("refused")] == [str(broken)]
    with open(tmp_path / "out" / "predictions.csv", newline="") as stream:
        written = {row["image"]: float(row["prob_pneumonia"]) for row in csv.DictReader(stream)}
    assert {row["image"]: row["probability"] for row in classified} == written


def test_predict_exits_non_zero_when_nothing_is_readable(tiny, tmp_path, capsys):
    text = tmp_path / "report.txt"
    text.write_text("not a radiograph")
    status = main(["predict", str(text), "--bundle", str(tiny["bundle"]), "--ckpt-dir",
                   str(tiny["ckpt_dir"]), "--output-dir", str(tmp_path / "out")])
    assert status == 1
    assert "report.txt" in capsys.readouterr().out


def test_python_dash_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "monai_pneumonia", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for command in ("predict", "datalist", "demo"):
        assert command in result.stdout
    version = subprocess.run([sys.executable, "-m", "monai_pneumonia", "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.stdout.startswith("monai-pneumonia ")


def test_predict_json_is_one_document_in_input_order_matching_one_file_runs(tiny, tmp_path, capsys):
    """``predict A B BAD C --json``: stdout is one JSON record per input, in input order (MONAI's messages go to
    stderr), and each probability equals the run on that file alone."""
    a, b, c = sorted(str(p) for p in tiny["dataset_dir"].rglob("*.png"))[::9][:3]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a picture")
    result = subprocess.run([sys.executable, "-m", "monai_pneumonia", "predict", a, b, str(bad), c, "--json",
                             "--bundle", str(tiny["bundle"]), "--device", "cpu", "--output-dir", str(tmp_path / "all")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["image"] for row in printed] == [a, b, str(bad), c]
    assert [bool(row.get("refused")) for row in printed] == [False, False, True, False]
    for row in printed:
        if row.get("refused"):
            continue
        assert main(["predict", row["image"], "--json", "--bundle", str(tiny["bundle"]), "--device", "cpu",
                     "--output-dir", str(tmp_path / "one")]) == 0
        alone = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [r["image"] for r in alone] == [row["image"]]
        assert alone[0]["probability"] == pytest.approx(row["probability"], abs=1e-4)
        assert alone[0]["decision"] == row["decision"]


def test_predict_json_records_carry_the_schema_and_no_identifiers(tiny, tmp_path, capsys):
    """Each line is a per-film record (monai_pneumonia.results): image statistics of the loaded film, no UIDs."""
    from monai_pneumonia.results import IMAGE_STATISTICS, RECORD_FIELDS

    image = sorted(tiny["dataset_dir"].rglob("*.png"))[0]
    assert main(["predict", str(image), "--json", "--bundle", str(tiny["bundle"]), "--device", "cpu",
                 "--output-dir", str(tmp_path / "out")]) == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert list(record) == ["image", *RECORD_FIELDS]
    assert record["image"] == str(image)
    assert set(record["image_statistics"]) == {*IMAGE_STATISTICS, "rows", "columns"}
    assert 0.0 <= record["image_statistics"]["p1"] <= record["image_statistics"]["p99"] <= 1.0
    assert record["decision"] in ("NORMAL", "PNEUMONIA") and 0.0 <= record["probability"] <= 1.0
    assert "UID" not in json.dumps(record)


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai_pneumonia", *args], capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_predict_on_a_missing_file_is_one_line_and_exit_2(tmp_path):
    result = _cli("predict", str(tmp_path / "nonexistent.dcm"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"monai-pneumonia: error: no such file or folder: {tmp_path / 'nonexistent.dcm'}"]
    assert not result.stdout


def test_evaluate_on_a_missing_dataset_folder_is_one_line_and_exit_2(tmp_path):
    """The README's example with a folder that is not there: MONAI re-raises the datalist's error as a
    RuntimeError from the config expression; the command line still prints its one line."""
    result = _cli("evaluate", "--dataset-dir", "MISSING", "--output-dir", str(tmp_path / "eval"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [f"monai-pneumonia: error: {tmp_path / 'MISSING'}: no such folder"]


def test_predict_without_output_dir_leaves_no_folder_and_logs_no_monai_noise(tiny, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    image = sorted(tiny["dataset_dir"].rglob("*.png"))[0]
    result = _cli("predict", str(image), "--bundle", str(tiny["bundle"]), "--device", "cpu",
                  env={**os.environ, "TMPDIR": str(scratch)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(image) in result.stdout
    assert list(scratch.glob("monai-pneumonia-*")) == []  # (other libraries may leave their own files)
    for noise in ("Logging file is set to False", "deprecated name", "optional_packages_version", "results in"):
        assert noise not in result.stderr, result.stderr


def test_predict_save_cam_without_output_dir_is_a_usage_error(tmp_path):
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    result = _cli("predict", str(image), "--save-cam")
    assert result.returncode == 2 and "--save-cam needs --output-dir" in result.stderr


def test_predict_help_is_plain_text():
    result = _cli("predict", "--help")
    assert result.returncode == 0
    for markup in ("``", ":class:", ":func:", ":mod:"):
        assert markup not in result.stdout


def test_the_table_shows_flags_beside_the_answer_only_when_a_film_has_some(capsys):
    rows = [{"image": "a.png", "prob_pneumonia": 0.8124, "prediction": "PNEUMONIA", "flags": "atypical"},
            {"image": "b.png", "prob_pneumonia": 0.0156, "prediction": "NORMAL", "flags": ""}]
    print_table(rows, [{"image": "c.png", "error": "not a frontal chest radiograph"}])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["image", "prob_pneumonia", "prediction", "flags"]
    assert lines[1].split() == ["a.png", "0.8124", "PNEUMONIA", "atypical"]
    assert lines[2].split() == ["b.png", "0.0156", "NORMAL"]
    assert lines[-1] == "  c.png: not a frontal chest radiograph"
    print_table([{**rows[1], "flags": ""}], [])
    assert capsys.readouterr().out.splitlines()[0].split() == ["image", "prob_pneumonia", "prediction"]
