"""Handlers: threshold selection into the network, overlay naming."""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_pneumonia.evaluation import select_threshold
from monai_pneumonia.networks import AttentionResNet
from monai_pneumonia.workflows import CamWriter, OperatingThresholdHandler


def test_threshold_handler_stores_the_validation_threshold_in_the_network():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    probs = np.clip(np.where(labels == 1, 0.7, 0.3) + rng.normal(0, 0.2, 40), 0.01, 0.99)
    batches = [(probs[i : i + 8], labels[i : i + 8]) for i in range(0, 40, 8)]

    def step(engine, batch):
        return [{"pred": torch.tensor([1 - p, p]), "label": torch.nn.functional.one_hot(torch.tensor(y), 2)}
                for p, y in zip(*batch, strict=True)]

    engine = Engine(step)
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18)
    OperatingThresholdHandler(network).attach(engine)
    engine.run(batches, max_epochs=1)
    expected = select_threshold(labels, probs, method="youden")
    assert float(network.operating_threshold) == np.float32(expected)
    assert engine.state.metrics["val_threshold"] == expected
    assert 0 <= engine.state.metrics["val_specificity"] <= 1


def test_threshold_handler_leaves_the_threshold_when_validation_has_one_class():
    engine = Engine(lambda e, b: [{"pred": torch.tensor([0.2, 0.8]), "label": torch.tensor([0.0, 1.0])}])
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18)
    OperatingThresholdHandler(network).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert float(network.operating_threshold) == 0.5


def test_cam_overlay_names_keep_same_named_files_apart():
    first, second = CamWriter.overlay_name("/a/IM-1.dcm"), CamWriter.overlay_name("/b/IM-1.dcm")
    assert first != second and first.startswith("IM-1.dcm-") and first.endswith(".png")
    # the DICOM and the JPEG of one film in one folder: names that say which is which
    dicom, jpeg = CamWriter.overlay_name("/a/IM-1.dcm"), CamWriter.overlay_name("/a/IM-1.jpeg")
    assert dicom.startswith("IM-1.dcm-") and jpeg.startswith("IM-1.jpeg-")
    assert "/" not in CamWriter.overlay_name("/x/../../etc passwd.png")


def test_cam_writer_disabled_by_command_line_string():
    engine = Engine(lambda e, b: None)
    CamWriter("/nonexistent", network=torch.nn.Identity(), enabled="false").attach(engine)
    assert not engine.has_event_handler(CamWriter._save, Events.ITERATION_COMPLETED)
    assert engine._event_handlers[Events.ITERATION_COMPLETED] == []


def test_prediction_writer_columns_threshold_overlay_and_flags(tmp_path):
    """predictions.csv: the old three columns first, then threshold, cam (this run's overlay) and flags."""
    import csv

    from monai.data import MetaTensor

    from monai_pneumonia.workflows import CAM_PATHS_KEY, PredictionWriter

    network = torch.nn.Module()
    network.register_buffer("operating_threshold", torch.tensor(0.7))
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

    PredictionWriter(tmp_path, network).attach(engine)
    engine.run([0], max_epochs=1)
    with open(tmp_path / "predictions.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows == [
        ["image", "prob_pneumonia", "prediction", "threshold", "cam", "flags", "model_sha256", "site_profile_sha256"],
        ["/a/x.dcm", "0.800000", "PNEUMONIA", "0.700000", "/o/cam/x.dcm-1234.png", "view:LL", "", ""],
        ["/a/x.jpeg", "0.600000", "NORMAL", "0.700000", "", "", "", ""],
    ]
