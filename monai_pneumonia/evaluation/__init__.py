"""Evaluation of the pneumonia classifier: metrics with confidence intervals and a self-contained HTML report.

Pure statistics and the report only; the model-development studies built on them live in
:mod:`monai_pneumonia.studies`.
"""

from .cam_regions import cam_energy_shares, region_areas, region_masks
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

__all__ = [
    "ACQUISITION_SHIFTS",
    "BAYES_THRESHOLD",
    "acquisition_shift",
    "binary_metrics",
    "calibration_bins",
    "cam_energy_shares",
    "choose_threshold",
    "confusion_counts",
    "fit_temperature",
    "gallery_cases",
    "guarded_bayes_threshold",
    "operating_points",
    "paired_auc_difference",
    "region_areas",
    "region_masks",
    "roc_auc",
    "roc_curve",
    "wilson_interval",
    "write_report",
]
