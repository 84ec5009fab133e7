"""train.json and multi_gpu_train.json, run as users run them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.conftest import CONFIGS, REPO, TINY, configured_network, run_bundle


def test_train_writes_best_checkpoint_with_threshold(trained_bundle):
    state = torch.load(trained_bundle["ckpt_dir"] / "model.pt", weights_only=True)
    assert "operating_threshold" in state
    threshold = float(state["operating_threshold"])
    assert 0.0 < threshold < 1.0 and threshold != 0.5, "the threshold was not chosen on the validation split"
    network = configured_network(depth=18)
    network.load_state_dict(state)  # a plain state dict of the configured network
    assert "val_auc" in trained_bundle["log"]
    assert list(trained_bundle["output_dir"].glob("events.out.tfevents.*")), "no TensorBoard events written"


@pytest.mark.slow
def test_ddp_training_on_cpu_with_gloo(tiny_dataset, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "monai.bundle", "run", "--config_file",
               f"['{CONFIGS / 'train.json'}','{CONFIGS / 'multi_gpu_train.json'}']",
               "--dataset_dir", str(tiny_dataset), "--ckpt_dir", str(tmp_path / "models"),
               "--output_dir", str(tmp_path / "out"), "--train#trainer#max_epochs", "1", "--val_fraction", "0.34", *TINY]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in state), "DDP wrapper leaked into the checkpoint"
    assert 0.0 < float(state["operating_threshold"]) < 1.0


def test_train_with_fewer_images_than_a_batch_still_trains(tiny_dataset, tmp_path):
    """drop_last must not empty the training loader of a small data set (no checkpoint would be written)."""
    run_bundle("run", "--config_file", str(CONFIGS / "train.json"), "--dataset_dir", str(tiny_dataset),
               "--ckpt_dir", str(tmp_path / "models"), "--output_dir", str(tmp_path / "out"),
               "--train#trainer#max_epochs", "1", "--val_fraction", "0.34", *TINY, "--batch_size", "64")
    assert (tmp_path / "models" / "model.pt").is_file()


def test_init_checkpoint_and_ema_weights_are_what_is_saved(trained_bundle, tmp_path):
    """``init_checkpoint`` starts from a checkpoint; the saved model is the EMA of the weights, not the live ones."""
    init = trained_bundle["ckpt_dir"] / "model.pt"
    start = torch.load(init, weights_only=True)
    finals = {}
    for momentum in ("0.001", "0.9"):
        out = tmp_path / momentum
        run_bundle("run", "--config_file", str(CONFIGS / "train.json"), "--dataset_dir", str(trained_bundle["dataset_dir"]),
                   "--ckpt_dir", str(out / "models"), "--output_dir", str(out), "--train#trainer#max_epochs", "1",
                   "--val_fraction", "0.34", "--init_checkpoint", str(init), "--ema_momentum", momentum, *TINY)
        finals[momentum] = torch.load(out / "model_final.pt", weights_only=True)
    key = "class_layers.out.weight" if "class_layers.out.weight" in start else next(
        k for k, v in start.items() if v.is_floating_point() and v.ndim == 2)

    def moved(state):
        return float((state[key].float() - start[key].float()).abs().max())

    assert 0.0 < moved(finals["0.001"]) < 0.1 * moved(finals["0.9"]), "the saved weights are not the slow EMA of the init"


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
    from monai_pneumonia.bundle import load_workflow

    teachers = [_teacher_csv(tiny_dataset, tmp_path / "a.csv", (0.3, 0.6)),
                _teacher_csv(tiny_dataset, tmp_path / "b.csv", (0.1, 1.0))]
    workflow = load_workflow(["train.json", "distill.json"], bundle_root=CONFIGS.parent, dataset_dir=str(tiny_dataset),
                             output_dir=str(tmp_path / "w"), val_fraction=0.34, teacher_predictions=[str(p) for p in teachers],
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

    run_bundle("run", "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'distill.json'}']",
               "--dataset_dir", str(tiny_dataset), "--ckpt_dir", str(tmp_path / "models"), "--output_dir",
               str(tmp_path / "out"), "--train#trainer#max_epochs", "1", "--val_fraction", "0.34",
               "--teacher_predictions", f"['{teachers[0]}','{teachers[1]}']", *TINY)
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert 0.0 < float(state["operating_threshold"]) < 1.0


def test_distill_online_overlay_runs_the_teachers_on_each_training_batch(trained_bundle, tmp_path):
    """``distill_online.json`` over ``train.json``: the trainer's batches go through the teacher checkpoints."""
    from monai_pneumonia.bundle import load_workflow
    from monai_pneumonia.workflows import TeacherPrepareBatch

    teacher = str(trained_bundle["ckpt_dir"] / "model.pt")
    workflow = load_workflow(["train.json", "distill_online.json"], bundle_root=CONFIGS.parent,
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

    run_bundle("run", "--config_file", f"['{CONFIGS / 'train.json'}','{CONFIGS / 'distill_online.json'}']",
               "--dataset_dir", str(trained_bundle["dataset_dir"]), "--ckpt_dir", str(tmp_path / "models"),
               "--output_dir", str(tmp_path / "out"), "--train#trainer#max_epochs", "1", "--val_fraction", "0.34",
               "--teacher_checkpoints", f"['{teacher}']", *TINY)
    assert 0.0 < float(torch.load(tmp_path / "models" / "model.pt", weights_only=True)["operating_threshold"]) < 1.0
