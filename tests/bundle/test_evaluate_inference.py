"""evaluate.json and inference.json on the tiny trained model, plus the bundle's verify and export commands."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from tests.conftest import CONFIGS, REPO, TINY, bundle_command, configured_network, run_bundle

METRIC_KEYS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "n", "threshold")


def read_rows(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def run_config(names, dataset_dir, ckpt_dir, output_dir, *extra):
    """``python -m monai.bundle run`` on one config, or on a list merged in order (the model-zoo overlay)."""
    files = [names] if isinstance(names, str) else names
    config_file = str(CONFIGS / files[0]) if len(files) == 1 else "[" + ",".join(f"'{CONFIGS / f}'" for f in files) + "]"
    return run_bundle("run", "--config_file", config_file, "--dataset_dir", str(dataset_dir),
                      "--ckpt_dir", str(ckpt_dir), "--output_dir", str(output_dir), *TINY, *extra)


@pytest.fixture(scope="module")
def evaluation(trained_bundle, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("evaluation")
    run_config(["inference.json", "evaluate.json"], trained_bundle["dataset_dir"], trained_bundle["ckpt_dir"], output_dir,
               "--gallery_size", "2", "--n_bootstrap", "200")
    return output_dir


def test_evaluate_writes_metrics_with_confidence_intervals(evaluation, trained_bundle):
    metrics = json.loads((evaluation / "metrics.json").read_text())
    for key in METRIC_KEYS:
        assert key in metrics, key
    assert metrics["n"] == 24
    for key in ("accuracy", "sensitivity", "specificity", "auc"):
        low, high = metrics[f"{key}_ci95"]
        assert low <= metrics[key] <= high
    stored = torch.load(trained_bundle["ckpt_dir"] / "model.pt", weights_only=True)["operating_threshold"]
    assert metrics["threshold"] == pytest.approx(float(stored), abs=1e-6), "evaluate must use the stored threshold"
    rows = read_rows(evaluation / "predictions.csv")
    assert len(rows) == 24
    predicted = [row["prediction"] == "PNEUMONIA" for row in rows]
    assert predicted == [float(row["prob_pneumonia"]) >= metrics["threshold"] for row in rows]
    assert all(float(row["threshold"]) == pytest.approx(metrics["threshold"], abs=1e-6) for row in rows)
    assert {row["flags"] for row in rows} == {""}  # PNGs: no DICOM policy flags


def test_evaluate_report_has_the_plots(evaluation):
    html = (evaluation / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4, "ROC, confusion matrix, calibration and CAM images expected"


def test_evaluate_report_names_the_model_the_data_and_its_limits(evaluation, trained_bundle):
    import hashlib

    from monai_pneumonia import __version__

    html = (evaluation / "report.html").read_text()
    checkpoint = trained_bundle["ckpt_dir"] / "model.pt"
    assert f"{checkpoint} (SHA-256 {hashlib.sha256(checkpoint.read_bytes()).hexdigest()})" in html
    assert f"monai-pneumonia {__version__}" in html
    assert f"every image under {trained_bundle['dataset_dir']}" in html and "training" not in html.lower()
    assert "Not a medical device" in html and "Too few films for the intervals to mean anything" in html


@pytest.fixture(scope="module")
def inference(trained_bundle, tmp_path_factory):
    inputs = tmp_path_factory.mktemp("inference_inputs")
    shutil.copytree(trained_bundle["dataset_dir"], inputs, dirs_exist_ok=True)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and nothing valid
    (inputs / "notes.txt").write_text("not an image: skipped by the folder scan")
    output_dir = tmp_path_factory.mktemp("inference")
    run_config("inference.json", inputs, trained_bundle["ckpt_dir"], output_dir, "--save_cam", "true")
    return {"inputs": inputs, "output_dir": output_dir, "ckpt_dir": trained_bundle["ckpt_dir"]}


def test_inference_predicts_readable_files_and_lists_refused_ones(inference, evaluation):
    output_dir = inference["output_dir"]
    with open(output_dir / "predictions.csv", newline="") as stream:
        assert stream.readline().strip() == ("image,prob_pneumonia,prediction,threshold,cam,flags,model_sha256,"
                                             "site_profile_sha256")
    rows = read_rows(output_dir / "predictions.csv")
    assert len(rows) == 24
    assert {row["prediction"] for row in rows} <= {"NORMAL", "PNEUMONIA"}
    threshold = float(torch.load(inference["ckpt_dir"] / "model.pt", weights_only=True)["operating_threshold"])
    for row in rows:  # each row: its threshold, its own overlay (named after its file), the loader's flags
        assert float(row["threshold"]) == pytest.approx(threshold, abs=1e-6)
        assert row["prediction"] == ("PNEUMONIA" if float(row["prob_pneumonia"]) >= float(row["threshold"]) else "NORMAL")
        assert row["cam"].startswith(str(output_dir / "cam" / row["image"].rsplit("/", 1)[-1]))
        assert (output_dir / "cam" / row["cam"].rsplit("/", 1)[-1]).is_file()
        assert "secondary_capture" not in row["flags"]  # PNGs carry no DICOM policy flags
    errors = read_rows(output_dir / "errors.csv")
    assert [row["image"].endswith("broken.png") for row in errors] == [True]
    assert errors[0]["error"].strip(), "a refusal needs its reason"
    # the same images through evaluate.json get the same probabilities (one preprocessing, one model)
    evaluated = {row["image"].split("/")[-1]: float(row["prob_pneumonia"]) for row in read_rows(evaluation / "predictions.csv")}
    inferred = {row["image"].split("/")[-1]: float(row["prob_pneumonia"]) for row in rows}
    assert evaluated.keys() == inferred.keys()
    np.testing.assert_allclose([inferred[k] for k in evaluated], list(evaluated.values()), atol=1e-5)


def test_inference_saves_grad_cam_overlays(inference):
    overlays = list((inference["output_dir"] / "cam").glob("*.png"))
    assert len(overlays) == 24


def test_inference_fails_when_nothing_is_readable(trained_bundle, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 10)  # a truncated DICOM
    command = bundle_command("run", "--config_file", str(CONFIGS / "inference.json"), "--dataset_dir",
                             str(tmp_path / "in"), "--ckpt_dir", str(trained_bundle["ckpt_dir"]), "--output_dir",
                             str(tmp_path / "out"), *TINY)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = read_rows(tmp_path / "out" / "errors.csv")
    assert len(errors) == 1 and errors[0]["image"].endswith("a.dcm")


def test_verify_metadata_with_the_offline_schema(tmp_path):
    schema = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"
    if not schema.is_file():
        pytest.skip(f"offline schema not found at {schema}")
    run_bundle("verify_metadata", "--meta_file", str(CONFIGS / "metadata.json"), "--filepath", str(schema))


def test_verify_net_in_out():
    run_bundle("verify_net_in_out", "network_def", "--meta_file", str(CONFIGS / "metadata.json"),
               "--config_file", str(CONFIGS / "inference.json"), "--network_def#depth", "18")


@pytest.fixture()
def trained_network(trained_bundle):

    network = configured_network(depth=18).eval()
    network.load_state_dict(torch.load(trained_bundle["ckpt_dir"] / "model.pt", weights_only=True))
    return network


def export(command, trained_bundle, exported):
    """Run the bundle's ``ckpt_export``/``onnx_export`` on the tiny checkpoint."""
    run_bundle(command, "network_def", "--filepath", str(exported), "--ckpt_file",
               str(trained_bundle["ckpt_dir"] / "model.pt"), "--meta_file", str(CONFIGS / "metadata.json"),
               "--config_file", str(CONFIGS / "inference.json"), "--network_def#depth", "18",
               "--use_trace", "True", "--input_shape", "[1, 1, 32, 32]")


def test_torchscript_export_round_trip(trained_bundle, trained_network, tmp_path):
    exported = tmp_path / "model.ts"
    export("ckpt_export", trained_bundle, exported)
    network = trained_network
    scripted = torch.jit.load(str(exported)).eval()
    inputs = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(inputs), network(inputs), atol=1e-4, rtol=1e-4)
    assert float(scripted.operating_threshold) == pytest.approx(float(network.operating_threshold))


def test_onnx_export_round_trip(trained_bundle, trained_network, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    exported = tmp_path / "model.onnx"
    export("onnx_export", trained_bundle, exported)
    network = trained_network
    inputs = torch.randn(1, 1, 32, 32)
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(output, network(inputs).numpy(), atol=1e-4, rtol=1e-4)


def test_evaluate_is_a_plain_overlay_of_inference():
    """evaluate.json adds and replaces entries of inference.json (merged by file list); it copies and macros none."""
    from monai.bundle import ConfigParser

    inference = json.loads((CONFIGS / "inference.json").read_text())
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text())
    assert "network_def" not in evaluate and "imports" not in evaluate
    assert not [key for key, value in evaluate.items() if key in inference and inference[key] == value]
    assert "%" not in json.dumps(evaluate), "no macros into inference.json: the file list merges them"
    merged = ConfigParser.load_config_files([CONFIGS / "inference.json", CONFIGS / "evaluate.json"])
    assert merged["network_def"] == inference["network_def"] and merged["evaluator"] == inference["evaluator"]
    assert merged["preprocessing"] == {**inference["preprocessing"], "augmentations": evaluate["preprocessing#augmentations"]}
    assert merged["handlers"] == evaluate["handlers"]


def test_train_and_inference_build_the_same_network():
    """The model inference.json loads is the one train.json trains: one ``network_def`` in both."""
    train = json.loads((CONFIGS / "train.json").read_text())
    inference = json.loads((CONFIGS / "inference.json").read_text())
    assert train["network_def"] == inference["network_def"]
