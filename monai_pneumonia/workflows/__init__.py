"""Training, evaluation and inference workflow parts used by the bundle configs.

Two parts need scikit-learn and SciPy (through :mod:`monai_pneumonia.evaluation`), which the inference-only
MONAI Label environment lacks, and are therefore not imported here: configs name them by module,
``monai_pneumonia.workflows.threshold_handler.OperatingThresholdHandler`` (training) and
``monai_pneumonia.workflows.evaluation_writer.EvaluationWriter`` (evaluation).
"""

from monai_pneumonia.workflows.batchnorm import BatchNormRecalibration
from monai_pneumonia.workflows.cam_writer import CAM_PATHS_KEY, CamWriter
from monai_pneumonia.workflows.collector import ResultCollector
from monai_pneumonia.workflows.datasets import (
    REFUSED_KEY,
    RefusingDataset,
    collate_with_refusals,
    drop_last_batch,
    find_input_error,
    image_items,
)
from monai_pneumonia.workflows.evaluator import XrayEvaluator
from monai_pneumonia.workflows.gate import AtypicalityGate
from monai_pneumonia.workflows.items import class_index, item_flags, source_path
from monai_pneumonia.workflows.prediction_writer import PredictionWriter
from monai_pneumonia.workflows.progress import ProgressBar
from monai_pneumonia.workflows.resolution import ProgressiveResize
from monai_pneumonia.workflows.resume import STATE_PREFIX, BestModelState, latest_state_checkpoint

__all__ = [
    "AtypicalityGate",
    "CAM_PATHS_KEY",
    "BatchNormRecalibration",
    "STATE_PREFIX",
    "BestModelState",
    "REFUSED_KEY",
    "CamWriter",
    "PredictionWriter",
    "ProgressBar",
    "ProgressiveResize",
    "ResultCollector",
    "RefusingDataset",
    "XrayEvaluator",
    "class_index",
    "collate_with_refusals",
    "drop_last_batch",
    "find_input_error",
    "image_items",
    "item_flags",
    "latest_state_checkpoint",
    "source_path",
]
