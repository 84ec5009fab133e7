"""The metrics on scikit-learn and SciPy report the figures of the former hand-written code.

``golden_metrics.json`` holds the outputs of the hand-written implementations (commit cdaad64) on fixed data with
tied scores and scores exactly on calibration-bin edges: ROC points, AUC, confusion counts, Wilson intervals,
calibration bins and the full ``binary_metrics`` dictionary (bootstrap included).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from monai_pneumonia.evaluation.metrics import (
    binary_metrics,
    calibration_bins,
    confusion_counts,
    roc_auc,
    roc_curve,
    wilson_interval,
)

GOLDEN = json.loads((Path(__file__).parent / "golden_metrics.json").read_text())
LABELS, PROBS = np.array(GOLDEN["labels"]), np.array(GOLDEN["probs"])
WILSON_CASES = [(0, 10), (10, 10), (3, 7), (1, 1), (57, 200)]


def _close(actual, expected) -> None:
    """Equal, or for floats within 1e-12 (Wilson bounds move in the last bits with SciPy's arithmetic)."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            _close(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            _close(a, e)
    elif isinstance(expected, float) and not isinstance(actual, str):
        assert actual == pytest.approx(expected, rel=1e-12, abs=1e-15) or (math.isnan(actual) and math.isnan(expected))
    else:
        assert actual == expected


def test_data_has_ties_and_edge_scores():
    assert len(np.unique(PROBS)) < len(PROBS) / 3 and {0.0, 0.3, 1.0} <= set(PROBS.tolist())


def test_roc_curve_and_auc_are_identical():
    fpr, tpr, thresholds = roc_curve(LABELS, PROBS)
    expected_fpr, expected_tpr, expected_thresholds = GOLDEN["roc"]
    assert fpr.tolist() == expected_fpr and tpr.tolist() == expected_tpr
    assert [("inf" if t == np.inf else t) for t in thresholds.tolist()] == expected_thresholds
    assert roc_auc(LABELS, PROBS) == GOLDEN["auc"]


def test_confusion_counts_are_identical():
    assert confusion_counts(LABELS, PROBS >= 0.5) == GOLDEN["confusion"]


def test_wilson_intervals_agree_to_the_last_digits():
    for (k, n), expected in zip(WILSON_CASES, GOLDEN["wilson"], strict=True):
        _close(wilson_interval(k, n), expected)


def test_calibration_and_binary_metrics_report_the_same_figures():
    _close(calibration_bins(LABELS, PROBS, n_bins=10), GOLDEN["calibration"])
    _close(binary_metrics(LABELS, PROBS, 0.5, n_bootstrap=200, seed=3), GOLDEN["binary"])


def test_single_class_still_warns_in_our_words():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fpr, tpr, _ = roc_curve([1, 1, 1], [0.2, 0.5, 0.9])
    assert np.isnan(fpr).all() and not np.isnan(tpr).any()
    assert [str(w.message) for w in caught] == ["roc_curve: only one class present in labels; the other rate is undefined (NaN)"]
