"""Evaluation of the pneumonia classifier: metrics with confidence intervals and a self-contained HTML report.

Pure statistics and the report only; the model-development studies built on them live in
:mod:`monai_pneumonia.studies`.
"""

from .cam_regions import cam_energy_shares, region_areas, region_masks
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
from .operating_point import (
    BAYES_THRESHOLD,
    THRESHOLD_RULES,
    choose_threshold,
    fit_temperature,
    guarded_bayes_threshold,
)
from .report import write_report
from .shifts import ACQUISITION_SHIFTS, acquisition_shift

__all__ = [
    "ACQUISITION_SHIFTS",
    "BAYES_THRESHOLD",
    "THRESHOLD_RULES",
    "cam_energy_shares",
    "choose_threshold",
    "fit_temperature",
    "guarded_bayes_threshold",
    "region_areas",
    "region_masks",
    "acquisition_shift",
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
