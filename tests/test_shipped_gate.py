"""The shipped gate: its sidecar and drift reference belong to the shipped model, and the docs state its limits."""

from __future__ import annotations

import json

from monai_pneumonia.networks.atypicality import load_reference
from monai_pneumonia.results import file_sha256
from tests.conftest import REPO

MODELS = REPO / "bundle" / "models"


def test_the_shipped_sidecar_is_version_4_bound_to_the_shipped_model_and_documented():
    reference = load_reference(MODELS / "model.pt")  # raises if made for another model
    assert reference is not None and reference.combine == "max" and reference.detector is not None
    assert reference.layer_names == ("layer1", "layer2", "layer3", "layer4") and reference.needs_grid
    assert "benign variant" in reference.rule and "99th percentile" in reference.detector.rule
    doc = (REPO / "docs" / "intended-use-gate.md").read_text(encoding="utf-8")
    assert f"flag limit ({reference.flag_limit:.1f})" in doc
    assert f"refusal limit ({reference.refuse_limit:.1f})" in doc
    assert f"**{reference.detector.flag_limit:.2f}**" in doc


def test_the_shipped_drift_reference_belongs_to_the_shipped_model():
    reference = json.loads((MODELS / "model.reference.json").read_text())
    assert reference["model_sha256"] == file_sha256(MODELS / "model.pt")
    assert reference["count"] == 525 and reference["summary"]["refused"] == 0
