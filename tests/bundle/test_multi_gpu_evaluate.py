"""multi_gpu_evaluate.json over torchrun: 2 CPU processes (gloo) give the single-process results, in input order."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import CONFIGS, REPO, TINY, run_bundle


def read_rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def torchrun(configs: list[str], *args: str) -> subprocess.CompletedProcess:
    files = ",".join(f"'{CONFIGS / name}'" for name in [*configs, "multi_gpu_evaluate.json"])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "monai.bundle", "run", "--config_file", f"[{files}]", *args, *TINY]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def archive(trained_bundle, tmp_path_factory):
    """An odd number of readable films (uneven shards), one broken file named as an image, one other file."""
    inputs = tmp_path_factory.mktemp("archive")
    shutil.copytree(trained_bundle["dataset_dir"], inputs, dirs_exist_ok=True)
    next(inputs.rglob("*.png")).unlink()
    (inputs / "NORMAL" / "broken.png").write_text("not a PNG")
    (inputs / "notes.txt").write_text("skipped")
    return inputs


@pytest.mark.slow
def test_distributed_inference_matches_one_process_in_input_order(archive, trained_bundle, tmp_path):
    common = ["--dataset_dir", str(archive), "--ckpt_dir", str(trained_bundle["ckpt_dir"])]
    run_bundle("run", "--config_file", str(CONFIGS / "inference.json"), *common, "--output_dir", str(tmp_path / "one"),
               *TINY)
    torchrun(["inference.json"], *common, "--output_dir", str(tmp_path / "two"))
    one, two = read_rows(tmp_path / "one" / "predictions.csv"), read_rows(tmp_path / "two" / "predictions.csv")
    assert len(two) == 23
    assert [row["image"] for row in two] == [row["image"] for row in one] == sorted(row["image"] for row in one)
    for a, b in zip(one, two, strict=True):
        assert abs(float(a["prob_pneumonia"]) - float(b["prob_pneumonia"])) < 1e-5 and a["prediction"] == b["prediction"]
    assert [row["image"] for row in read_rows(tmp_path / "two" / "errors.csv")] == [str(archive / "NORMAL" / "broken.png")]


@pytest.mark.slow
def test_distributed_evaluation_counts_every_film_once(trained_bundle, tmp_path):
    torchrun(["inference.json", "evaluate.json"], "--dataset_dir", str(trained_bundle["dataset_dir"]), "--ckpt_dir",
             str(trained_bundle["ckpt_dir"]), "--output_dir", str(tmp_path / "eval"), "--gallery_size", "1",
             "--n_bootstrap", "50")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 24 and metrics["n_positive"] == 12 and metrics["n_negative"] == 12
    rows = read_rows(tmp_path / "eval" / "predictions.csv")
    assert len({row["image"] for row in rows}) == 24
