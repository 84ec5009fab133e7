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
