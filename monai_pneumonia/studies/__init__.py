"""Model-development studies: tools that judged candidate models, apart from the product that ships one.

Stress validation under acquisition shifts, source-held-out threshold transfer, the Grad-CAM shortcut
measurement and distillation (with its soft-target transform). They sit above :mod:`monai_pneumonia.inference`
and run through ``monai-pneumonia study ...`` or the overlays in ``bundle/configs/experiments/``; nothing in the
product imports them.
"""

from monai_pneumonia.studies.distillation import (
    TeacherPredictionError,
    TeacherPrepareBatch,
    attach_teacher,
    load_teachers,
    mean_predictions,
)
from monai_pneumonia.studies.shortcut import shortcut_measurement
from monai_pneumonia.studies.soft_target import SoftTarget, SoftTargetD, SoftTargetd, SoftTargetDict, mix_soft_targets
from monai_pneumonia.studies.stress import (
    NORMAL_SERIES,
    acquisition_series,
    format_table,
    pool_predictions,
    read_predictions,
    rescore_stress,
    shipping_decision,
    stress_report,
    stress_test,
)
from monai_pneumonia.studies.transfer import TRANSFER_RULES, format_transfer, source_transfer

__all__ = [
    "NORMAL_SERIES",
    "SoftTarget",
    "SoftTargetD",
    "SoftTargetDict",
    "SoftTargetd",
    "TRANSFER_RULES",
    "TeacherPredictionError",
    "TeacherPrepareBatch",
    "acquisition_series",
    "attach_teacher",
    "format_table",
    "format_transfer",
    "load_teachers",
    "mean_predictions",
    "mix_soft_targets",
    "pool_predictions",
    "read_predictions",
    "rescore_stress",
    "shipping_decision",
    "shortcut_measurement",
    "source_transfer",
    "stress_report",
    "stress_test",
]
