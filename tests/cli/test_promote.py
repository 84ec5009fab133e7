"""``monai-pneumonia promote``: unusable checkpoints refused in one line, the gate, strict JSON records, rollback."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest
import torch

from monai_pneumonia.cli import main
from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.registry import PROMOTION_LOG
from monai_pneumonia.results import file_sha256


@pytest.fixture()
def bundle_copy(tiny_bundle, tmp_path):
    """A private copy of the tiny bundle (these tests replace its model)."""
    return shutil.copytree(tiny_bundle, tmp_path / "bundle")


def _log(bundle):
    """promotions.jsonl as records, read as strict JSON (NaN or Infinity fail the test)."""
    path = bundle / "models" / PROMOTION_LOG
    if not path.is_file():
        return []

    def refuse(name):
        raise AssertionError(f"{name} in {PROMOTION_LOG}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def _with(shipped, tmp_path, name, edit):
    """A copy of the shipped checkpoint with ``edit(state)`` applied."""
    state = torch.load(shipped, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / name)
    return tmp_path / name


def _set_threshold(value):
    def edit(state):
        state["operating_threshold"] = torch.tensor(value, dtype=torch.float32)
    return edit


def _nan_weights(state):
    key = next(key for key, value in state.items() if key.endswith("weight") and value.is_floating_point())
    state[key] = torch.full_like(state[key], float("nan"))


def _flip_head(state):
    """Swap the two output logits: the pneumonia probability becomes exactly 1 - p, the ranking reversed."""
    state["fc.weight"], state["fc.bias"] = state["fc.weight"].flip(0), state["fc.bias"].flip(0)


@pytest.mark.parametrize("name, edit, problem", [
    ("nan.pt", _set_threshold(float("nan")), "operating_threshold nan is not a number in [0, 1]"),
    ("high.pt", _set_threshold(1.5), "operating_threshold 1.5 is not a number in [0, 1]"),
    ("low.pt", _set_threshold(-0.5), "operating_threshold -0.5 is not a number in [0, 1]"),
    ("nanweights.pt", _nan_weights, "the weights hold NaN or infinite values"),
])
def test_an_unusable_checkpoint_is_refused_even_with_force(bundle_copy, tmp_path, capsys, name, edit, problem):
    shipped = bundle_copy / "models" / "model.pt"
    before = file_sha256(shipped)
    candidate = _with(shipped, tmp_path, name, edit)
    assert main(["promote", str(candidate), "--bundle", str(bundle_copy), "--force", "--note", "try"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(candidate) in err[0] and problem in err[0]
    assert file_sha256(shipped) == before and _log(bundle_copy) == []


def test_a_truncated_checkpoint_is_one_line_and_exit_2(bundle_copy, tmp_path):
    """As a user runs it: its own process, no traceback, the shipped model untouched."""
    shipped = bundle_copy / "models" / "model.pt"
    before = file_sha256(shipped)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(shipped.read_bytes()[: shipped.stat().st_size // 2])
    result = subprocess.run([sys.executable, "-m", "monai_pneumonia", "promote", str(truncated), "--bundle",
                             str(bundle_copy), "--force", "--note", "x"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"monai-pneumonia promote: error: {truncated}: unreadable or truncated checkpoint (")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert file_sha256(shipped) == before and _log(bundle_copy) == []


def test_a_shipped_model_with_a_nan_threshold_is_refused_by_predict(bundle_copy, tiny_dataset, tmp_path, capsys):
    """A NaN never becomes a decision: a broken model.pt put in place by hand is refused, not used."""
    shipped = bundle_copy / "models" / "model.pt"
    broken = _with(shipped, tmp_path, "broken.pt", _set_threshold(float("nan")))
    shutil.copy(broken, shipped)
    image = next(iter(sorted(tiny_dataset.rglob("*.png"))))
    assert main(["predict", str(image), "--bundle", str(bundle_copy), "--output-dir", str(tmp_path / "o")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("monai-pneumonia: error: ") and "Traceback" not in last
    assert last.endswith("model.pt: the stored operating_threshold nan is not a number in [0, 1]")


def test_a_nan_probability_is_refused_not_called_normal(tiny_bundle, tiny_dataset, monkeypatch):
    classifier = BundleClassifier.from_bundle(tiny_bundle)
    images = sorted(str(p) for p in tiny_dataset.rglob("*.png"))[:3]
    real = classifier._classify_batch

    def one_nan(batch, threshold):
        answers = real(batch, threshold)
        return [(math.nan, meta) if index == 1 else (prob, meta) for index, (prob, meta) in enumerate(answers)]

    monkeypatch.setattr(classifier, "_classify_batch", one_nan)
    results = classifier.classify(images)
    assert [type(r).__name__ for r in results] == ["Classification", "Refusal", "Classification"]
    assert results[1].image == images[1] and "non-finite" in results[1].error


def _labelled_by_the_shipped_model(bundle, dataset, path):
    """A datalist whose labels the shipped model ranks perfectly: label 1 for its upper half of probabilities."""
    images = sorted(str(p) for p in dataset.rglob("*.png"))
    probs = [r.prob_pneumonia for r in BundleClassifier.from_bundle(bundle).classify(images)]
    median = sorted(probs)[len(probs) // 2]
    items = [{"image": image, "label": int(p >= median), "patient": f"p{i}"}
             for i, (image, p) in enumerate(zip(images, probs, strict=True))]
    path.write_text(json.dumps({"training": [], "test": items}))
    return path


def test_the_gate_refuses_a_worse_candidate_and_force_note_installs_it(bundle_copy, tiny_dataset, tmp_path, capsys):
    shipped = bundle_copy / "models" / "model.pt"
    original = file_sha256(shipped)
    datalist = _labelled_by_the_shipped_model(bundle_copy, tiny_dataset, tmp_path / "site.json")
    worse = _with(shipped, tmp_path, "worse.pt", _flip_head)

    # without films to compare on: refused, unless forced with a reason
    assert main(["promote", str(worse), "--bundle", str(bundle_copy)]) == 2
    assert "needs --datalist" in capsys.readouterr().err
    assert main(["promote", str(worse), "--bundle", str(bundle_copy), "--force"]) == 2
    assert "--force needs --note" in capsys.readouterr().err
    assert file_sha256(shipped) == original and _log(bundle_copy) == []

    # the reversed ranking: AUC 1 - AUC, refused by the paired bootstrap, logged, the model untouched
    args = ["promote", str(worse), "--bundle", str(bundle_copy), "--datalist", str(datalist), "--n-bootstrap", "200"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"monai-pneumonia promote: refused: {worse} is worse")
    assert "is below 0" in err[0] and file_sha256(shipped) == original
    [refused] = _log(bundle_copy)
    assert refused["action"] == "refused" and refused["sha256"] == file_sha256(worse)
    verdict = refused["evaluation"]
    assert verdict["passed"] is False and verdict["current"]["auc"] == pytest.approx(1.0)
    assert verdict["candidate"]["auc"] == pytest.approx(0.0) and verdict["auc_difference_ci95"][1] < 0
    assert verdict["n"] == 24 and verdict["split"] == "test"

    # --force --note: installed, the refusal and the reason on the record
    assert main([*args, "--force", "--note", "testing the override"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert file_sha256(shipped) == file_sha256(worse) == record["sha256"]
    assert record["forced"] is True and record["note"] == "testing the override"
    assert record["evaluation"]["passed"] is False and record["replaced_sha256"] == original
    assert [r["action"] for r in _log(bundle_copy)] == ["refused", "promote"]


def test_a_candidate_as_good_passes_the_gate(bundle_copy, tiny_dataset, tmp_path, capsys):
    shipped = bundle_copy / "models" / "model.pt"
    datalist = _labelled_by_the_shipped_model(bundle_copy, tiny_dataset, tmp_path / "site.json")
    same = _with(shipped, tmp_path, "same.pt", lambda state: None)  # saved again: other bytes, the same answers
    assert file_sha256(same) != file_sha256(shipped)
    assert main(["promote", str(same), "--bundle", str(bundle_copy), "--datalist", str(datalist),
                 "--n-bootstrap", "200"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["forced"] is False and record["evaluation"]["passed"] is True
    assert record["evaluation"]["auc_difference"] == 0.0 and file_sha256(shipped) == file_sha256(same)


def test_rollback_restores_the_replaced_model_and_is_logged(bundle_copy, tmp_path, capsys):
    shipped = bundle_copy / "models" / "model.pt"
    original = file_sha256(shipped)
    assert main(["promote", "--rollback", "--bundle", str(bundle_copy)]) == 2
    assert "nothing to roll back" in capsys.readouterr().err
    candidate = _with(shipped, tmp_path, "candidate.pt", _set_threshold(0.25))
    assert main(["promote", str(candidate), "--bundle", str(bundle_copy), "--force", "--note", "trial"]) == 0
    capsys.readouterr()
    assert file_sha256(shipped) == file_sha256(candidate)

    assert main(["promote", "--rollback", "--bundle", str(bundle_copy), "--note", "trial over"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert file_sha256(shipped) == original == record["sha256"]
    assert record["action"] == "rollback" and record["replaced_sha256"] == file_sha256(candidate)
    assert [r["action"] for r in _log(bundle_copy)] == ["promote", "rollback"]

    # a second rollback undoes the first; a model changed by hand is not rolled back over
    assert main(["promote", "--rollback", "--bundle", str(bundle_copy)]) == 0
    capsys.readouterr()
    assert file_sha256(shipped) == file_sha256(candidate)
    shutil.copy(_with(shipped, tmp_path, "by_hand.pt", _set_threshold(0.3)), shipped)
    assert main(["promote", "--rollback", "--bundle", str(bundle_copy)]) == 2
    assert "changed outside promote" in capsys.readouterr().err
    assert file_sha256(shipped) == file_sha256(tmp_path / "by_hand.pt") and len(_log(bundle_copy)) == 3
