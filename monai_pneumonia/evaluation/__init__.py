"""Evaluation of the pneumonia classifier: metrics with confidence intervals and a self-contained HTML report."""

from .metrics import (
    binary_metrics,
    calibration_bins,
    confusion_counts,
    operating_points,
    paired_auc_difference,
    roc_auc,
    roc_curve,
    wilson_interval,
)
from .operating_point import (
    BAYES_THRESHOLD,
    choose_threshold,
    fit_temperature,
    guarded_bayes_threshold,
)
from .report import gallery_cases, write_report
from .shifts import ACQUISITION_SHIFTS, acquisition_shift
from .shortcut import cam_energy_shares, region_areas, region_masks, shortcut_measurement
from .stress import (
    acquisition_series,
    format_table,
    pool_predictions,
    read_predictions,
    rescore_stress,
    shipping_decision,
    stress_report,
    stress_test,
)
from .transfer import TRANSFER_RULES, format_transfer, source_transfer

__all__ = [
    "ACQUISITION_SHIFTS",
    "BAYES_THRESHOLD",
    "TRANSFER_RULES",
    "acquisition_series",
    "cam_energy_shares",
    "choose_threshold",
    "fit_temperature",
    "format_transfer",
    "gallery_cases",
    "guarded_bayes_threshold",
    "pool_predictions",
    "region_areas",
    "region_masks",
    "rescore_stress",
    "shipping_decision",
    "stress_report",
    "shortcut_measurement",
    "acquisition_shift",
    "format_table",
    "read_predictions",
    "source_transfer",
    "stress_test",
    "binary_metrics",
    "calibration_bins",
    "confusion_counts",
    "paired_auc_difference",
    "roc_auc",
    "roc_curve",
    "operating_points",
    "wilson_interval",
    "write_report",
]
