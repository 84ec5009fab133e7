"""Evaluation of the pneumonia classifier: metrics with confidence intervals and a self-contained HTML report."""

from .metrics import (
    binary_metrics,
    calibration_bins,
    confusion_counts,
    paired_auc_difference,
    roc_auc,
    roc_curve,
    select_threshold,
    wilson_interval,
)
from .report import write_report
from .shifts import ACQUISITION_SHIFTS, acquisition_shift
from .stress import format_table, read_predictions, stress_test

__all__ = [
    "ACQUISITION_SHIFTS",
    "acquisition_shift",
    "format_table",
    "read_predictions",
    "stress_test",
    "binary_metrics",
    "calibration_bins",
    "confusion_counts",
    "paired_auc_difference",
    "roc_auc",
    "roc_curve",
    "select_threshold",
    "wilson_interval",
    "write_report",
]
