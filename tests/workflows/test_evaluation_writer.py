"""EvaluationWriter: the labelled predictions.csv columns, errors.csv, metrics at the stored threshold, the report."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from monai_pneumonia.errors import NoReadableInputError
from monai_pneumonia.results import Refusal
from monai_pneumonia.workflows import REFUSED_KEY
from monai_pneumonia.workflows.evaluation_writer import EvaluationWriter


def _network(threshold: float) -> torch.nn.Module:
    network = torch.nn.Module()
    network.register_buffer("operating_threshold", torch.tensor(threshold))
    return network


def _output(path: str, prob: float, label: int, flags: str = "") -> dict:
    image = MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": path, "xray_flags": flags})
    return {"image": image, "pred": torch.tensor([1 - prob, prob]), "label": torch.tensor(label)}


def _rows(path):
    with open(path, newline="") as stream:
        return list(csv.reader(stream))


def _run(tmp_path, outputs, refused):
    engine = Engine(lambda e, b: outputs)

    @engine.on(Events.STARTED)
    def _refusals(e):  # what XrayEvaluator keeps for refused inputs
        setattr(e.state, REFUSED_KEY, refused)

    EvaluationWriter(tmp_path, _network(0.6), n_bootstrap=0).attach(engine)
    engine.run([0], max_epochs=1)


def test_evaluation_writer_files(tmp_path):
    outputs = [_output("/a/p1.dcm", 0.9, 1, "view:AP"), _output("/a/p2.png", 0.55, 1), _output("/a/n1.png", 0.2, 0),
               _output("/a/n2.png", 0.7, 0)]
    _run(tmp_path, outputs, [Refusal("/a/lateral.dcm", "view LL refused", 4)])
    assert _rows(tmp_path / "predictions.csv") == [
        ["image", "label", "prob_pneumonia", "prediction", "threshold", "flags", "model_sha256", "site_profile_sha256"],
        ["/a/p1.dcm", "1", "0.900000", "PNEUMONIA", "0.600000", "view:AP", "", ""],
        ["/a/p2.png", "1", "0.550000", "NORMAL", "0.600000", "", "", ""],
        ["/a/n1.png", "0", "0.200000", "NORMAL", "0.600000", "", "", ""],
        ["/a/n2.png", "0", "0.700000", "PNEUMONIA", "0.600000", "", "", ""],
    ]
    assert _rows(tmp_path / "errors.csv") == [["image", "error"], ["/a/lateral.dcm", "view LL refused"]]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["threshold"] == pytest.approx(0.6)
    assert (metrics["tp"], metrics["fn"], metrics["tn"], metrics["fp"], metrics["n_refused"]) == (1, 1, 1, 1, 1)
    report = (tmp_path / "report.html").read_text()
    assert "p2.png" in report and "n2.png" in report  # the errors are listed in the gallery


def test_evaluation_writer_with_nothing_readable_writes_errors_then_fails(tmp_path):
    with pytest.raises(NoReadableInputError, match="1 inputs refused"):
        _run(tmp_path, [], [Refusal("/a/report.pdf", "not an image", 0)])
    assert _rows(tmp_path / "errors.csv") == [["image", "error"], ["/a/report.pdf", "not an image"]]
    assert not (tmp_path / "predictions.csv").exists()
