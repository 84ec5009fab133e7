"""The site rules, their cross-validated measurement and the verdict (pure computation, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from monai_pneumonia.site import AcceptanceCriteria, SiteSample, fit_rule, measure_site, select_rule, verdict


def _sample(n_normal: int, n_pneumonia: int, separation: float, seed: int = 0) -> SiteSample:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n_normal, int), np.ones(n_pneumonia, int)]
    scores = expit(rng.normal(0, 1, labels.size) + separation * (labels - 0.5) + 1.0)
    return SiteSample([f"f{i}.png" for i in range(labels.size)], labels, scores)


def test_cross_validated_figures_are_not_resubstitution():
    """Scores unrelated to the labels: a threshold fitted on the films looks good on them, not on held-out ones."""
    cross_validated, resubstituted = [], []
    for seed in range(8):
        _, acceptance = measure_site(_sample(15, 15, separation=0.0, seed=seed), shipped_threshold=0.5,
                                     rule="threshold")
        cross_validated.append(acceptance["site_rule_cross_validated"]["accuracy"])
        resubstituted.append(acceptance["site_rule_resubstitution_not_an_estimate"]["accuracy"])
    assert np.mean(resubstituted) > np.mean(cross_validated) + 0.1
    assert np.mean(cross_validated) < 0.6  # chance level, as it must be for uninformative scores


def test_tiny_sample_is_insufficient_and_fits_nothing():
    sample = _sample(6, 6, separation=6.0)
    fit, acceptance = measure_site(sample, shipped_threshold=0.3)
    assert acceptance["verdict"] == "INSUFFICIENT"
    assert fit.rule == "shipped" and fit.threshold == 0.3


def test_verdict_pass_and_fail_on_large_samples():
    good = _sample(200, 200, separation=8.0, seed=1)
    _, acceptance = measure_site(good, shipped_threshold=0.5)
    assert acceptance["verdict"] == "PASS", acceptance["reasons"]
    bad = _sample(200, 200, separation=0.5, seed=1)
    _, acceptance = measure_site(bad, shipped_threshold=0.5, rule="shipped")
    assert acceptance["verdict"] == "FAIL", acceptance["reasons"]


def test_verdict_open_interval_is_insufficient():
    metrics = {"n_positive": 40, "n_negative": 40, "sensitivity_ci95": [0.85, 0.99], "specificity_ci95": [0.9, 1.0]}
    assert verdict(metrics, AcceptanceCriteria())[0] == "INSUFFICIENT"


def test_recalibrated_threshold_is_the_bayes_point_of_the_recalibration():
    sample = _sample(80, 120, separation=3.0, seed=2)
    fit = fit_rule("recalibrated", sample.labels, sample.probs, 0.5, cost_ratio=2.0)
    q = expit(fit.parameters["a"] + fit.parameters["b"] * logit(fit.threshold))
    assert q == pytest.approx(1 / 3, abs=1e-6)


def test_threshold_rule_moves_towards_the_site():
    """Shifted site: normals score high; the re-picked threshold is above the shipped one and keeps more normals."""
    sample = _sample(100, 100, separation=4.0, seed=4)  # scores centred above 0.5: the shipped 0.2 calls most pneumonia
    fit = fit_rule("threshold", sample.labels, sample.probs, 0.2)
    normals = sample.probs[sample.labels == 0]
    assert fit.threshold > 0.2
    assert np.mean(normals < fit.threshold) > np.mean(normals < 0.2)


def test_select_rule_records_each_candidates_cross_validated_cost():
    sample = _sample(60, 60, separation=4.0, seed=5)
    rule, selection = select_rule(sample.labels, sample.probs, shipped_threshold=0.05)
    assert set(selection["cv_cost"]) == {"shipped", "threshold", "recalibrated"}
    assert rule != "shipped"  # 0.05 calls nearly every normal pneumonia; any fitted rule costs less
    assert selection["cv_cost"][rule] == min(selection["cv_cost"].values()) or rule == "recalibrated"
