"""Teacher predictions for distillation: the ensemble mean attached to the training items."""

from __future__ import annotations

import csv

import pytest
import torch

from monai_pneumonia.inferers import AutocastInferer
from monai_pneumonia.studies import (
    TeacherPredictionError,
    TeacherPrepareBatch,
    attach_teacher,
    load_teachers,
    mean_predictions,
)
from tests.conftest import configured_network


def _predictions(path, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["image", "label", "prob_pneumonia", "prediction"])
        for image, label, prob in rows:
            writer.writerow([image, label, prob, "PNEUMONIA" if prob >= 0.5 else "NORMAL"])
    return path


@pytest.fixture()
def teachers(tmp_path):
    images = [str(tmp_path / name) for name in ("a.png", "b.png", "c.png")]
    first = _predictions(tmp_path / "first.csv", [(images[0], 0, 0.1), (images[1], 1, 0.9), (images[2], 1, 0.4)])
    second = _predictions(tmp_path / "second.csv", [(images[2], 1, 0.8), (images[0], 0, 0.3), (images[1], 1, 0.7)])
    return images, [first, second]


def test_mean_is_taken_per_image_whatever_the_row_order(teachers):
    images, paths = teachers
    mean = mean_predictions(paths)
    assert mean[images[0]] == (0, pytest.approx(0.2))
    assert mean[images[1]] == (1, pytest.approx(0.8))
    assert mean[images[2]] == (1, pytest.approx(0.6))


def test_attached_in_item_order_with_the_other_keys_kept(teachers):
    images, paths = teachers
    items = [{"image": images[2], "label": 1, "patient": "p2"}, {"image": images[0], "label": 0, "patient": "p0"}]
    out = attach_teacher(items, paths, key="teacher")
    assert [item["image"] for item in out] == [images[2], images[0]]
    assert out[0]["teacher"] == pytest.approx(0.6) and out[1]["teacher"] == pytest.approx(0.2)
    assert out[0]["patient"] == "p2" and "teacher" not in items[0]


def test_item_without_a_teacher_prediction_is_an_error_naming_it(teachers, tmp_path):
    _, paths = teachers
    with pytest.raises(TeacherPredictionError, match="d.png: no teacher prediction"):
        attach_teacher([{"image": str(tmp_path / "d.png"), "label": 0}], paths)


def test_label_disagreeing_with_the_teachers_file_is_an_error(teachers):
    images, paths = teachers
    with pytest.raises(TeacherPredictionError, match="a.png: label 1"):
        attach_teacher([{"image": images[0], "label": 1}], paths)


def test_teachers_over_different_images_are_refused(teachers, tmp_path):
    images, paths = teachers
    other = _predictions(tmp_path / "other.csv", [(images[0], 0, 0.1), (images[1], 1, 0.9)])
    with pytest.raises(TeacherPredictionError, match="not the same images"):
        mean_predictions([paths[0], other])
    with pytest.raises(TeacherPredictionError, match="no teacher predictions"):
        mean_predictions([])


class _MeanLogit(torch.nn.Module):
    """A stand-in teacher whose pneumonia logit is ``scale`` times the image mean (so it reads the batch it gets)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.float().flatten(1).mean(1)
        return torch.stack([torch.zeros_like(mean), self.scale * mean], dim=1)


def test_teachers_score_the_same_batch_and_their_mean_is_mixed_with_the_labels():
    images = torch.stack([torch.full((1, 8, 8), v) for v in (-1.0, 0.0, 2.0)])
    batch = {"image": images, "label": torch.tensor([0, 1, 1])}
    prepare = TeacherPrepareBatch([_MeanLogit(1.0), _MeanLogit(3.0)], teacher_weight=0.25,
                                  inferer=AutocastInferer(dtype=None, channels_last=False))
    out_images, targets = prepare(batch, torch.device("cpu"))
    assert out_images is images or torch.equal(out_images, images)
    means = torch.tensor([-1.0, 0.0, 2.0])
    teacher = (torch.sigmoid(means) + torch.sigmoid(3 * means)) / 2  # pneumonia probability of the two-class softmax
    expected = 0.75 * torch.nn.functional.one_hot(batch["label"], 2).float() + 0.25 * torch.stack([1 - teacher, teacher], 1)
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(1), torch.ones(3))


def test_teacher_batches_need_a_teacher_and_a_valid_weight():
    with pytest.raises(ValueError, match="at least one teacher"):
        TeacherPrepareBatch([])
    with pytest.raises(ValueError, match="teacher_weight"):
        TeacherPrepareBatch([_MeanLogit(1.0)], teacher_weight=1.5)


def test_teachers_are_frozen_copies_with_their_own_weights(trained_bundle):
    student = configured_network(depth=18)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    checkpoint = trained_bundle["ckpt_dir"] / "model.pt"
    (teacher,) = load_teachers(student, [checkpoint])
    assert teacher is not student and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    stored = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in stored.items() if v.is_floating_point() and v.ndim == 4)
    torch.testing.assert_close(teacher.state_dict()[name], stored[name].float())
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items()), "the student was changed"
    with pytest.raises(ValueError, match="no teacher checkpoints"):
        load_teachers(student, [])


def test_unreadable_or_unlabelled_teacher_files_are_errors_naming_them(tmp_path):
    unlabelled = tmp_path / "predict.csv"
    unlabelled.write_text("image,prob_pneumonia,prediction\na.png,0.2,NORMAL\n")  # what predict writes
    with pytest.raises(TeacherPredictionError, match=r"predict\.csv: not a labelled predictions.csv \(no column 'label'"):
        mean_predictions([unlabelled])
    with pytest.raises(TeacherPredictionError, match=r"absent\.csv: not a labelled predictions.csv"):
        mean_predictions([tmp_path / "absent.csv"])


def test_a_checkpoint_of_another_network_is_refused_as_a_teacher(trained_bundle, tmp_path):
    checkpoint = trained_bundle["ckpt_dir"] / "model.pt"
    with pytest.raises(ValueError, match="not a teacher for this network_def"):
        load_teachers(configured_network(depth=34), [checkpoint])
    with pytest.raises(FileNotFoundError, match="absent.pt: no teacher checkpoint"):
        load_teachers(configured_network(depth=18), [tmp_path / "absent.pt"])


def test_labels_that_are_already_soft_are_refused():
    with pytest.raises(ValueError, match="already soft targets"):
        TeacherPrepareBatch([_MeanLogit(1.0)])({"image": torch.zeros(2, 1, 4, 4), "label": torch.ones(2, 2) / 2})
