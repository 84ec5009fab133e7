"""Soft training targets for the distillation study: the label mixed with a teacher's class probabilities.

Distillation (Hinton et al., 2015) trains one network on what an ensemble of networks predicts, so a single model
can keep most of the ensemble's gain at the cost of one. The teacher's probabilities are computed once, on the
un-augmented training images, and stored in the datalist item; this transform turns them, with the label, into the
class-probability target that ``torch.nn.CrossEntropyLoss`` accepts.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

__all__ = ["SoftTarget", "SoftTargetd", "SoftTargetD", "SoftTargetDict", "mix_soft_targets"]


def mix_soft_targets(labels: torch.Tensor, teacher: torch.Tensor, teacher_weight: float) -> torch.Tensor:
    """``(1 - teacher_weight) * one_hot(labels) + teacher_weight * teacher`` for a batch.

    Args:
        labels: ``(B,)`` or ``(B, 1)`` integer classes.
        teacher: ``(B, C)`` class probabilities.
        teacher_weight: share of the teacher, in [0, 1].

    Returns:
        ``(B, C)`` float32 targets for ``torch.nn.CrossEntropyLoss``.

    Raises:
        ValueError: ``labels`` are not one class index per row of ``teacher`` (e.g. already soft targets).
    """
    if labels.numel() != teacher.shape[0]:
        raise ValueError(f"expected one class index per image ({teacher.shape[0]}), got labels of shape "
                         f"{tuple(labels.shape)}: are the labels already soft targets?")
    one_hot = torch.nn.functional.one_hot(labels.reshape(-1).long(), teacher.shape[-1]).to(teacher.dtype)
    return ((1.0 - teacher_weight) * one_hot + teacher_weight * teacher).float()


class SoftTarget(Transform):
    """``(1 - teacher_weight) * one_hot(label) + teacher_weight * teacher``, a vector of class probabilities.

    Args:
        num_classes: number of classes.
        teacher_weight: share of the teacher in the target, in [0, 1].
    """

    def __init__(self, num_classes: int = 2, teacher_weight: float = 0.5) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if not 0.0 <= teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {teacher_weight!r}")
        self.num_classes, self.teacher_weight = num_classes, teacher_weight

    def __call__(self, label: Any, teacher: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
        """Mix one label with the teacher's prediction for the same image.

        Args:
            label: the integer class.
            teacher: the teacher's probabilities, one per class; with two classes, the probability of class 1
                (pneumonia) alone is also accepted.

        Returns:
            A float32 tensor of ``num_classes`` probabilities summing to 1.

        Raises:
            ValueError: the label is out of range, or the teacher's probabilities are not a distribution.
        """
        label = torch.as_tensor(label)
        if label.numel() != 1:
            raise ValueError(f"expected one class index, got a label of shape {tuple(label.shape)}")
        index = int(label.reshape(-1)[0])
        if not 0 <= index < self.num_classes:
            raise ValueError(f"label {index} out of range [0, {self.num_classes})")
        probs = torch.as_tensor(teacher, dtype=torch.float64).reshape(-1)
        if probs.numel() == 1 and self.num_classes == 2:
            probs = torch.cat([1.0 - probs, probs])
        if probs.numel() != self.num_classes or not torch.isfinite(probs).all() or (probs < 0).any() or (
            abs(float(probs.sum()) - 1.0) > 1e-4
        ):
            raise ValueError(f"teacher probabilities must be {self.num_classes} values in [0, 1] summing to 1, "
                             f"got {probs.tolist()}")
        return mix_soft_targets(torch.tensor([index]), probs[None], self.teacher_weight)[0]


class SoftTargetd(MapTransform):
    """Dictionary version of :class:`SoftTarget`: replaces the label with the soft target.

    Args:
        keys: the label key(s).
        teacher_key: the key of the teacher's probabilities in the same item.
        num_classes: number of classes.
        teacher_weight: share of the teacher in the target, in [0, 1].
        allow_missing_keys: do not raise for a missing label key.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        teacher_key: str = "teacher_prob",
        num_classes: int = 2,
        teacher_weight: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.teacher_key = teacher_key
        self.converter = SoftTarget(num_classes, teacher_weight)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.teacher_key not in d:
            raise KeyError(f"{d.get('image', 'item')}: no teacher prediction '{self.teacher_key}' to distil from")
        for key in self.key_iterator(d):
            try:
                d[key] = self.converter(d[key], d[self.teacher_key])
            except ValueError as error:
                raise ValueError(f"{d.get('image', 'item')}: {error}") from error
        return d


SoftTargetD = SoftTargetDict = SoftTargetd
