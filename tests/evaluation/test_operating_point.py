import numpy as np
import pytest

from monai_pneumonia.decision import DEFAULT_THRESHOLD_RULE, THRESHOLD_RULES
from monai_pneumonia.evaluation import (
    BAYES_THRESHOLD,
    choose_threshold,
    fit_temperature,
    guarded_bayes_threshold,
    operating_point,
)


def test_bayes_point_when_it_keeps_the_specificity():
    labels = np.array([0] * 20 + [1] * 20)
    probs = np.r_[np.linspace(0.01, 0.3, 20), np.linspace(0.6, 0.99, 20)]
    assert guarded_bayes_threshold(labels, probs) == BAYES_THRESHOLD
    assert choose_threshold(labels, probs, method="bayes-guarded") == BAYES_THRESHOLD


def test_raised_until_the_shifted_specificity_is_kept():
    labels = np.array([0] * 20 + [1] * 20)
    normals = np.r_[np.linspace(0.05, 0.45, 17), [0.55, 0.7, 0.8]]  # 3 of 20 normals above 0.5: specificity 0.85
    probs = np.r_[normals, np.linspace(0.6, 0.99, 20)]
    threshold = guarded_bayes_threshold(labels, probs, min_specificity=0.95)
    assert threshold > BAYES_THRESHOLD
    assert ((probs[:20] < threshold).mean()) >= 0.95
    assert threshold == pytest.approx(choose_threshold(labels, probs, method="specificity", target=0.95))
    assert choose_threshold(labels, probs, method="bayes-guarded", target=0.95) == threshold


def test_the_registry_default_is_youden_and_every_named_rule_runs():
    assert DEFAULT_THRESHOLD_RULE == "youden" and DEFAULT_THRESHOLD_RULE in THRESHOLD_RULES
    assert set(operating_point._RULES) == set(THRESHOLD_RULES)  # one registry: every name has its rule
    labels = np.array([0] * 20 + [1] * 20)
    normals = np.r_[np.linspace(0.05, 0.45, 17), [0.55, 0.7, 0.8]]
    probs = np.r_[normals, np.linspace(0.3, 0.99, 20)]
    chosen = {rule: choose_threshold(labels, probs, method=rule) for rule in THRESHOLD_RULES}
    assert choose_threshold(labels, probs) == chosen["youden"]
    assert chosen["youden"] != chosen["bayes-guarded"]  # the default is not the guarded Bayes rule
    assert all(0 < t < 1 for t in chosen.values())


def test_unknown_rules_fail():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.4, 0.35, 0.9])
    with pytest.raises(ValueError, match="unknown threshold rule"):
        choose_threshold(labels, probs, method="median")


def test_temperature_recovers_a_known_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_logits))).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * true_logits))  # logits three times too large
    fit = fit_temperature(labels, overconfident)
    assert fit["temperature"] == pytest.approx(3.0, rel=0.1)
    assert fit["nll_after"] < fit["nll_before"]
