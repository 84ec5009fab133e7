"""The output file schemas and the one atomic write every results writer goes through."""

from __future__ import annotations

import csv
import errno
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from monai_pneumonia import inference, results
from monai_pneumonia.results import (
    EVALUATION_COLUMNS,
    PREDICTION_COLUMNS,
    Refusal,
    atomic_write,
    read_predictions,
    write_predictions,
)


def test_atomic_write_replaces_the_file_owner_only(tmp_path):
    target = tmp_path / "predictions.csv"
    target.write_text("old")
    assert atomic_write(target, "new ✓") == target
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    atomic_write(target, b"\x00bytes", mode=0o644)
    assert target.read_bytes() == b"\x00bytes" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "errors.csv"
    target.write_text("the previous run")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the data did not reach the disk
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, "half of the new run")
    assert target.read_text() == "the previous run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.csv"]  # no temporary file left
    monkeypatch.undo()
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "new.csv", 42)  # fails mid-write: neither the file nor a temporary appears
    assert sorted(p.name for p in tmp_path.iterdir()) == ["errors.csv"]


def test_atomic_write_escapes_undecodable_file_names_instead_of_failing(tmp_path):
    name = os.fsdecode(b"/films/caf\xe9.dcm")  # not UTF-8: held as a surrogate
    atomic_write(tmp_path / "x.txt", name)
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "/films/caf\\udce9.dcm"


def test_write_predictions_columns_and_format(tmp_path):
    rows = [{"image": "/a/x.dcm", "prob_pneumonia": 0.8, "prediction": "PNEUMONIA", "threshold": 0.7,
             "cam": "/o/x.png", "flags": "view:LL"},
            {"image": "/a/y.png", "prob_pneumonia": 1 / 3, "prediction": "NORMAL", "threshold": 0.7}]
    write_predictions(tmp_path, rows, [Refusal("/a/z.pdf", "not an image", 2)])
    with open(tmp_path / "predictions.csv", newline="") as stream:
        assert list(csv.reader(stream)) == [list(PREDICTION_COLUMNS),
                                            ["/a/x.dcm", "0.800000", "PNEUMONIA", "0.700000", "/o/x.png", "view:LL", "", ""],
                                            ["/a/y.png", "0.333333", "NORMAL", "0.700000", "", "", "", ""]]
    with open(tmp_path / "errors.csv", newline="") as stream:
        assert list(csv.reader(stream)) == [["image", "error"], ["/a/z.pdf", "not an image"]]


def test_labelled_predictions_read_back(tmp_path):
    rows = [{"image": "/a/x.dcm", "label": 1, "prob_pneumonia": 0.8, "prediction": "PNEUMONIA", "threshold": 0.5,
             "flags": "", "cam": "ignored"},
            {"image": "/a/y.png", "label": 0, "prob_pneumonia": 0.25, "prediction": "NORMAL", "threshold": 0.5}]
    path = write_predictions(tmp_path, rows, [], labelled=True)
    with open(path, newline="") as stream:
        assert next(csv.reader(stream)) == list(EVALUATION_COLUMNS)
    images, labels, probs = read_predictions(path)
    assert images == ["/a/x.dcm", "/a/y.png"]
    assert labels.tolist() == [1, 0] and np.allclose(probs, [0.8, 0.25])
    write_predictions(tmp_path / "unlabelled", rows, [])
    with pytest.raises(KeyError):
        read_predictions(tmp_path / "unlabelled" / "predictions.csv")


def test_one_refusal_type():
    assert inference.Refusal is results.Refusal


def test_the_ground_floor_imports_no_torch():
    code = ("import sys, monai_pneumonia.results, monai_pneumonia.decision; "
            "print(sorted(m for m in ('torch', 'monai', 'sklearn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
