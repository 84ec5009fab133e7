"""Tests of the binary metrics, their confidence intervals, threshold selection and calibration bins."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_roc_auc

from monai_pneumonia.evaluation.metrics import (
    binary_metrics,
    calibration_bins,
    confusion_counts,
    operating_points,
    paired_auc_difference,
    roc_auc,
    roc_curve,
    wilson_interval,
)
from monai_pneumonia.evaluation.operating_point import choose_threshold

CI_NAMES = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")

# 4 pneumonia, 6 normal; at 0.5: tp 3, fn 1, fp 2, tn 4
HAND_LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
HAND_PROBS = [0.9, 0.8, 0.6, 0.3, 0.7, 0.55, 0.4, 0.2, 0.1, 0.05]

# a unique Youden optimum between the normal at 0.35 and the pneumonia at 0.4 (sensitivity 1, specificity 0.8)
YOUDEN_LABELS = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
YOUDEN_PROBS = [0.1, 0.2, 0.3, 0.35, 0.6, 0.4, 0.5, 0.7, 0.8, 0.9]


def _synthetic(n_pos: int, n_neg: int, seed: int = 0, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    probs = np.clip(np.where(labels == 1, rng.normal(0.7, 0.2, labels.size), rng.normal(0.35, 0.2, labels.size)), 0, 1)
    return labels, (probs.round(decimals) if decimals is not None else probs)


def _plain_json(value) -> bool:
    """Only built-in JSON types (no numpy scalars), and no NaN."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or type(value) in (int, str, bool)


def test_hand_computed_confusion_matrix():
    m = binary_metrics(HAND_LABELS, HAND_PROBS, 0.5, n_bootstrap=200)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 1, 2, 4)
    assert (m["n"], m["n_positive"], m["n_negative"], m["threshold"]) == (10, 4, 6, 0.5)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["sensitivity"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(2 * 0.6 * 0.75 / (0.6 + 0.75))
    # pneumonia beating normal: 0.9 -> 6, 0.8 -> 6, 0.6 -> 5, 0.3 -> 3 of 6 normals each
    assert m["auc"] == pytest.approx(20 / 24)
    assert confusion_counts(HAND_LABELS, np.array(HAND_PROBS) >= 0.5) == {"tp": 3, "fp": 2, "tn": 4, "fn": 1}


def test_output_keys_and_json_serialisable():
    labels, probs = _synthetic(30, 20)
    m = binary_metrics(labels, probs, 0.5, n_bootstrap=100)
    expected = {"n", "n_positive", "n_negative", "threshold", "tp", "fp", "tn", "fn", *CI_NAMES}
    expected |= {f"{name}_ci95" for name in CI_NAMES}
    assert expected <= set(m)
    assert _plain_json(m), m
    json.dumps(m, allow_nan=False)


def test_wilson_interval_known_values():
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1.959964**2 / (10 + 1.959964**2))
    assert wilson_interval(5, 10) == pytest.approx([0.2366, 0.7634], abs=1e-4)
    assert wilson_interval(0, 0) is None


@pytest.mark.parametrize("decimals", [None, 1])
def test_auc_matches_monai_and_roc_curve(decimals):
    labels, probs = _synthetic(40, 25, seed=3, decimals=decimals)  # decimals=1 makes many ties
    expected = float(compute_roc_auc(torch.tensor(probs), torch.tensor(labels)))
    assert roc_auc(labels, probs) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, thresholds = roc_curve(labels, probs)
    assert np.trapezoid(tpr, fpr) == pytest.approx(expected, abs=1e-12)  # ties give the diagonal segment
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.isinf(thresholds[0]) and np.all(np.diff(thresholds[1:]) < 0)


def test_ci_contains_point_and_narrows_with_n():
    labels, probs = _synthetic(40, 25, seed=1)
    small = binary_metrics(labels, probs, 0.5, n_bootstrap=500)
    large = binary_metrics(np.tile(labels, 4), np.tile(probs, 4), 0.5, n_bootstrap=500)
    for name in CI_NAMES:
        for m in (small, large):
            low, high = m[f"{name}_ci95"]
            assert low <= m[name] <= high, name
        width = small[f"{name}_ci95"][1] - small[f"{name}_ci95"][0]
        assert large[f"{name}_ci95"][1] - large[f"{name}_ci95"][0] < 0.75 * width, name


def test_bootstrap_is_deterministic_for_a_seed():
    labels, probs = _synthetic(30, 20, seed=2)
    first = binary_metrics(labels, probs, 0.5, n_bootstrap=300, seed=7)
    assert binary_metrics(labels, probs, 0.5, n_bootstrap=300, seed=7) == first
    other = binary_metrics(labels, probs, 0.5, n_bootstrap=300, seed=8)
    assert other["auc_ci95"] != first["auc_ci95"]
    assert binary_metrics(labels, probs, 0.5, n_bootstrap=0)["auc_ci95"] is None


def test_single_class_and_zero_denominators():
    with pytest.warns(UserWarning, match="one class"):
        assert math.isnan(roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))
    m = binary_metrics([1, 1, 1], [0.2, 0.5, 0.9], 0.95, n_bootstrap=50)
    assert m["auc"] is None and m["auc_ci95"] is None
    assert m["specificity"] is None and m["specificity_ci95"] is None  # no normal films
    assert m["precision"] is None and m["precision_ci95"] is None  # nothing called pneumonia
    assert m["sensitivity"] == 0.0 and m["f1"] == 0.0
    assert any("AUC is undefined" in note for note in m["notes"])
    assert _plain_json(m)
    normals = binary_metrics([0, 0], [0.1, 0.7], 0.5, n_bootstrap=50)
    assert normals["sensitivity"] is None and normals["specificity"] == 0.5
    assert normals["f1"] == 0.0 and normals["f1_ci95"] is None  # 2tp / (2tp + fp + fn) = 0 / 1; no bootstrap
    assert _plain_json(normals)


@pytest.mark.parametrize(
    "labels, probs",
    [([0, 1], [0.1]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1, float("nan")]), ([0, 1], [0.1, 1.2]), ([], [])],
)
def test_invalid_inputs_raise(labels, probs):
    with pytest.raises(ValueError):
        binary_metrics(labels, probs, 0.5)


def test_youden_threshold_reproduces_optimum():
    threshold = choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS)
    assert threshold == pytest.approx(0.375)
    m = binary_metrics(YOUDEN_LABELS, YOUDEN_PROBS, threshold, n_bootstrap=0)
    assert (m["sensitivity"], m["specificity"]) == (1.0, 0.8)
    labels, probs = np.array(YOUDEN_LABELS), np.array(YOUDEN_PROBS)
    grid = np.linspace(0.001, 0.999, 999)
    youden = [(probs[labels == 1] >= t).mean() + (probs[labels == 0] < t).mean() - 1 for t in grid]
    assert max(youden) == pytest.approx(0.8)


def test_threshold_ties_and_equal_youden():
    labels = [0, 0, 1, 0, 1, 1]
    probs = [0.2, 0.5, 0.5, 0.5, 0.8, 0.8]  # a tie across classes at 0.5
    threshold = choose_threshold(labels, probs)
    assert threshold not in probs and 0 < threshold < 1
    m = binary_metrics(labels, probs, threshold, n_bootstrap=0)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(2 / 3)
    # J = 0.6 at 0.375, 0.5 and 0.65 in this example: the lowest (highest sensitivity) wins
    assert choose_threshold([0, 0, 0, 1, 0, 1, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.45, 0.55, 0.6, 0.7, 0.8, 0.9]) == (
        pytest.approx(0.35)
    )


def test_sensitivity_and_specificity_targets():
    assert choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS, "sensitivity", target=0.8) == pytest.approx(0.45)
    assert choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS, "specificity", target=1.0) == pytest.approx(0.65)
    labels, probs = _synthetic(60, 40, seed=4)
    threshold = choose_threshold(labels, probs, "sensitivity", target=0.97)
    m = binary_metrics(labels, probs, threshold, n_bootstrap=0)
    assert m["sensitivity"] >= 0.97
    assert binary_metrics(labels, probs, np.nextafter(probs[probs >= threshold].min(), 1), n_bootstrap=0)[
        "sensitivity"
    ] < 0.97  # the next operating point up loses the target: the threshold is the highest one keeping it


def test_choose_threshold_errors():
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS, "f2")
    with pytest.raises(ValueError, match="takes no target"):
        choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS, target=0.9)
    with pytest.raises(TypeError):
        choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS, "youden", margin=0.1)
    with pytest.raises(ValueError, match="target must be"):
        choose_threshold(YOUDEN_LABELS, YOUDEN_PROBS, "sensitivity", target=1.5)
    with pytest.raises(ValueError, match="both"):
        choose_threshold([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="no threshold"):
        choose_threshold([1, 0], [0.0, 0.5], "sensitivity", target=1.0)


def test_operating_points_reproduce_each_point_exactly():
    labels, probs = [0, 0, 1, 0, 1, 1], [0.2, 0.5, 0.5, 0.5, 0.8, 0.8]  # a tie across classes at 0.5
    thresholds, sensitivity, specificity = operating_points(labels, probs)
    assert list(thresholds) == pytest.approx([0.1, 0.35, 0.65, 0.9])
    for threshold, sens, spec in zip(thresholds, sensitivity, specificity, strict=True):
        m = binary_metrics(labels, probs, threshold, n_bootstrap=0)
        assert (m["sensitivity"], m["specificity"]) == pytest.approx((sens, spec))
    with pytest.raises(ValueError, match="both"):
        operating_points([1, 1], [0.2, 0.3])


def test_calibration_bins_hand_example():
    cal = calibration_bins([0, 0, 1, 1, 1, 0], [0.05, 0.15, 0.15, 0.95, 1.0, 0.3], n_bins=10)
    assert cal["counts"] == [1, 2, 0, 1, 0, 0, 0, 0, 0, 2]  # 0.3 falls in [0.3, 0.4), 1.0 in the last bin
    assert cal["mean_prob"][1] == pytest.approx(0.15) and cal["frac_positive"][1] == 0.5
    assert cal["mean_prob"][2] is None and cal["frac_positive"][2] is None
    assert cal["ece"] == pytest.approx((0.05 + 0.7 + 0.3 + 0.05) / 6)
    assert cal["mce"] == pytest.approx(0.35)
    assert len(cal["bin_edges"]) == 11 and _plain_json(cal)


def test_calibration_of_a_calibrated_model_is_small():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, 20000)
    labels = (rng.uniform(0, 1, probs.size) < probs).astype(int)
    assert calibration_bins(labels, probs)["ece"] < 0.02


def test_paired_auc_difference_of_a_model_with_itself_is_exactly_zero():
    labels, probs = _synthetic(60, 40)
    result = paired_auc_difference(labels, probs, probs, n_bootstrap=500)
    assert result["difference"] == 0.0 and result["difference_ci95"] == [0.0, 0.0]
    assert result["p_two_sided"] == 1.0


def test_paired_auc_difference_detects_a_better_model():
    labels, probs = _synthetic(200, 120, seed=1)
    worse = np.clip(probs + np.random.default_rng(2).normal(0.0, 0.15, probs.size), 0, 1)  # the ranking, blurred
    result = paired_auc_difference(labels, probs, worse, n_bootstrap=2000, seed=3)
    assert result["difference"] == pytest.approx(roc_auc(labels, probs) - roc_auc(labels, worse))
    low, high = result["difference_ci95"]
    assert 0.0 < low <= result["difference"] <= high
    assert result["p_two_sided"] < 0.05
    assert paired_auc_difference(labels, probs, worse, n_bootstrap=2000, seed=3) == result


def test_paired_auc_difference_interval_is_paired():
    """Two models that rank nearly alike: the difference varies far less than either AUC across replicates."""
    labels, probs = _synthetic(200, 120, seed=1)
    similar = np.clip(probs + np.random.default_rng(2).normal(0.0, 0.05, probs.size), 0, 1)
    low, high = paired_auc_difference(labels, probs, similar, n_bootstrap=2000, seed=3)["difference_ci95"]
    own_low, own_high = binary_metrics(labels, probs, 0.5, n_bootstrap=2000, seed=3)["auc_ci95"]
    assert high - low < 0.5 * (own_high - own_low)


@pytest.mark.parametrize(
    "labels, a, b, n_bootstrap",
    [([1, 1, 1], [0.2, 0.3, 0.4], [0.1, 0.2, 0.3], 10), ([0, 1], [0.2, 0.3], [0.1], 10), ([0, 1], [0.2, 0.3], [0.2, 0.3], 0)],
)
def test_paired_auc_difference_errors(labels, a, b, n_bootstrap):
    with pytest.raises(ValueError):
        paired_auc_difference(labels, a, b, n_bootstrap=n_bootstrap)
