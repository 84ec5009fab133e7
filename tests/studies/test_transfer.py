"""Source-held-out threshold transfer, from stress predictions written by hand (no model runs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from monai_pneumonia.cli import main
from monai_pneumonia.evaluation import choose_threshold
from monai_pneumonia.studies import source_transfer

CONDITIONS = ("none", "blur-2")


def write_stress(folder, held_out_shift: float, seed: int = 0):
    """A stress folder: in-source normals IM-*, held-out normals NORMAL2-IM-* (their scores raised), pneumonia."""
    rng = np.random.default_rng(seed)
    rows_by_condition = {}
    for condition in CONDITIONS:
        rows = [(f"/d/NORMAL/IM-{i:04d}-0001.jpeg", 0, rng.uniform(0.0, 0.4)) for i in range(40)]
        rows += [(f"/d/NORMAL/NORMAL2-IM-{i:04d}-0001.jpeg", 0, min(1.0, rng.uniform(0.0, 0.4) + held_out_shift))
                 for i in range(60)]
        rows += [(f"/d/PNEUMONIA/person{i}_bacteria_{i}.jpeg", 1, rng.uniform(0.3, 1.0)) for i in range(80)]
        rows_by_condition[condition] = rows
        (folder / condition).mkdir(parents=True)
        with open(folder / condition / "predictions.csv", "w", newline="") as stream:
            writer = csv.writer(stream)
            writer.writerow(["image", "label", "prob_pneumonia", "prediction"])
            writer.writerows([(image, label, f"{prob:.6f}", "") for image, label, prob in rows])
    (folder / "stress.json").write_text(json.dumps({"shifts": {name: {} for name in CONDITIONS},
                                                     "split": "validation", "datalist": "d.json"}))
    return rows_by_condition


def test_thresholds_come_from_the_in_source_images_only(tmp_path):
    rows = write_stress(tmp_path / "a", held_out_shift=0.3)
    write_stress(tmp_path / "b", held_out_shift=0.0)  # same in-source scores (same seed), other held-out scores
    shifted, level = source_transfer(tmp_path / "a", "^NORMAL2-"), source_transfer(tmp_path / "b", "^NORMAL2-")
    inside = [(label, prob) for condition in CONDITIONS for image, label, prob in rows[condition]
              if not image.split("/")[-1].startswith("NORMAL2-")]
    labels, probs = np.array([r[0] for r in inside]), np.array([float(f"{r[1]:.6f}") for r in inside])
    assert shifted["rules"]["youden"]["threshold"] == pytest.approx(choose_threshold(labels, probs, "youden"))
    for name in shifted["rules"]:
        assert shifted["rules"][name]["threshold"] == pytest.approx(level["rules"][name]["threshold"])
    held = np.array([float(f"{prob:.6f}") for condition in CONDITIONS for image, label, prob in rows[condition]
                     if image.split("/")[-1].startswith("NORMAL2-")])
    threshold = shifted["rules"]["youden"]["threshold"]
    pooled = shifted["rules"]["youden"]["pooled"]
    assert pooled["held_out_specificity"] == pytest.approx(float((held < threshold).mean()))
    assert pooled["held_out_balanced_accuracy"] == pytest.approx(
        0.5 * (pooled["in_source_sensitivity"] + pooled["held_out_specificity"]))
    assert shifted["counts"] == {"in_source_normal": 40, "in_source_pneumonia": 80, "held_out_normal": 60,
                                 "conditions": 2}
    assert shifted["shift_detected"] and shifted["source_shift"] < -0.02
    assert not level["shift_detected"]
    assert shifted["auc"]["held_out_normals"] < level["auc"]["held_out_normals"]
    assert json.loads((tmp_path / "a" / "transfer.json").read_text())["chosen_rule"] == shifted["chosen_rule"]


def test_the_chosen_rule_is_the_best_held_out_balanced_accuracy_that_keeps_sensitivity(tmp_path):
    write_stress(tmp_path, 0.3)
    report = source_transfer(tmp_path, "^NORMAL2-", min_sensitivity=0.9)
    eligible = {name: row["pooled"] for name, row in report["rules"].items()
                if row["pooled"]["in_source_sensitivity"] >= 0.9}
    assert report["chosen_rule"] in eligible
    best = max(value["held_out_balanced_accuracy"] for value in eligible.values())
    assert eligible[report["chosen_rule"]]["held_out_balanced_accuracy"] >= best - 0.005
    assert source_transfer(tmp_path, "^NORMAL2-", min_sensitivity=1.01)["chosen_rule"] is None


def test_refusals(tmp_path):
    write_stress(tmp_path, 0.3)
    with pytest.raises(ValueError, match="no normal image matches"):
        source_transfer(tmp_path, "^SITE3-")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        source_transfer(tmp_path, "([")
    with pytest.raises(FileNotFoundError):
        source_transfer(tmp_path / "missing", "^NORMAL2-")


def test_cli_prints_the_comparison(tmp_path, capsys):
    out = tmp_path / "stress"
    write_stress(out, 0.3)
    report = source_transfer(out, "^NORMAL2-")
    (out / "transfer.json").unlink()
    for name in CONDITIONS:  # what --rescore needs besides the predictions
        (out / name / "metrics.json").write_text(json.dumps({"threshold": 0.5}))
    assert main(["study", "rescore", str(out), "--held-out-source", "^NORMAL2-"]) == 0
    printed = capsys.readouterr().out
    assert "held-out source '^NORMAL2-'" in printed and f"chosen rule: {report['chosen_rule']}" in printed
    assert json.loads((out / "transfer.json").read_text())["rules"] == report["rules"]
