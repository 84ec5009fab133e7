"""The ablation runner: each arm's command builds the intended network once monai.bundle has parsed it; its table."""

from __future__ import annotations

import argparse
import importlib.util
import json

import numpy as np
import pytest
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser

from monai_pneumonia.evaluation import roc_auc
from tests.conftest import REPO

_SPEC = importlib.util.spec_from_file_location("run_ablation", REPO / "scripts" / "run_ablation.py")
run_ablation = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(run_ablation)


def _overrides(command: list[str]) -> dict:
    """The ``--key value`` pairs after ``monai.bundle run``, each value parsed as python-fire parses it."""
    pairs = command[command.index("run") + 1:]
    return {key[2:]: DefaultParseValue(value) for key, value in zip(pairs[::2], pairs[1::2], strict=True)}


@pytest.mark.parametrize("arm", list(run_ablation.ARMS))
def test_train_command_builds_the_arm(arm, tmp_path):
    args = argparse.Namespace(bundle=REPO / "bundle", dataset_dir=tmp_path, datalist=tmp_path / "datalist.json",
                              image_size=64, max_epochs=2)
    command = run_ablation.train_command(args, arm, seed=3, run_dir=tmp_path / arm)
    overrides = _overrides(command)
    assert overrides["seed"] == 3 and overrides["image_size"] == 64 and overrides["max_epochs"] == 2
    assert overrides["datalist"] == str(tmp_path / "datalist.json")

    parser = ConfigParser()
    parser.read_config(REPO / "bundle" / "configs" / "train.json")
    parser.update({key: value for key, value in overrides.items() if value is not None})
    network = parser.get_parsed_content("network_def")
    attention, fusion = run_ablation.ARMS[arm]
    assert network.attention_type == attention
    assert network.use_fusion is fusion
    assert network.depth == 50
    # the arm's network_def as recorded in the report is the one trained
    recorded = run_ablation.network_def(REPO / "bundle", arm)
    assert (recorded["attention"], recorded["fusion"]) == (attention, fusion)


def test_dry_run_trains_nothing(tmp_path, capsys):
    assert run_ablation.main(["--dataset-dir", str(tmp_path), "--output", str(tmp_path / "out"), "--dry-run",
                              "--arms", "plain", "both", "--seeds", "0", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("monai.bundle run") == 4
    assert not (tmp_path / "out").exists()


def _finished(arm: str, seed: int) -> dict:
    metrics = {"auc": 0.99, "accuracy": 0.95, "sensitivity": 0.945, "specificity": 0.964, "f1": 0.966}
    validation = metrics | {f"{key}_ci95": [value - 0.01, value + 0.005] for key, value in metrics.items()}
    return {"arm": arm, "seed": seed, "validation": validation, "train_wall_s": 786.0,
            "stressed_pooled": {"auc": 0.9782, "specificity": 0.8714}, "worst_shift_auc": [0.9564, "sharpen"]}


def test_table_reports_each_finished_run(tmp_path, capsys):
    (tmp_path / "ablation.json").write_text(json.dumps({"runs": [_finished("plain", 0), {"arm": "both", "seed": 0}]}))
    assert run_ablation.main(["--dataset-dir", str(tmp_path), "--output", str(tmp_path), "--table"]) == 0
    metrics_table, paired_table = capsys.readouterr().out.strip().split("\n\n")
    rows = metrics_table.splitlines()
    assert len(rows) == 3  # header, rule, the one finished run
    assert rows[2] == ("| plain | 0 | 0.9900 (0.9800–0.9950) | 95.0 (94.0–95.5) | 94.5 (93.5–95.0) | 96.4 (95.4–96.9) "
                       "| 96.6 (95.6–97.1) | 0.9782 | 87.1 | sharpen (0.9564) | 13.1 |")
    assert len(paired_table.splitlines()) == 2  # no arm to compare with plain yet


def _write_predictions(folder, labels, probs):
    folder.mkdir(parents=True)
    rows = "".join(f"img{i}.png,{label},{prob}\n" for i, (label, prob) in enumerate(zip(labels, probs, strict=True)))
    (folder / "predictions.csv").write_text("image,label,prob_pneumonia\n" + rows)


def test_paired_table_compares_each_arm_with_plain_of_its_seed(tmp_path):
    labels = [1] * 30 + [0] * 20
    perfect = [0.9] * 30 + [0.1] * 20
    rng = np.random.default_rng(0)
    noisy = list(rng.uniform(0, 1, 50))
    _write_predictions(tmp_path / "plain-seed0" / "stress" / "none", labels, noisy)
    _write_predictions(tmp_path / "both-seed0" / "stress" / "none", labels, perfect)
    _write_predictions(tmp_path / "both-seed1" / "stress" / "none", labels, perfect)  # no plain seed 1: no row
    entries = [_finished("plain", 0), _finished("both", 0), _finished("both", 1)]
    rows = run_ablation.format_paired_table(entries, tmp_path, n_bootstrap=200).splitlines()
    assert len(rows) == 3
    gain = 1.0 - roc_auc(labels, noisy)
    assert rows[2].startswith(f"| both | 0 | {gain:+.4f} (")
