"""The decision rule: class names, the positive (pneumonia) probability and the decision at a threshold.

Every place that turns a model output into an answer — the bundle's writers, the classifier, the evaluation
report, the DICOM SR builder and the network's own ``predict`` — uses these functions, so the rule has one home.
NumPy only: no torch import, so the service's report builders and the evaluation code can use it cheaply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["CLASS_NAMES", "DEFAULT_THRESHOLD_RULE", "PNEUMONIA_INDEX", "THRESHOLD_RULES", "NonFiniteScoreError",
           "class_name", "decide",
           "is_positive", "positive_probability"]

#: Names of the model's output channels, in order (pneumonia is the positive class).
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
#: Output channel of the pneumonia class.
PNEUMONIA_INDEX = 1
#: The registry of the rules that choose the operating threshold on validation predictions, by name (implemented
#: by :func:`monai_pneumonia.evaluation.choose_threshold`); here so that the command line and the configs can
#: name them without importing torch or scikit-learn.
THRESHOLD_RULES: tuple[str, ...] = ("youden", "sensitivity", "specificity", "bayes-guarded")
#: The rule the shipped threshold was chosen by, and every caller's default: Youden's J.
DEFAULT_THRESHOLD_RULE = "youden"


def positive_probability(pred: Any) -> float:
    """The pneumonia probability of one item's softmax output (a 2-vector: a tensor on any device, or NumPy)."""
    if hasattr(pred, "detach"):  # a torch tensor, on any device: to the CPU without importing torch
        pred = pred.detach().cpu()
        if pred.dtype.itemsize < 4:  # bfloat16 / float16 (autocast outputs): NumPy reads float32 exactly
            pred = pred.float()
    return float(np.asarray(pred, dtype=np.float64).reshape(-1)[PNEUMONIA_INDEX])


class NonFiniteScoreError(ValueError):
    """A probability or threshold that is NaN or infinite: no decision can be made (``NaN >= t`` would read NORMAL)."""


def is_positive(prob_pneumonia: Any, threshold: Any) -> Any:
    """``prob_pneumonia >= threshold``: the decision rule, elementwise for arrays (a NumPy bool or bool array).

    Raises:
        NonFiniteScoreError: a probability or the threshold is NaN or infinite.
    """
    prob, cut = np.asarray(prob_pneumonia), np.asarray(threshold)
    if not (np.isfinite(prob).all() and np.isfinite(cut).all()):
        shown = f"probability {prob.item()}" if prob.size == 1 else f"{int((~np.isfinite(prob)).sum())} non-finite"
        raise NonFiniteScoreError(f"no decision from a non-finite score ({shown}, threshold {cut.tolist()})")
    return prob >= cut


def decide(prob_pneumonia: float, threshold: float) -> int:
    """The class index decided at the operating threshold: 1 (pneumonia) when ``prob_pneumonia >= threshold``."""
    return int(is_positive(float(prob_pneumonia), float(threshold)))


def class_name(prob_pneumonia: float, threshold: float) -> str:
    """The class name decided at the operating threshold (``"PNEUMONIA"`` or ``"NORMAL"``)."""
    return CLASS_NAMES[decide(prob_pneumonia, threshold)]
