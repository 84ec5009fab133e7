"""The acceptance verdict: criteria stated in advance, judged on cross-validated figures with 95% intervals.

PASS when the lower 95% bounds of sensitivity and specificity reach the criteria, FAIL when an upper bound falls
short, INSUFFICIENT when the sample cannot decide (or a class is too small to judge). Pure computation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from monai_pneumonia.evaluation.metrics import Z95

__all__ = ["CALIBRATION_EVENTS", "AcceptanceCriteria", "films_for_width", "verdict"]

#: Events per class below which a calibration (reliability) assessment is indicative only (Collins et al.;
#: Snell et al., J Clin Epidemiol 2021).
CALIBRATION_EVENTS = 100


@dataclass(frozen=True)
class AcceptanceCriteria:
    """What a site rule must show on the site's films, fixed before they are classified.

    Attributes:
        min_sensitivity: the lower 95% bound of sensitivity must reach this for PASS (default 0.90).
        min_specificity: likewise for specificity (default 0.80).
        min_per_class: fewer films than this in a class: INSUFFICIENT whatever the figures (default 20).
        target_ci_width: the interval width the report sizes the sample for (default 0.10).
    """

    min_sensitivity: float = 0.90
    min_specificity: float = 0.80
    min_per_class: int = 20
    target_ci_width: float = 0.10

    def __post_init__(self) -> None:
        for name in ("min_sensitivity", "min_specificity", "target_ci_width"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        if self.min_per_class < 1:
            raise ValueError(f"min_per_class must be >= 1, got {self.min_per_class!r}")

    def to_json(self) -> dict[str, Any]:
        """The criteria as stored in ``acceptance.json``."""
        return asdict(self)


def films_for_width(proportion: float | None, width: float, z: float = Z95) -> int | None:
    """Films of the class a proportion is measured on for a 95% interval of ``width`` (normal approximation).

    ``n = (2 z)² p (1 − p) / width²``, with ``p`` kept within [0.05, 0.95] so that a perfect score on a few films
    does not claim a tiny sample suffices.
    """
    if proportion is None:
        return None
    p = min(max(float(proportion), 0.05), 0.95)
    return int(math.ceil((2.0 * z) ** 2 * p * (1.0 - p) / width ** 2))


def verdict(metrics: dict[str, Any], criteria: AcceptanceCriteria) -> tuple[str, list[str]]:
    """PASS, FAIL or INSUFFICIENT for cross-validated metrics (:func:`~monai_pneumonia.evaluation.binary_metrics`).

    Args:
        metrics: the site rule's cross-validated figures, with ``sensitivity_ci95`` and ``specificity_ci95``.
        criteria: the acceptance criteria.

    Returns:
        ``(verdict, reasons)``: the verdict and one sentence per criterion explaining it.
    """
    reasons = []
    small = [f"{metrics[key]} {name} films (fewer than {criteria.min_per_class})"
             for key, name in (("n_negative", "normal"), ("n_positive", "pneumonia"))
             if metrics[key] < criteria.min_per_class]
    if small:
        return "INSUFFICIENT", [f"too few films to judge: {', '.join(small)}"]
    outcomes = []
    for name, minimum in (("sensitivity", criteria.min_sensitivity), ("specificity", criteria.min_specificity)):
        low, high = metrics[f"{name}_ci95"] or (0.0, 1.0)
        if low >= minimum:
            outcomes.append("pass")
            reasons.append(f"{name}: lower 95% bound {low:.3f} >= {minimum:.2f}")
        elif high < minimum:
            outcomes.append("fail")
            reasons.append(f"{name}: upper 95% bound {high:.3f} < {minimum:.2f}")
        else:
            outcomes.append("open")
            reasons.append(f"{name}: 95% interval [{low:.3f}, {high:.3f}] contains {minimum:.2f}: more films needed")
    if "fail" in outcomes:
        return "FAIL", reasons
    return ("PASS" if all(outcome == "pass" for outcome in outcomes) else "INSUFFICIENT"), reasons
