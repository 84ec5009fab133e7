"""Evaluation of the pneumonia classifier: metrics with confidence intervals and a self-contained HTML report."""

from .metrics import (
    binary_metrics,
    calibration_bins,
    confusion_counts,
    roc_auc,
    roc_curve,
    select_threshold,
    wilson_interval,
)
from .report import write_report

__all__ = [
    "binary_metrics",
    "calibration_bins",
    "confusion_counts",
    "roc_auc",
    "roc_curve",
    "select_threshold",
    "wilson_interval",
    "write_report",
]
