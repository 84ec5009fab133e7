"""Teacher predictions for distillation: an ensemble's probabilities attached to the training items.

``distill.json`` layers over ``train.json`` and trains on :class:`~monai_pneumonia.transforms.SoftTargetd` targets
made from these. The teacher is the mean of one or more models' probabilities, each read from the
``predictions.csv`` that ``monai-pneumonia evaluate --split training`` writes for that model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["TeacherPredictionError", "attach_teacher", "mean_predictions"]


class TeacherPredictionError(ValueError):
    """The teacher predictions do not match the training items (missing images, different labels)."""


def mean_predictions(paths: Sequence[str | os.PathLike]) -> dict[str, tuple[int, float]]:
    """The mean pneumonia probability of several models, per image.

    Args:
        paths: one ``predictions.csv`` per model, each over the same images.

    Returns:
        ``{real path of the image: (label, mean probability)}``.

    Raises:
        TeacherPredictionError: no file given, or the files do not cover the same images with the same labels.
    """
    from monai_pneumonia.evaluation.stress import read_predictions  # lazy: evaluation imports the workflows

    if not paths:
        raise TeacherPredictionError("no teacher predictions given")
    reference, total = None, None
    for path in paths:
        images, labels, probs = read_predictions(path)
        pairs = zip(labels.tolist(), probs.tolist(), strict=True)
        keyed = dict(zip((os.path.realpath(image) for image in images), pairs, strict=True))
        if len(keyed) != len(images):
            raise TeacherPredictionError(f"{path}: an image appears more than once")
        if reference is None:
            reference, total = {k: label for k, (label, _) in keyed.items()}, dict.fromkeys(keyed, 0.0)
        elif {k: label for k, (label, _) in keyed.items()} != reference:
            raise TeacherPredictionError(f"{path}: not the same images and labels as {paths[0]}")
        for key, (_, prob) in keyed.items():
            total[key] += prob
    return {key: (reference[key], value / len(paths)) for key, value in total.items()}


def attach_teacher(
    items: Sequence[Mapping], predictions: Sequence[str | os.PathLike], key: str = "teacher_prob"
) -> list[dict]:
    """Copies of ``items`` with the teachers' mean pneumonia probability under ``key``.

    Args:
        items: datalist items (``image``, ``label``).
        predictions: one ``predictions.csv`` per teacher model (see :func:`mean_predictions`).
        key: where to put the probability.

    Returns:
        New items, in the same order.

    Raises:
        TeacherPredictionError: an item has no teacher prediction, or its label differs from the teachers'.
    """
    teacher = mean_predictions(predictions)
    out = []
    for item in items:
        path = os.path.realpath(item["image"])
        if path not in teacher:
            raise TeacherPredictionError(f"{item['image']}: no teacher prediction in {predictions[0]}")
        label, prob = teacher[path]
        if label != int(item["label"]):
            raise TeacherPredictionError(f"{item['image']}: label {item['label']} but the teachers' file says {label}")
        out.append({**item, key: float(np.clip(prob, 0.0, 1.0))})
    return out
