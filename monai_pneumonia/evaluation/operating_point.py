"""The operating threshold rules: which probability turns into a pneumonia decision, and why.

Every rule picks one of the validation predictions' operating points
(:func:`~monai_pneumonia.evaluation.metrics.operating_points`), so the threshold reproduces that point exactly.
The rules are named in :data:`monai_pneumonia.decision.THRESHOLD_RULES` (the registry the command line and the
configs read); :func:`choose_threshold` runs one by name, by default :data:`~monai_pneumonia.decision.
DEFAULT_THRESHOLD_RULE` (Youden's J, the rule the shipped threshold was chosen by):

- ``"youden"``: maximises Youden's J = sensitivity + specificity - 1. Among thresholds with the same J the
  lowest one (the highest sensitivity: a missed pneumonia is the dangerous error) wins.
- ``"sensitivity"``: the highest threshold whose sensitivity is >= ``target`` (default 0.97), i.e. the best
  specificity that keeps that sensitivity.
- ``"specificity"``: the lowest threshold whose specificity is >= ``target`` (default 0.97), i.e. the best
  sensitivity that keeps that specificity.
- ``"bayes-guarded"``: the Bayes decision for the prior and costs the loss trains for (balanced classes, equal
  costs: 0.5), raised when the (shifted) validation shows that 0.5 keeps too few normals. It does not search for
  a point in the gap between the classes of a nearly separable validation split, so it does not move from one
  epoch to the next by one or two images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from monai_pneumonia.decision import DEFAULT_THRESHOLD_RULE, THRESHOLD_RULES

from .metrics import operating_points

__all__ = ["BAYES_THRESHOLD", "choose_threshold", "fit_temperature", "guarded_bayes_threshold"]

#: The Bayes decision threshold of a balanced-prior, equal-cost classifier on its pneumonia probability.
BAYES_THRESHOLD = 0.5
_TIE_TOL = 1e-12


def _youden(labels: Any, probs: Any) -> float:
    thresholds, sensitivity, specificity = operating_points(labels, probs)
    youden = sensitivity + specificity - 1.0
    return float(thresholds[np.flatnonzero(youden >= youden.max() - _TIE_TOL)[0]])


def _keeping(labels: Any, probs: Any, rate: str, target: float) -> float:
    """The threshold of the best operating point whose ``rate`` (sensitivity or specificity) is >= ``target``."""
    if not 0.0 < float(target) <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    thresholds, sensitivity, specificity = operating_points(labels, probs)
    achieved = sensitivity if rate == "sensitivity" else specificity
    ok = np.flatnonzero(achieved >= float(target) - _TIE_TOL)
    if ok.size == 0:
        raise ValueError(f"no threshold in (0, 1) reaches {rate} >= {target}")
    return float(thresholds[ok[-1] if rate == "sensitivity" else ok[0]])


def _sensitivity(labels: Any, probs: Any, target: float = 0.97) -> float:
    return _keeping(labels, probs, "sensitivity", target)


def _specificity(labels: Any, probs: Any, target: float = 0.97) -> float:
    return _keeping(labels, probs, "specificity", target)


def guarded_bayes_threshold(
    labels: Any, probs: Any, min_specificity: float = 0.95, bayes_threshold: float = BAYES_THRESHOLD
) -> float:
    """``max(bayes_threshold, lowest threshold with specificity >= min_specificity on these predictions)``.

    Args:
        labels: 0/1 ground truth with both classes (normally the pooled shifted validation).
        probs: pneumonia probabilities.
        min_specificity: the specificity the threshold must keep on these predictions.
        bayes_threshold: the decision point for the prior and costs the model was trained for.

    Returns:
        The threshold, in (0, 1).
    """
    return float(max(bayes_threshold, _specificity(labels, probs, target=min_specificity)))


#: The implementation of each rule of :data:`~monai_pneumonia.decision.THRESHOLD_RULES`, and the keyword its
#: ``target`` goes to.
_RULES: dict[str, tuple[Callable[..., float], str | None]] = {
    "youden": (_youden, None),
    "sensitivity": (_sensitivity, "target"),
    "specificity": (_specificity, "target"),
    "bayes-guarded": (guarded_bayes_threshold, "min_specificity"),
}


def choose_threshold(labels: Any, probs: Any, method: str = DEFAULT_THRESHOLD_RULE, target: float | None = None,
                     **kw: float) -> float:
    """Choose the operating threshold on validation predictions (never the test split) by a named rule.

    Args:
        labels: 0/1 ground truth with both classes.
        probs: pneumonia probabilities in [0, 1].
        method: one of :data:`~monai_pneumonia.decision.THRESHOLD_RULES` (see the module docstring); default
            Youden's J.
        target: the rule's target: the sensitivity or specificity to keep (``"sensitivity"``, ``"specificity"``,
            in (0, 1]), the specificity guard (``"bayes-guarded"``'s ``min_specificity``); default: the rule's
            own. Youden's rule takes none.
        kw: the rule's other options (e.g. ``bayes_threshold`` for ``"bayes-guarded"``).

    Returns:
        The threshold, in (0, 1).

    Raises:
        ValueError: an unknown rule, a target for Youden's rule, a single class, a target out of range, or no
            threshold in (0, 1) reaching the target (e.g. sensitivity 1.0 when a pneumonia image has
            probability exactly 0).
        TypeError: an option the rule does not take.
    """
    if method not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {method!r}; choose one of {THRESHOLD_RULES}")
    rule, target_keyword = _RULES[method]
    if target is not None:
        if target_keyword is None:
            raise ValueError(f"the {method!r} rule takes no target")
        kw[target_keyword] = target
    return float(rule(labels, probs, **kw))


def fit_temperature(labels: Any, probs: Any) -> dict[str, float]:
    """Temperature scaling of pneumonia probabilities: the ``T`` minimising the log loss of ``sigmoid(logit / T)``.

    Reported with the stress validation to show how over- or under-confident the model is. It never changes a
    decision at 0.5 (``logit 0`` stays 0), which is why Rule T does not depend on it.

    Args:
        labels: 0/1 ground truth.
        probs: pneumonia probabilities.

    Returns:
        ``{"temperature", "nll_before", "nll_after"}`` (mean negative log-likelihood per image).
    """
    y = torch.as_tensor(np.asarray(labels), dtype=torch.float64)
    p = torch.as_tensor(np.asarray(probs), dtype=torch.float64).clamp(1e-7, 1 - 1e-7)
    logits = torch.log(p) - torch.log1p(-p)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.functional.binary_cross_entropy_with_logits

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(logits / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return {
            "temperature": float(log_t.exp()),
            "nll_before": float(loss_fn(logits, y)),
            "nll_after": float(loss_fn(logits / log_t.exp(), y)),
        }
