"""The ablation runner's training commands build the intended network once monai.bundle has parsed them."""

from __future__ import annotations

import argparse
import importlib.util

import pytest
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser

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
