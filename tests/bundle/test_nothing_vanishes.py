"""inference.json on a folder: every file is a prediction, a row of errors.csv, or counted as skipped."""

from __future__ import annotations

import csv

from PIL import Image

from tests.conftest import CONFIGS, TINY, run_bundle


def read_rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_a_text_file_named_png_is_refused_not_dropped(trained_bundle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    pictures = sorted(trained_bundle["dataset_dir"].rglob("*.png"))
    assert len(pictures) == 24
    for index, picture in enumerate(pictures):
        Image.open(picture).convert("L").save(inputs / f"film{index:02d}.jpeg", format="JPEG")
    (inputs / "broken.png").write_text("this is text, not a PNG")
    (inputs / "notes.txt").write_text("not an image either, and not named as one")
    result = run_bundle("run", "--config_file", str(CONFIGS / "inference.json"), "--dataset_dir", str(inputs),
                        "--ckpt_dir", str(trained_bundle["ckpt_dir"]), "--output_dir", str(tmp_path / "out"), *TINY)
    predictions = read_rows(tmp_path / "out" / "predictions.csv")
    assert sorted(row["image"].rsplit("/", 1)[-1] for row in predictions) == [f"film{i:02d}.jpeg" for i in range(24)]
    errors = read_rows(tmp_path / "out" / "errors.csv")
    assert [row["image"].rsplit("/", 1)[-1] for row in errors] == ["broken.png"]
    assert errors[0]["error"].strip()
    logged = result.stdout + result.stderr
    assert "1 file(s) in the input folders skipped" in logged and "notes.txt" in logged
