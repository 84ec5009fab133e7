"""Training, evaluation and inference workflow parts used by the bundle configs."""

from monai_pneumonia.workflows.batchnorm import BatchNormRecalibration
from monai_pneumonia.workflows.datasets import (
    REFUSED_KEY,
    RefusingDataset,
    collate_with_refusals,
    drop_last_batch,
    find_input_error,
    image_items,
)
from monai_pneumonia.workflows.distillation import (
    TeacherPredictionError,
    TeacherPrepareBatch,
    attach_teacher,
    load_teachers,
    mean_predictions,
)
from monai_pneumonia.workflows.evaluator import XrayEvaluator
from monai_pneumonia.workflows.handlers import (
    CAM_PATHS_KEY,
    CLASS_NAMES,
    PNEUMONIA_INDEX,
    CamWriter,
    EvaluationWriter,
    OperatingThresholdHandler,
    PredictionWriter,
    operating_threshold,
    pneumonia_probability,
    predicted_class,
    source_path,
)
from monai_pneumonia.workflows.progress import ProgressBar
from monai_pneumonia.workflows.resolution import ProgressiveResize
from monai_pneumonia.workflows.resume import STATE_PREFIX, BestModelState, latest_state_checkpoint

__all__ = [
    "CAM_PATHS_KEY",
    "BatchNormRecalibration",
    "STATE_PREFIX",
    "BestModelState",
    "CLASS_NAMES",
    "REFUSED_KEY",
    "CamWriter",
    "EvaluationWriter",
    "OperatingThresholdHandler",
    "PNEUMONIA_INDEX",
    "PredictionWriter",
    "ProgressBar",
    "ProgressiveResize",
    "RefusingDataset",
    "TeacherPrepareBatch",
    "TeacherPredictionError",
    "XrayEvaluator",
    "attach_teacher",
    "collate_with_refusals",
    "drop_last_batch",
    "find_input_error",
    "image_items",
    "latest_state_checkpoint",
    "load_teachers",
    "mean_predictions",
    "operating_threshold",
    "pneumonia_probability",
    "predicted_class",
    "source_path",
]
