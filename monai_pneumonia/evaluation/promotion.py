"""The promotion gate: is a candidate model worse than the shipped one on the same labelled films?

``monai-pneumonia promote`` scores both models on films the user names and applies this rule, fixed before any
candidate is scored. The candidate is **refused** when either holds:

1. **Ranking**: the upper end of the 95% interval of AUC(candidate) − AUC(current), from a paired stratified
   bootstrap on the same films (:func:`~monai_pneumonia.evaluation.metrics.paired_auc_difference`, 2,000
   replicates, seed 0), is below 0 — the candidate ranks these films worse beyond sampling noise.
2. **Decisions**: the candidate's balanced accuracy (the mean of sensitivity and specificity) at its own stored
   threshold is more than :data:`BALANCED_ACCURACY_MARGIN` below the current model's at its own threshold — the
   decisions a user sees get worse, whatever the ranking.

Otherwise it passes. A small sample rarely refuses on (1) (its interval is wide); it says so through the interval.
Pure statistics: the scores come from the caller.
"""

from __future__ import annotations

from typing import Any, Final

from monai_pneumonia.evaluation.metrics import binary_metrics, paired_auc_difference

__all__ = ["BALANCED_ACCURACY_MARGIN", "GATE_RULE", "promotion_verdict"]

#: Largest drop of balanced accuracy (candidate minus current, absolute) a candidate may show and still pass.
BALANCED_ACCURACY_MARGIN: Final = 0.02
#: The rule in one line, as stored with every verdict.
GATE_RULE: Final = (
    "refuse when the upper 95% bound of AUC(candidate) - AUC(current) (paired stratified bootstrap, {n} replicates, "
    "seed {seed}) is below 0, or when the candidate's balanced accuracy at its own threshold is more than "
    "{margin:g} below the current model's at its own threshold"
)
_REPORTED = ("accuracy", "sensitivity", "specificity", "auc")


def _operating_point(labels: Any, probs: Any, threshold: float) -> dict[str, Any]:
    """The figures of one model at its own threshold (Wilson intervals; no bootstrap)."""
    metrics = binary_metrics(labels, probs, threshold, n_bootstrap=0)
    if metrics["sensitivity"] is None or metrics["specificity"] is None:
        raise ValueError("the promotion films must hold both classes (NORMAL and PNEUMONIA)")
    point = {name: metrics[name] for name in _REPORTED}
    point.update({f"{name}_ci95": metrics[f"{name}_ci95"] for name in ("accuracy", "sensitivity", "specificity")})
    point["balanced_accuracy"] = (metrics["sensitivity"] + metrics["specificity"]) / 2.0
    point["threshold"] = float(threshold)
    return point


def promotion_verdict(
    labels: Any,
    candidate_probs: Any,
    candidate_threshold: float,
    current_probs: Any | None = None,
    current_threshold: float | None = None,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    margin: float = BALANCED_ACCURACY_MARGIN,
) -> dict[str, Any]:
    """Apply the gate to the two models' pneumonia probabilities on the same films.

    Args:
        labels: 0/1 ground truth of the films (1 = pneumonia); both classes must be present.
        candidate_probs: the candidate's probabilities, in the order of ``labels``.
        candidate_threshold: the candidate's stored operating threshold.
        current_probs: the shipped model's probabilities for the same films; ``None`` when there is no shipped
            model (the candidate then passes, and the verdict says there was nothing to compare with).
        current_threshold: the shipped model's stored threshold.
        n_bootstrap: replicates of the paired bootstrap.
        seed: its seed (the same seed gives the same interval).
        margin: the balanced-accuracy margin of rule 2.

    Returns:
        A JSON-serialisable dict: ``passed`` (bool), ``reasons`` (why it is refused; empty when it passes),
        ``rule``, ``n``, ``n_positive``, ``n_negative``, ``candidate`` and ``current`` (accuracy, sensitivity,
        specificity with Wilson 95% intervals, AUC, balanced accuracy, threshold; ``current`` is ``None`` without
        a shipped model), ``auc_difference``, ``auc_difference_ci95``, ``balanced_accuracy_difference``, ``note``.

    Raises:
        ValueError: the films hold a single class, lengths differ, or a score is not a finite probability.
    """
    candidate = _operating_point(labels, candidate_probs, candidate_threshold)
    n_positive = int(sum(int(label) for label in labels))
    verdict: dict[str, Any] = {
        "rule": GATE_RULE.format(n=n_bootstrap, seed=seed, margin=margin),
        "n": len(candidate_probs),
        "n_positive": n_positive,
        "n_negative": len(candidate_probs) - n_positive,
        "candidate": candidate,
        "current": None,
        "auc_difference": None,
        "auc_difference_ci95": None,
        "balanced_accuracy_difference": None,
        "passed": True,
        "reasons": [],
        "note": None,
    }
    if current_probs is None:
        verdict["note"] = "no shipped model to compare with: the rule was not applied"
        return verdict
    if current_threshold is None:
        raise ValueError("current_threshold is needed with current_probs")
    current = _operating_point(labels, current_probs, current_threshold)
    paired = paired_auc_difference(labels, candidate_probs, current_probs, n_bootstrap=n_bootstrap, seed=seed)
    low, high = paired["difference_ci95"]
    drop = candidate["balanced_accuracy"] - current["balanced_accuracy"]
    verdict.update(current=current, auc_difference=paired["difference"], auc_difference_ci95=[low, high],
                   balanced_accuracy_difference=drop)
    if high < 0.0:
        verdict["reasons"].append(
            f"AUC {candidate['auc']:.3f} vs {current['auc']:.3f}: the difference {paired['difference']:+.3f} "
            f"(95% CI {low:+.3f} to {high:+.3f}) is below 0")
    if drop < -margin:
        verdict["reasons"].append(
            f"balanced accuracy {candidate['balanced_accuracy']:.3f} vs {current['balanced_accuracy']:.3f} "
            f"({drop:+.3f}, more than {margin:g} below)")
    verdict["passed"] = not verdict["reasons"]
    return verdict
