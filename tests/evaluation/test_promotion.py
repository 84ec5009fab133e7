"""The promotion gate's rule on scores with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_pneumonia.evaluation.promotion import BALANCED_ACCURACY_MARGIN, promotion_verdict

RNG = np.random.default_rng(0)
LABELS = np.array([0] * 60 + [1] * 60)
#: A good model: pneumonia scores well above normal ones, with overlap.
GOOD = np.clip(np.where(LABELS == 1, 0.7, 0.3) + RNG.normal(0, 0.15, LABELS.size), 0, 1)


def test_the_same_scores_pass():
    verdict = promotion_verdict(LABELS, GOOD, 0.5, GOOD, 0.5, n_bootstrap=200)
    assert verdict["passed"] and verdict["reasons"] == [] and verdict["auc_difference"] == 0.0
    assert verdict["n"] == 120 and verdict["n_positive"] == 60
    json.dumps(verdict, allow_nan=False)  # strict JSON as the registry stores it


def test_a_candidate_ranking_worse_is_refused_by_the_paired_bootstrap():
    noisy = np.clip(GOOD + RNG.normal(0, 0.4, GOOD.size), 0, 1)
    verdict = promotion_verdict(LABELS, noisy, 0.5, GOOD, 0.5, n_bootstrap=500)
    assert verdict["auc_difference_ci95"][1] < 0 and not verdict["passed"]
    assert any("AUC" in reason for reason in verdict["reasons"])


def test_a_candidate_with_a_bad_threshold_is_refused_by_its_balanced_accuracy():
    """Same ranking (AUC difference 0), but at threshold 0.95 it calls almost nothing pneumonia."""
    verdict = promotion_verdict(LABELS, GOOD, 0.95, GOOD, 0.5, n_bootstrap=200)
    assert verdict["auc_difference"] == 0.0 and verdict["auc_difference_ci95"] == [0.0, 0.0]
    assert verdict["balanced_accuracy_difference"] < -BALANCED_ACCURACY_MARGIN and not verdict["passed"]
    assert [reason.split()[0] for reason in verdict["reasons"]] == ["balanced"]


def test_a_small_drop_within_the_margin_passes():
    verdict = promotion_verdict(LABELS, GOOD, 0.5, GOOD, 0.5, n_bootstrap=200, margin=1.0)
    assert verdict["passed"]
    slightly = promotion_verdict(LABELS, GOOD, 0.52, GOOD, 0.5, n_bootstrap=200, margin=0.5)
    assert slightly["passed"] and slightly["balanced_accuracy_difference"] <= 0.0


def test_without_a_shipped_model_it_passes_and_says_why():
    verdict = promotion_verdict(LABELS, GOOD, 0.5, n_bootstrap=200)
    assert verdict["passed"] and verdict["current"] is None and "no shipped model" in verdict["note"]


def test_single_class_films_cannot_decide():
    with pytest.raises(ValueError, match="both classes"):
        promotion_verdict(np.ones(10, int), np.linspace(0, 1, 10), 0.5, np.linspace(0, 1, 10), 0.5)
