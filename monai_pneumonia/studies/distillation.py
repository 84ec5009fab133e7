"""The distillation study: an ensemble's probabilities as soft training targets.

None of the distilled candidates shipped (``docs/research/model-v2-protocol.md``); the study is kept so that its
results can be reproduced. Two ways, each an overlay of ``train.json`` under ``bundle/configs/experiments/``:

* ``distill.json``: the teachers' probabilities on the un-augmented training images, read once from the
  ``predictions.csv`` that ``monai-pneumonia evaluate --split training`` writes per model (:func:`attach_teacher`,
  then :class:`~monai_pneumonia.studies.SoftTargetd`); no teacher runs during training.
* ``distill_online.json``: the teacher networks run on every augmented batch (:class:`TeacherPrepareBatch`), so
  teacher and student see the same view ("consistent teaching", Beyer et al., 2022), at the cost of their forward
  passes.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.engines import PrepareBatch, default_prepare_batch
from monai.inferers import Inferer

from monai_pneumonia.inferers import AutocastInferer
from monai_pneumonia.networks.checkpoint import load_weights
from monai_pneumonia.results import read_predictions
from monai_pneumonia.studies.soft_target import mix_soft_targets

__all__ = ["TeacherPrepareBatch", "TeacherPredictionError", "attach_teacher", "load_teachers", "mean_predictions"]


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
    if not paths:
        raise TeacherPredictionError("no teacher predictions given")
    reference, total = None, None
    for path in paths:
        try:
            images, labels, probs = read_predictions(path)
        except (OSError, KeyError, ValueError) as error:
            detail = f"no column {error}" if isinstance(error, KeyError) else getattr(error, "strerror", None) or error
            raise TeacherPredictionError(f"{path}: not a labelled predictions.csv ({detail})") from error
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


def load_teachers(network: torch.nn.Module, checkpoints: Sequence[str | os.PathLike],
                  device: str | torch.device = "cpu") -> list[torch.nn.Module]:
    """Frozen copies of ``network`` with each checkpoint's weights, in evaluation mode.

    A teacher must have the student's architecture and have been trained on the same preprocessing (``intensity``,
    image size): it scores the student's batches.

    Args:
        network: the configured network (``network_def``); it is copied, not changed.
        checkpoints: one bundle ``model.pt`` per teacher.
        device: where the teachers run.

    Returns:
        The teachers.

    Raises:
        ValueError: no checkpoint given, or one that does not fit the network (teachers share the student's
            ``network_def`` and preprocessing).
        FileNotFoundError: a checkpoint is missing.
    """
    if not checkpoints:
        raise ValueError("no teacher checkpoints given")
    teachers = []
    for path in checkpoints:
        try:
            teacher = load_weights(copy.deepcopy(network), path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{path}: no teacher checkpoint") from error
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"{path}: not a teacher for this network_def (teachers share the student's network "
                             f"and preprocessing): {str(error).splitlines()[0]}") from error
        teacher = teacher.to(device).eval()
        teacher.requires_grad_(False)
        teachers.append(teacher)
    return teachers


class TeacherPrepareBatch(PrepareBatch):
    """A trainer's ``prepare_batch`` that replaces the labels with soft targets from teachers on the same batch.

    The targets are ``(1 - teacher_weight) * one_hot(label) + teacher_weight * mean(softmax(teacher(image)))``,
    computed on the augmented images the student is about to see.

    Args:
        teachers: frozen networks with the student's input and classes (:func:`load_teachers`).
        teacher_weight: share of the teachers in the target, in [0, 1].
        inferer: runs each teacher (default: :class:`~monai_pneumonia.inferers.AutocastInferer`, bfloat16 autocast
            and channels-last, as training does).
    """

    def __init__(self, teachers: Sequence[torch.nn.Module], teacher_weight: float = 0.5,
                 inferer: Inferer | None = None) -> None:
        if not teachers:
            raise ValueError("TeacherPrepareBatch needs at least one teacher")
        if not 0.0 <= teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight!r}")
        self.teachers, self.teacher_weight = list(teachers), teacher_weight
        self.inferer = inferer if inferer is not None else AutocastInferer()

    def __call__(self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
        with torch.no_grad():
            probs = torch.stack([torch.softmax(self.inferer(images, t).float(), dim=1) for t in self.teachers]).mean(0)
        return images, mix_soft_targets(labels, probs, self.teacher_weight)
