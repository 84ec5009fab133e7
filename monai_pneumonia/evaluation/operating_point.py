"""The operating threshold rules: which probability turns into a pneumonia decision, and why.

``"bayes-guarded"`` is the rule of the shipped model (see ``docs/model-v2-protocol.md``): the Bayes decision for
the prior and costs the loss trains for (balanced classes, equal costs: 0.5), raised when the shifted validation
shows that 0.5 keeps too few normals. It does not search for a point in the gap between the classes of a nearly
separable validation split, so it does not move from one epoch to the next by one or two images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from monai_pneumonia.decision import THRESHOLD_RULES

from .metrics import select_threshold

__all__ = ["BAYES_THRESHOLD", "THRESHOLD_RULES", "choose_threshold", "fit_temperature", "guarded_bayes_threshold"]

#: The Bayes decision threshold of a balanced-prior, equal-cost classifier on its pneumonia probability.
BAYES_THRESHOLD = 0.5


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


def choose_threshold(labels: Any, probs: Any, method: str = "bayes-guarded", target: float | None = None,
                     **kw: float) -> float:
    """Choose the operating threshold on validation predictions (never the test split) by a named rule.

    Args:
        labels: 0/1 ground truth with both classes.
        probs: pneumonia probabilities.
        method: one of :data:`THRESHOLD_RULES`; the last three are
            :func:`~monai_pneumonia.evaluation.select_threshold`'s methods.
        target: the rule's target: the sensitivity or specificity to keep (``"sensitivity"``, ``"specificity"``),
            the specificity guard (``"bayes-guarded"``'s ``min_specificity``); default: the rule's own. Youden's
            rule takes none.
        kw: the rule's other options (e.g. ``bayes_threshold`` for ``"bayes-guarded"``).

    Returns:
        The threshold, in (0, 1).

    Raises:
        ValueError: an unknown rule, a target for Youden's rule, or what the rule raises (e.g. a single class).
    """
    if method not in THRESHOLD_RULES:
        raise ValueError(f"unknown threshold rule {method!r}; choose one of {THRESHOLD_RULES}")
    if target is not None:
        if method == "youden":
            raise ValueError("Youden's rule takes no target")
        kw["min_specificity" if method == "bayes-guarded" else "target"] = target
    if method == "bayes-guarded":
        return guarded_bayes_threshold(np.asarray(labels), np.asarray(probs), **kw)
    return select_threshold(labels, probs, method=method, **kw)


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
