"""``monai-pneumonia train``, ``evaluate`` and ``promote``, and the one-line errors of the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from monai_pneumonia.cli import main
from monai_pneumonia.cli.overrides import parse_set
from monai_pneumonia.results import file_sha256
from monai_pneumonia.workflows import latest_state_checkpoint


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle (these tests replace its model)."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def test_parse_set_reads_json_values_and_keeps_strings():
    assert parse_set("train#trainer#max_epochs=2") == ("train#trainer#max_epochs", 2)
    assert parse_set("network_def#attention=se") == ("network_def#attention", "se")
    assert parse_set("amp=false") == ("amp", False)


def test_train_writes_a_run_folder_and_never_the_shipped_model(bundle_copy, tiny_dataset, capsys):
    shipped = file_sha256(bundle_copy / "models" / "model.pt")
    status = main(["train", "--bundle", str(bundle_copy), "--dataset-dir", str(tiny_dataset), "--epochs", "1",
                   "--batch-size", "4", "--num-workers", "0", "--no-progress", "--set", "val_fraction=0.34"])
    assert status == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    runs = list((bundle_copy / "runs").iterdir())
    assert [str(run) for run in runs] == [summary["run_dir"]]
    assert summary["checkpoint"] == str(runs[0] / "models" / "model.pt")
    assert summary["epochs"] == 1 and summary["best_epoch"] == 1
    assert 0.0 < summary["threshold"] < 1.0 and summary["sha256"] == file_sha256(summary["checkpoint"])
    assert f"monai-pneumonia promote {summary['checkpoint']}" in captured.err
    assert file_sha256(bundle_copy / "models" / "model.pt") == shipped
    # the run keeps what it was made of: its configs, its overrides and the datalist it trained on
    run = runs[0]
    assert (run / "configs" / "train.json").read_text() == (bundle_copy / "configs" / "train.json").read_text()
    assert json.loads((run / "overrides.json").read_text())["overrides"]["dataset_dir"] == str(tiny_dataset.resolve())
    datalist = json.loads((run / "datalist.json").read_text())
    assert sum(len(items) for items in datalist.values()) == 24 and datalist["training"] and datalist["validation"]


def test_evaluate_prints_the_metrics_it_wrote(tiny_bundle, tiny_dataset, tmp_path, capsys):
    status = main(["evaluate", "--bundle", str(tiny_bundle), "--dataset-dir", str(tiny_dataset), "--output-dir",
                   str(tmp_path / "eval"), "--no-progress", "--set", "n_bootstrap=50", "--set", "gallery_size=0"])
    assert status == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 24
    table = capsys.readouterr().out
    auc_line = next(line for line in table.splitlines() if line.startswith("auc"))
    assert f"{metrics['auc']:.3f}" in auc_line and "95% CI" in auc_line
    assert "n 24" in table


def test_promote_swaps_the_model_and_records_what_it_replaced(bundle_copy, tmp_path, capsys):
    from monai_pneumonia.networks import store_threshold

    shipped = bundle_copy / "models" / "model.pt"
    old_bytes, old_sha = shipped.read_bytes(), file_sha256(shipped)
    candidate = store_threshold(shipped, 0.4242, output=tmp_path / "candidate.pt")
    assert main(["promote", str(candidate), "--bundle", str(bundle_copy), "--force", "--note", "test"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert shipped.read_bytes() == candidate.read_bytes()
    assert record["sha256"] == file_sha256(candidate) and record["replaced_sha256"] == old_sha
    assert record["threshold"] == pytest.approx(0.4242) and record["note"] == "test"
    assert record["forced"] is True and record["evaluation"] is None  # no gate without --datalist
    kept = bundle_copy / "models" / "replaced" / f"model-{old_sha[:12]}.pt"
    assert record["replaced_kept_as"] == str(kept) and kept.read_bytes() == old_bytes
    logged = [json.loads(line) for line in (bundle_copy / "models" / "promotions.jsonl").read_text().splitlines()]
    assert logged == [record]
    # the same file again is refused, and so is a checkpoint of another network; the model stays as it is
    assert main(["promote", str(candidate), "--bundle", str(bundle_copy), "--force", "--note", "again"]) == 2
    state = torch.load(candidate, weights_only=True)
    state.pop(next(key for key in state if key.endswith("weight")))
    torch.save(state, tmp_path / "other.pt")
    assert main(["promote", str(tmp_path / "other.pt"), "--bundle", str(bundle_copy), "--force", "--note", "x"]) == 2
    assert "does not fit the network" in capsys.readouterr().err
    assert shipped.read_bytes() == candidate.read_bytes()
    assert len((bundle_copy / "models" / "promotions.jsonl").read_text().splitlines()) == 1


def _cli(*args: str) -> subprocess.CompletedProcess:
    """The command line in its own process, as a user runs it (stderr is what they see)."""
    return subprocess.run([sys.executable, "-m", "monai_pneumonia", *args], capture_output=True, text=True, timeout=300)


def test_predict_on_an_empty_folder_is_a_one_line_error(tiny_bundle, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _cli("predict", str(tmp_path / "empty"), "--bundle", str(tiny_bundle), "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"monai-pneumonia: error: no images found in {tmp_path / 'empty'}"
    assert "Traceback" not in result.stderr + result.stdout


def test_serve_with_an_unavailable_device_is_a_one_line_error(tiny_bundle, tmp_path):
    result = _cli("serve", "--spool", str(tmp_path / "spool"), "--bundle", str(tiny_bundle), "--port", "0",
                  "--device", "cuda:999")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("monai-pneumonia: error: device 'cuda:999' is not available")
    assert "Traceback" not in result.stderr


def test_unavailable_device_is_a_one_line_error(tiny_bundle, tiny_dataset, tmp_path):
    result = _cli("predict", str(tiny_dataset), "--bundle", str(tiny_bundle), "--device", "cuda:999",
                  "--output-dir", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "monai-pneumonia: error: device 'cuda:999' is not available on this machine "
        f"({torch.cuda.device_count()} cuda device(s)); use --device cpu"]


def _train(bundle, dataset, *extra):
    return main(["train", "--bundle", str(bundle), "--dataset-dir", str(dataset), "--batch-size", "4",
                 "--num-workers", "0", "--no-progress", "--set", "val_fraction=0.34", *extra])


def test_a_stopped_run_resumes_from_its_last_epoch(bundle_copy, tiny_dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    # the first sitting stops after epoch 1 of 2: max_epochs 1 of the trainer, 2 for the learning-rate schedule
    assert _train(bundle_copy, tiny_dataset, "--epochs", "2", "--output-dir", str(run_dir),
                  "--set", "train#trainer#max_epochs=1") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["epochs"] == 1 and first["best_epoch"] == 1
    state_file = run_dir / "state_checkpoint_epoch=1.pt"
    state = torch.load(state_file, weights_only=False)
    assert {"network", "ema", "optimizer", "lr_scheduler", "trainer", "best_model"} <= set(state)
    iterations = state["trainer"]["epoch_length"]
    assert state["trainer"]["iteration"] == iterations and state["best_model"]["best_metric_epoch"] == 1
    # the best model of epoch 1 scores higher than anything epoch 2 can reach: the resumed run must keep it
    state["best_model"]["best_metric"] = 2.0
    torch.save(state, state_file)
    best_before = (run_dir / "models" / "model.pt").read_bytes()

    assert _train(bundle_copy, tiny_dataset, "--epochs", "2", "--output-dir", str(run_dir), "--resume") == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["epochs"] == 2 and resumed["best_epoch"] == 1 and resumed["best_val_auc"] == 2.0
    assert (run_dir / "models" / "model.pt").read_bytes() == best_before
    # the checkpoint resumed from stays; the latest one is the new epoch's
    assert latest_state_checkpoint(run_dir).name == "state_checkpoint_epoch=2.pt" and state_file.is_file()
    final = torch.load(run_dir / "state_checkpoint_epoch=2.pt", weights_only=False)
    assert final["trainer"]["iteration"] == 2 * iterations
    # the schedule went on where it stopped instead of restarting its warm-up
    assert final["lr_scheduler"]["last_epoch"] == 2 * state["lr_scheduler"]["last_epoch"]


def test_resume_refuses_what_it_cannot_resume(bundle_copy, tiny_dataset, tmp_path, capsys):
    assert _train(bundle_copy, tiny_dataset, "--resume") == 2
    assert "needs --output-dir" in capsys.readouterr().err
    assert _train(bundle_copy, tiny_dataset, "--output-dir", str(tmp_path), "--resume") == 2
    assert "no training-state checkpoint" in capsys.readouterr().err
    assert _train(bundle_copy, tiny_dataset, "--resume", str(tmp_path / "missing.pt")) == 2
    assert "missing.pt: no such training-state checkpoint" in capsys.readouterr().err


def test_train_takes_no_teacher_options():
    """Distillation is a study (``bundle/configs/experiments/``), not an option of training on one's own data."""
    for option in ("--teacher-predictions", "--teacher-checkpoints"):
        with pytest.raises(SystemExit) as raised:
            main(["train", "--dataset-dir", "d", option, "x"])
        assert raised.value.code == 2
