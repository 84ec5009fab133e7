"""Shared fixtures: a tiny labelled data set and a tiny model trained with the bundle's own train command.

The bundle's own commands run with overrides that shrink the network (ResNet-18), the images (32 px) and the
run (1 epoch, no workers), so the whole train → evaluate → infer chain takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"

#: Overrides that make every bundle config tiny; the same for train, evaluate and inference.
TINY = ["--network_def#depth", "18", "--image_size", "32", "--batch_size", "4", "--num_workers", "0",
        "--progress_bar", "False"]


def pytest_configure(config) -> None:
    """Keep the ONNX exports of test checkpoints (``runtime_network``'s cache) out of the user's cache."""
    if "MONAI_PNEUMONIA_CACHE" not in os.environ:
        config.onnx_cache = os.environ["MONAI_PNEUMONIA_CACHE"] = tempfile.mkdtemp(prefix="monai-pneumonia-test-")


def pytest_unconfigure(config) -> None:
    cache = getattr(config, "onnx_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


def configured_network(config: str = "train.json", **overrides):
    """The bundle config's ``network_def`` as an ``AttentionResNet`` (``overrides`` replace its arguments)."""
    from monai_pneumonia.networks import AttentionResNet

    kwargs = {k: v for k, v in json.loads((CONFIGS / config).read_text())["network_def"].items() if k != "_target_"}
    return AttentionResNet(**{**kwargs, **overrides})


def free_port() -> int:
    """A TCP port free on loopback right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bundle_command(*args: str) -> list[str]:
    """``python -m monai.bundle ARGS`` with this interpreter."""
    return [sys.executable, "-m", "monai.bundle", *args]


def run_bundle(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a ``monai.bundle`` command from the repository root; fail the test with its output if it fails."""
    result = subprocess.run(bundle_command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, f"{' '.join(args[:3])} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def write_picture(path: Path, label: int, seed: int, size: int = 40) -> None:
    """A grey PNG whose texture depends on the label, so one epoch learns something."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = 0.3 + 0.4 * yy + (0.25 * np.sin(12 * xx) if label else 0.0)
    pixels = np.clip(base + rng.normal(0, 0.03, base.shape), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((pixels * 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """24 PNGs in NORMAL/ and PNEUMONIA/ with the public data set's file-name patterns (one image per patient)."""
    root = tmp_path_factory.mktemp("tiny_dataset")
    for index in range(12):
        write_picture(root / "NORMAL" / f"IM-{index:04d}-0001.png", 0, seed=index)
        write_picture(root / "PNEUMONIA" / f"person{index}_bacteria_{index}.png", 1, seed=100 + index)
    return root


@pytest.fixture(scope="session")
def trained_bundle(tiny_dataset, tmp_path_factory) -> dict:
    """Train one epoch with the exact train command; returns the folders it used."""
    ckpt_dir = tmp_path_factory.mktemp("models")
    output_dir = tmp_path_factory.mktemp("train_output")
    result = run_bundle("run", "--config_file", str(CONFIGS / "train.json"), "--dataset_dir", str(tiny_dataset),
                        "--ckpt_dir", str(ckpt_dir), "--output_dir", str(output_dir),
                        "--train#trainer#max_epochs", "1", "--val_fraction", "0.34", *TINY)
    return {"dataset_dir": tiny_dataset, "ckpt_dir": ckpt_dir, "output_dir": output_dir, "log": result.stdout}


@pytest.fixture(scope="session")
def tiny_bundle(trained_bundle, tmp_path_factory) -> Path:
    """A complete bundle folder (configs + ``models/model.pt``) at the tiny sizes of ``trained_bundle``.

    Entry points that take ``--bundle DIR`` (predict, serve, the MONAI Label app) run on it unchanged.
    """
    bundle = tmp_path_factory.mktemp("tiny_bundle")
    shutil.copytree(CONFIGS.parent, bundle, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.pt", "*.atypicality.npz", "runs", "eval"))
    for name in ("inference.json", "train.json"):  # evaluate.json, an overlay of inference.json, takes them from it
        config = json.loads((bundle / "configs" / name).read_text())
        config["network_def"]["depth"] = 18
        config.update(image_size=32, num_workers=0, progress_bar=False)
        (bundle / "configs" / name).write_text(json.dumps(config, indent=2))
    shutil.copy(trained_bundle["ckpt_dir"] / "model.pt", bundle / "models" / "model.pt")
    return bundle
