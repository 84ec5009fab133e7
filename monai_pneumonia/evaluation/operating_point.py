"""The operating threshold rules: which probability turns into a pneumonia decision, and why.

``"bayes-guarded"`` is the rule of the shipped model (see ``docs/model-v2-protocol.md``): the Bayes decision for
the prior and costs the loss trains for (balanced classes, equal costs: 0.5), raised when the shifted validation
shows that 0.5 keeps too few normals. It does not search for a point in the gap between the classes of a nearly
separable validation split, so it does not move from one epoch to the next by one or two images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .metrics import select_threshold

__all__ = ["BAYES_THRESHOLD", "THRESHOLD_RULES", "choose_threshold", "guarded_bayes_threshold"]

#: The Bayes decision threshold of a balanced-prior, equal-cost classifier on its pneumonia probability.
BAYES_THRESHOLD = 0.5

#: Every rule :func:`choose_threshold` knows.
THRESHOLD_RULES = ("bayes-guarded", "youden", "sensitivity", "specificity")


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
    guard = select_threshold(labels, probs, method="specificity", target=min_specificity)
    return float(max(bayes_threshold, guard))


def choose_threshold(labels: Any, probs: Any, method: str = "bayes-guarded", **kw: float) -> float:
    """Choose the operating threshold on validation predictions (never the test split) by a named rule.

    Args:
        labels: 0/1 ground truth with both classes.
        probs: pneumonia probabilities.
        method: one of :data:`THRESHOLD_RULES`; the last three are
            :func:`~monai_pneumonia.evaluation.select_threshold`'s methods.
        kw: the rule's options (``min_specificity`` for ``"bayes-guarded"``, ``target`` for the others).

    Returns:
        The threshold, in (0, 1).

    Raises:
        ValueError: an unknown rule, or what the rule raises (e.g. a single class).
    """
    if method not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {method!r}; choose one of {THRESHOLD_RULES}")
    if method == "bayes-guarded":
        return guarded_bayes_threshold(np.asarray(labels), np.asarray(probs), **kw)
    return select_threshold(labels, probs, method=method, **kw)
