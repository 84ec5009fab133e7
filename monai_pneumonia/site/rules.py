"""The site adaptation rules and the cross-validated choice between them (docs/research/site-adaptation.md).

Each rule turns a labelled site sample (labels, the model's pneumonia probabilities) into one threshold on the
model's own probability: ``shipped`` keeps the stored one, ``threshold`` minimises the expected cost at the site's
prevalence and cost ratio, ``recalibrated`` fits a logistic recalibration and takes the Bayes decision on it.
:func:`select_rule` chooses between them by stratified k-fold cross-validated cost, the rule written down before
its result. Pure computation: NumPy and scikit-learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.model_selection import StratifiedKFold

from monai_pneumonia.site_profile import SITE_RULES

__all__ = ["AUTO", "MIN_FIT_PER_CLASS", "RuleFit", "cross_validated_decisions", "expected_cost", "fit_rule",
           "select_rule"]

#: ``--rule auto``: the cross-validated choice of :func:`select_rule`.
AUTO = "auto"
#: Below this many films in either class nothing is fitted: the rule is ``shipped``.
MIN_FIT_PER_CLASS = 10
#: Simplicity order that breaks ties (a difference in cost below 1 / n).
_SIMPLICITY = ("shipped", "recalibrated", "threshold")
_EPS = 1e-6


@dataclass(frozen=True)
class RuleFit:
    """A rule fitted on some films: its threshold on the model's probability and its parameters."""

    rule: str
    threshold: float
    parameters: dict = field(default_factory=dict)


def expected_cost(labels: Any, decisions: Any, prevalence: float, cost_ratio: float) -> float:
    """``c·π·(1 − sensitivity) + (1 − π)·(1 − specificity)`` of 0/1 decisions (the rule's objective)."""
    y, d = np.asarray(labels).astype(bool), np.asarray(decisions).astype(bool)
    miss = float(np.mean(~d[y])) if y.any() else 0.0
    alarm = float(np.mean(d[~y])) if (~y).any() else 0.0
    return cost_ratio * prevalence * miss + (1.0 - prevalence) * alarm


def _cost_threshold(y: np.ndarray, p: np.ndarray, prevalence: float, cost_ratio: float) -> float:
    """The threshold minimising the empirical expected cost; ties: the middle of the tied range."""
    fpr, tpr, cuts = roc_curve(y, p, drop_intermediate=False)
    cost = cost_ratio * prevalence * (1.0 - tpr) + (1.0 - prevalence) * fpr
    best = np.flatnonzero(cost <= cost.min() + 1e-12)
    index = int(best[len(best) // 2])
    # cuts[index] is a score (decide s >= cut); put the threshold midway to the next lower score, inside (0, 1)
    upper = min(float(cuts[index]), 1.0)
    lower = float(cuts[index + 1]) if index + 1 < len(cuts) else 0.0
    return float(np.clip((upper + lower) / 2.0, _EPS, 1.0 - _EPS))


def fit_rule(rule: str, labels: Any, probs: Any, shipped_threshold: float, prevalence: float | None = None,
             cost_ratio: float = 1.0) -> RuleFit:
    """Fit one adaptation rule on labelled site films.

    Args:
        rule: one of :data:`~monai_pneumonia.site_profile.SITE_RULES`.
        labels: 0/1 ground truth (1 = pneumonia), both classes present (except for ``shipped``).
        probs: the model's pneumonia probabilities.
        shipped_threshold: the model's stored threshold.
        prevalence: the site's share of pneumonia films (default: the sample's).
        cost_ratio: cost of a missed pneumonia over the cost of a false alarm.

    Returns:
        The fitted rule.

    Raises:
        ValueError: an unknown rule, or a single class for a rule that fits.
    """
    y, p = np.asarray(labels).astype(int), np.asarray(probs, dtype=np.float64)
    sample_prevalence = float(y.mean()) if y.size else 0.0
    pi = sample_prevalence if prevalence is None else float(prevalence)
    knobs = {"prevalence": pi, "cost_ratio": float(cost_ratio)}
    if rule == "shipped":
        return RuleFit(rule, float(shipped_threshold), knobs)
    if rule not in SITE_RULES:
        raise ValueError(f"unknown site rule {rule!r}; choose one of {SITE_RULES} or {AUTO!r}")
    if y.all() or not y.any():
        raise ValueError(f"the {rule!r} rule needs both normal and pneumonia films")
    if rule == "threshold":
        return RuleFit(rule, _cost_threshold(y, p, pi, cost_ratio), knobs)
    score = logit(np.clip(p, _EPS, 1.0 - _EPS)).reshape(-1, 1)
    model = LogisticRegression(C=1e6, max_iter=1000).fit(score, y)  # (almost) unpenalised maximum likelihood
    a, b = float(model.intercept_[0]), float(model.coef_[0, 0])
    shift = float(logit(np.clip(pi, _EPS, 1 - _EPS)) - logit(np.clip(sample_prevalence, _EPS, 1 - _EPS)))
    if b <= 0.0:  # the probability no longer ranks the site's films: keep the model's own threshold
        return RuleFit("shipped", float(shipped_threshold), {**knobs, "note": "recalibration slope <= 0"})
    # q = sigmoid(a + shift + b·logit p) >= 1 / (1 + c)  <=>  logit p >= (-log c - a - shift) / b
    cut = (-np.log(cost_ratio) - a - shift) / b
    threshold = float(np.clip(expit(cut), _EPS, 1.0 - _EPS))
    return RuleFit(rule, threshold, {**knobs, "a": a + shift, "b": b})


def _folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    k = max(2, min(k, int(np.bincount(y, minlength=2).min())))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(y.size), y))


def cross_validated_decisions(labels: Any, probs: Any, rule: str, shipped_threshold: float,
                                  prevalence: float | None = None, cost_ratio: float = 1.0, k: int = 5,
                                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out decisions of a rule: fitted on k−1 folds, applied to the left-out fold, pooled.

    Returns:
        ``(decisions, thresholds)``: each film's 0/1 decision by the rule fitted without it, and the threshold
        that decided it.
    """
    y, p = np.asarray(labels).astype(int), np.asarray(probs, dtype=np.float64)
    decisions = np.zeros(y.size, dtype=int)
    thresholds = np.zeros(y.size)
    for train, test in _folds(y, k, seed):
        fit = fit_rule(rule, y[train], p[train], shipped_threshold, prevalence, cost_ratio)
        decisions[test] = p[test] >= fit.threshold
        thresholds[test] = fit.threshold
    return decisions, thresholds


def select_rule(labels: Any, probs: Any, shipped_threshold: float, prevalence: float | None = None,
                cost_ratio: float = 1.0, k: int = 5, seed: int = 0,
                candidates: tuple[str, ...] = SITE_RULES) -> tuple[str, dict[str, Any]]:
    """The pre-written selection rule: the candidate with the lowest k-fold cross-validated expected cost.

    Fewer than :data:`MIN_FIT_PER_CLASS` films in a class: ``shipped``. A cost difference below ``1 / n`` goes to
    the simpler rule (``shipped``, ``recalibrated``, ``threshold``).

    Returns:
        ``(rule, selection)``: the chosen rule and the record of how (``method``, ``k``, ``seed``, the
        cross-validated cost of each candidate).
    """
    y, p = np.asarray(labels).astype(int), np.asarray(probs, dtype=np.float64)
    pi = float(y.mean()) if prevalence is None else float(prevalence)
    counts = np.bincount(y, minlength=2)
    selection: dict[str, Any] = {"method": "lowest stratified k-fold cross-validated expected cost",
                                 "k": k, "seed": seed, "prevalence": pi, "cost_ratio": float(cost_ratio)}
    if counts.min() < MIN_FIT_PER_CLASS:
        selection["reason"] = (f"fewer than {MIN_FIT_PER_CLASS} films in a class ({int(counts[0])} normal, "
                               f"{int(counts[1])} pneumonia): nothing fitted")
        return "shipped", selection
    costs = {}
    for rule in candidates:
        decisions, _ = cross_validated_decisions(y, p, rule, shipped_threshold, prevalence, cost_ratio, k, seed)
        costs[rule] = expected_cost(y, decisions, pi, cost_ratio)
    selection["cv_cost"] = costs
    best = min(costs.values())
    tied = [rule for rule in _SIMPLICITY if rule in costs and costs[rule] <= best + 1.0 / y.size - 1e-12]
    return tied[0], selection
