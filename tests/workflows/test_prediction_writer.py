"""PredictionWriter: predictions.csv columns, the stored threshold, this run's overlays, flags and refusals."""

from __future__ import annotations

import csv

import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from monai_pneumonia.errors import NoReadableInputError
from monai_pneumonia.results import Refusal
from monai_pneumonia.workflows import CAM_PATHS_KEY, REFUSED_KEY, PredictionWriter


def _network(threshold: float) -> torch.nn.Module:
    network = torch.nn.Module()
    network.register_buffer("operating_threshold", torch.tensor(threshold))
    return network


def _rows(path):
    with open(path, newline="") as stream:
        return list(csv.reader(stream))


def test_prediction_writer_columns_threshold_overlay_and_flags(tmp_path):
    """predictions.csv: the old three columns first, then threshold, cam (this run's overlay) and flags."""
    outputs = [
        {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/a/x.dcm", "xray_flags": "view:LL"}),
         "pred": torch.tensor([0.2, 0.8])},
        {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/a/x.jpeg", "xray_flags": ""}),
         "pred": torch.tensor([0.4, 0.6])},
    ]
    engine = Engine(lambda e, b: outputs)

    @engine.on(Events.STARTED)
    def _overlay_of_one(e):  # what CamWriter records for the files it rendered
        setattr(e.state, CAM_PATHS_KEY, {"/a/x.dcm": "/o/cam/x.dcm-1234.png"})

    PredictionWriter(tmp_path, _network(0.7)).attach(engine)
    engine.run([0], max_epochs=1)
    assert _rows(tmp_path / "predictions.csv") == [
        ["image", "prob_pneumonia", "prediction", "threshold", "cam", "flags", "model_sha256", "site_profile_sha256"],
        ["/a/x.dcm", "0.800000", "PNEUMONIA", "0.700000", "/o/cam/x.dcm-1234.png", "view:LL", "", ""],
        ["/a/x.jpeg", "0.600000", "NORMAL", "0.700000", "", "", "", ""],
    ]
    assert _rows(tmp_path / "errors.csv") == [["image", "error"]]


def test_prediction_writer_with_nothing_readable_writes_errors_then_fails(tmp_path):
    engine = Engine(lambda e, b: [])

    @engine.on(Events.STARTED)
    def _refused(e):  # what XrayEvaluator keeps for refused inputs
        setattr(e.state, REFUSED_KEY, [Refusal("/a/report.pdf", "not an image", 0)])

    PredictionWriter(tmp_path, _network(0.5)).attach(engine)
    with pytest.raises(NoReadableInputError, match="1 refused"):
        engine.run([0], max_epochs=1)
    assert _rows(tmp_path / "errors.csv") == [["image", "error"], ["/a/report.pdf", "not an image"]]
    assert _rows(tmp_path / "predictions.csv") == [["image", "prob_pneumonia", "prediction", "threshold", "cam", "flags",
                                                    "model_sha256", "site_profile_sha256"]]


def test_a_nan_score_is_refused_never_decided(tmp_path):
    """A non-finite probability goes to errors.csv with a reason; the other films are written as usual."""
    outputs = [
        {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/a/nan.png"}),
         "pred": torch.tensor([float("nan"), float("nan")])},
        {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/a/ok.png"}),
         "pred": torch.tensor([0.9, 0.1])},
    ]
    engine = Engine(lambda e, b: outputs)

    @engine.on(Events.STARTED)
    def _no_refusals_yet(e):  # what XrayEvaluator starts each run with
        setattr(e.state, REFUSED_KEY, [])

    PredictionWriter(tmp_path, _network(0.5)).attach(engine)
    engine.run([0], max_epochs=1)
    assert [row[0] for row in _rows(tmp_path / "predictions.csv")[1:]] == ["/a/ok.png"]
    (error,) = _rows(tmp_path / "errors.csv")[1:]
    assert error[0] == "/a/nan.png" and "no usable answer" in error[1] and "/a/" not in error[1]
