"""The shipped model is never replaced by a training run with default options; run folders are per run."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from monai_pneumonia.registry import PROMOTION_LOG, run_name
from monai_pneumonia.results import file_sha256
from tests.conftest import CONFIGS, REPO, TINY, bundle_command


def test_default_training_leaves_the_shipped_model_byte_identical(tiny_dataset, tmp_path):
    """The README's train command, run from a checkout (``bundle_root`` = ``bundle``), with no --ckpt_dir."""
    bundle = tmp_path / "bundle"
    shutil.copytree(CONFIGS, bundle / "configs")
    (bundle / "models").mkdir()
    shutil.copy(REPO / "bundle" / "models" / "model.pt", bundle / "models" / "model.pt")
    shipped = file_sha256(bundle / "models" / "model.pt")
    command = bundle_command("run", "--config_file", "bundle/configs/train.json", "--dataset_dir", str(tiny_dataset),
                             "--train#trainer#max_epochs", "1", "--val_fraction", "0.34", *TINY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert file_sha256(bundle / "models" / "model.pt") == shipped
    assert sorted(p.name for p in (bundle / "models").iterdir()) == ["model.pt"]
    runs = list((bundle / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "models" / "model.pt").is_file() and (runs[0] / "model_final.pt").is_file()


def test_run_name_is_the_same_on_every_torchrun_rank(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "a1b2/c3")
    assert run_name() == "a1b2_c3"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's default without --standalone or --rdzv-id
    assert run_name().endswith(f"-{os.getpid()}")
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    assert os.sep not in run_name() and run_name().endswith(f"-{os.getpid()}")


def test_training_config_names_no_shipped_model_path():
    """Every checkpoint of train.json is saved under output_dir, which defaults to a runs/ folder."""
    import json

    config = json.loads((CONFIGS / "train.json").read_text())
    assert config["ckpt_dir"] == "$@output_dir + '/models'"
    assert "/runs/" in config["output_dir"] and "models" not in config["output_dir"]


def test_the_promotion_log_is_git_ignored():
    """promote appends to bundle/models/promotions.jsonl: a local record, never committed by accident."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", f"bundle/models/{PROMOTION_LOG}"])
    assert result.returncode == 0
