"""Soft distillation targets: the label mixed with a teacher's probabilities."""

from __future__ import annotations

import pytest
import torch

from monai_pneumonia.studies import SoftTarget, SoftTargetd


def test_target_mixes_one_hot_label_and_teacher():
    target = SoftTarget(num_classes=2, teacher_weight=0.5)(1, [0.4, 0.6])
    assert target.dtype == torch.float32
    torch.testing.assert_close(target, torch.tensor([0.2, 0.8]))


def test_binary_teacher_may_give_the_pneumonia_probability_alone():
    converter = SoftTarget(teacher_weight=0.25)
    torch.testing.assert_close(converter(torch.tensor(0), 0.8), converter(0, [0.2, 0.8]))
    torch.testing.assert_close(converter(0, 0.8), torch.tensor([0.75 + 0.25 * 0.2, 0.25 * 0.8]))


def test_weight_zero_is_the_hard_label_and_one_is_the_teacher():
    torch.testing.assert_close(SoftTarget(teacher_weight=0.0)(1, 0.1), torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(SoftTarget(teacher_weight=1.0)(1, 0.1), torch.tensor([0.9, 0.1]))


@pytest.mark.parametrize("teacher", [[0.5, 0.6], [1.2, -0.2], [float("nan"), 1.0], [0.3, 0.3, 0.4], 1.5])
def test_teacher_that_is_not_a_distribution_is_refused(teacher):
    with pytest.raises(ValueError, match="teacher probabilities"):
        SoftTarget()(0, teacher)


@pytest.mark.parametrize("kwargs", [{"teacher_weight": -0.1}, {"teacher_weight": 1.1}, {"num_classes": 1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SoftTarget(**kwargs)


def test_label_out_of_range_is_refused():
    with pytest.raises(ValueError, match="label 2 out of range"):
        SoftTarget()(2, 0.5)


def test_dictionary_version_replaces_the_label_and_names_the_file_on_error():
    item = {"image": "a.png", "label": 0, "teacher_prob": 0.3}
    out = SoftTargetd(keys="label", teacher_weight=0.5)(item)
    torch.testing.assert_close(out["label"], torch.tensor([0.85, 0.15]))
    assert item["label"] == 0  # the input item is not changed
    with pytest.raises(KeyError, match="a.png: no teacher prediction"):
        SoftTargetd()({"image": "a.png", "label": 0})
    with pytest.raises(ValueError, match="b.png: teacher probabilities"):
        SoftTargetd()({"image": "b.png", "label": 0, "teacher_prob": 2.0})
