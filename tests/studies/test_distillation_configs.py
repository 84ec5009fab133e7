"""The distillation overlays of ``bundle/configs/experiments/``, run as the study runs them (list merge over train.json)."""

from __future__ import annotations

import torch

from monai_pneumonia.bundle import load_workflow
from monai_pneumonia.studies import TeacherPrepareBatch
from tests.conftest import CONFIGS, TINY, run_bundle


def _teacher_csv(dataset, path, prob_for_label=(0.3, 0.6)):
    """A teacher's ``predictions.csv`` over every image of ``dataset`` (as ``evaluate --split training`` writes)."""
    rows = ["image,label,prob_pneumonia,prediction"]
    for image in sorted(dataset.rglob("*.png")):
        label = int(image.parent.name == "PNEUMONIA")
        rows.append(f"{image},{label},{prob_for_label[label]},{'PNEUMONIA' if label else 'NORMAL'}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_distill_overlay_trains_on_the_mixed_soft_targets(tiny_dataset, tmp_path):
    """``distill.json`` over ``train.json``: the training labels become label/teacher mixtures, validation stays hard."""
    teachers = [_teacher_csv(tiny_dataset, tmp_path / "a.csv", (0.3, 0.6)),
                _teacher_csv(tiny_dataset, tmp_path / "b.csv", (0.1, 1.0))]
    workflow = load_workflow(["train.json", "experiments/distill.json"], bundle_root=CONFIGS.parent,
                             dataset_dir=str(tiny_dataset), output_dir=str(tmp_path / "w"), val_fraction=0.34, teacher_predictions=[str(p) for p in teachers],
                             teacher_weight=0.5, image_size=32, num_workers=0, progress_bar=False,
                             **{"network_def#depth": 18})
    dataset = workflow.parser.get_parsed_content("train#dataset")
    expected = {0: torch.tensor([0.5 + 0.5 * 0.8, 0.5 * 0.2]), 1: torch.tensor([0.5 * 0.2, 0.5 + 0.5 * 0.8])}
    for index in range(len(dataset)):
        item = dataset[index]
        pneumonia = "PNEUMONIA" in str(item["image"].meta["filename_or_obj"])
        torch.testing.assert_close(item["label"], expected[int(pneumonia)])
    validation = workflow.parser.get_parsed_content("validate#dataset")
    assert int(validation[0]["label"]) in (0, 1)
    workflow.finalize()

    run_bundle("run", "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'experiments' / 'distill.json'}']",
               "--dataset_dir", str(tiny_dataset), "--ckpt_dir", str(tmp_path / "models"), "--output_dir",
               str(tmp_path / "out"), "--train#trainer#max_epochs", "1", "--val_fraction", "0.34",
               "--teacher_predictions", f"['{teachers[0]}','{teachers[1]}']", *TINY)
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert 0.0 < float(state["operating_threshold"]) < 1.0


def test_distill_online_overlay_runs_the_teachers_on_each_training_batch(trained_bundle, tmp_path):
    """``distill_online.json`` over ``train.json``: the trainer's batches go through the teacher checkpoints."""
    teacher = str(trained_bundle["ckpt_dir"] / "model.pt")
    workflow = load_workflow(["train.json", "experiments/distill_online.json"], bundle_root=CONFIGS.parent,
                             dataset_dir=str(trained_bundle["dataset_dir"]), output_dir=str(tmp_path / "w"),
                             val_fraction=0.34, teacher_checkpoints=[teacher, teacher], image_size=32, num_workers=0,
                             progress_bar=False, **{"network_def#depth": 18})
    prepare = workflow.parser.get_parsed_content("train#trainer").prepare_batch
    assert isinstance(prepare, TeacherPrepareBatch) and len(prepare.teachers) == 2
    batch = next(iter(workflow.parser.get_parsed_content("train#dataloader")))
    _, targets = prepare(batch, torch.device("cpu"))
    assert targets.shape == (len(batch["label"]), 2) and torch.allclose(targets.sum(1), torch.ones(len(targets)))
    assert ((targets > 0) & (targets < 1)).all(), "the teachers' probabilities were not mixed in"
    workflow.finalize()

    run_bundle("run", "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'experiments' / 'distill_online.json'}']",
               "--dataset_dir", str(trained_bundle["dataset_dir"]), "--ckpt_dir", str(tmp_path / "models"),
               "--output_dir", str(tmp_path / "out"), "--train#trainer#max_epochs", "1", "--val_fraction", "0.34",
               "--teacher_checkpoints", f"['{teacher}']", *TINY)
    assert 0.0 < float(torch.load(tmp_path / "models" / "model.pt", weights_only=True)["operating_threshold"]) < 1.0
