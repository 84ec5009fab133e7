"""Teacher predictions for distillation: the ensemble mean attached to the training items."""

from __future__ import annotations

import csv

import pytest

from monai_pneumonia.workflows import TeacherPredictionError, attach_teacher, mean_predictions


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
