"""One site profile, every entry point: predict, evaluate, the bundle, serve's worker and MONAI Label decide alike.

Also: a profile bound to another model, missing or malformed is a one-line error with exit status 2, and every
result names the model's SHA-256 (the SR's algorithm version included).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest

from monai_pneumonia.cli import build_parser, main
from monai_pneumonia.cli.serve import _default_reference, resolve_options
from monai_pneumonia.decision import CLASS_NAMES
from monai_pneumonia.errors import SiteProfileError
from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.monitoring import load_reference as load_drift_reference
from monai_pneumonia.results import file_sha256
from monai_pneumonia.site.fit import SITE_REFERENCE, SiteSample, site_records
from monai_pneumonia.site_profile import SiteProfile, load_site_profile
from tests.conftest import run_bundle
from tests.factories import gradient_picture, write_dicom
from tests.monailabel.server import MONAILABEL_PYTHON, start_server

#: Largest score difference allowed between the MONAI Label environment (pydicom 2.4) and this one.
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """Six DICOM chest films, three with the texture the tiny model learnt as pneumonia."""
    root = tmp_path_factory.mktemp("site_films")
    columns = np.arange(40)[None, :]
    paths = []
    for seed in range(6):
        picture = gradient_picture(48, 40, seed=seed).astype(np.float64)
        if seed % 2:
            picture += 50 * np.sin(12 * columns / 40) * (0.5 + seed / 10)
        paths.append(write_dicom(root / f"film{seed}.dcm", np.clip(picture, 0, 255).astype(np.uint8)))
    return paths


@pytest.fixture(scope="module")
def shipped(tiny_bundle, films):
    return BundleClassifier.from_bundle(tiny_bundle, device="cpu").classify(films)


@pytest.fixture(scope="module")
def profile(tiny_bundle, shipped, tmp_path_factory):
    """A profile for the tiny model whose threshold changes at least one decision (in the widest score gap)."""
    probs = np.array([r.prob_pneumonia for r in shipped])
    threshold = shipped[0].threshold
    ordered = np.sort(probs)
    gaps = sorted(zip(np.diff(ordered), (ordered[:-1] + ordered[1:]) / 2, strict=True), reverse=True)
    cut = next(mid for _, mid in gaps if ((probs >= mid) != (probs >= threshold)).any())
    path = tmp_path_factory.mktemp("profile") / "site.json"
    SiteProfile(model_sha256=file_sha256(tiny_bundle / "models" / "model.pt"), rule="threshold",
                threshold=float(cut)).save(path)
    return path


@pytest.fixture(scope="module")
def expected(shipped, profile):
    site = load_site_profile(profile)
    return {r.image.rsplit("/", 1)[-1]: ("PNEUMONIA" if site.decide(r.prob_pneumonia) else "NORMAL") for r in shipped}


def _name(path) -> str:
    return str(path).rsplit("/", 1)[-1]


def test_the_profile_changes_decisions(shipped, expected):
    assert any(expected[_name(r.image)] != r.prediction for r in shipped)


def test_predict_and_evaluate_decide_by_the_profile(tiny_bundle, films, profile, expected, tmp_path, capsys):
    assert main(["predict", *map(str, films), "--bundle", str(tiny_bundle), "--site", str(profile), "--json",
                 "--output-dir", str(tmp_path / "p")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # one per-film record a line
    assert {_name(r["image"]): r["decision"] for r in rows} == expected
    model_sha = file_sha256(tiny_bundle / "models" / "model.pt")
    profile_sha = hashlib.sha256(profile.read_bytes()).hexdigest()
    assert {(r["model_sha256"], r["site_profile_sha256"]) for r in rows} == {(model_sha, profile_sha)}
    with (tmp_path / "p" / "predictions.csv").open() as stream:
        assert {row["model_sha256"] for row in csv.DictReader(stream)} == {model_sha}

    labelled = tmp_path / "labelled"
    for path in films:
        folder = labelled / ("PNEUMONIA" if int(path.stem[-1]) % 2 else "NORMAL")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    assert main(["evaluate", "--dataset-dir", str(labelled), "--bundle", str(tiny_bundle), "--site", str(profile),
                 "--output-dir", str(tmp_path / "e"), "--no-progress"]) == 0
    with (tmp_path / "e" / "predictions.csv").open() as stream:
        assert {_name(row["image"]): row["prediction"] for row in csv.DictReader(stream)} == expected
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["model_sha256"] == model_sha and metrics["site_profile_sha256"] == profile_sha
    assert profile_sha in (tmp_path / "e" / "report.html").read_text()


def test_the_bundle_decides_by_its_site_profile_knob(tiny_bundle, films, profile, expected, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in films:
        shutil.copy(path, inputs / path.name)
    run_bundle("run", "--config_file", str(tiny_bundle / "configs" / "inference.json"), "--bundle_root",
               str(tiny_bundle), "--dataset_dir", str(inputs), "--output_dir", str(tmp_path / "out"),
               "--site_profile", str(profile))
    with (tmp_path / "out" / "predictions.csv").open() as stream:
        assert {_name(row["image"]): row["prediction"] for row in csv.DictReader(stream)} == expected


def test_serve_worker_decides_by_the_profile_and_its_sr_names_the_model(tiny_bundle, films, profile, expected,
                                                                       tmp_path):
    from monai_pneumonia.service import Journal, Spool
    from monai_pneumonia.service.reports import AlgorithmInfo
    from monai_pneumonia.service.resultslog import ResultsLog
    from monai_pneumonia.service.worker import Worker

    classifier = BundleClassifier.from_bundle(tiny_bundle, device="cpu", site_profile=str(profile))
    spool, outbox = Spool(tmp_path / "in"), Spool(tmp_path / "out")
    items, names = [], {}
    for path in films:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        items.append((uid, spool.write(uid, path.read_bytes())))
        names[uid] = path.name
    algorithm = AlgorithmInfo().identified(classifier.identity)
    worker = Worker(spool, outbox.root, Journal(tmp_path / "j.sqlite"), classifier, ["PACS"],
                    ResultsLog(tmp_path / "results.jsonl"), algorithm=algorithm)
    worker.process(items)
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    classified = [r for r in records if r["event"] == "classified"]
    model_sha = file_sha256(tiny_bundle / "models" / "model.pt")
    assert {r["model_sha256"] for r in classified} == {model_sha}
    assert {r["site_profile_sha256"] for r in classified} == {hashlib.sha256(profile.read_bytes()).hexdigest()}
    assert {names[r["sop_instance_uid"]]: r["prediction"] for r in classified} == expected
    sr_files = sorted(outbox.root.glob("*.dcm"))
    assert sr_files
    sr = hd.sr.srread(sr_files[0])
    group = sr.content.get_image_measurement_groups()[0]
    texts = [item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"]
    assert model_sha in texts  # Algorithm Version (TID 4019) is the model's SHA-256
    assert any(text.startswith("site_profile_sha256=") for text in texts)


def test_sr_algorithm_version_is_the_model_sha256(tmp_path):
    from monai_pneumonia.service import PneumoniaFinding, build_pneumonia_sr
    from monai_pneumonia.service.reports import AlgorithmInfo, encode

    source = pydicom.dcmread(write_dicom(tmp_path / "cr.dcm", gradient_picture(), modality="CR"),
                             stop_before_pixels=True)
    sha = "ab" * 32
    algorithm = AlgorithmInfo().identified({"model_sha256": sha, "site_profile_sha256": "", "site_rule": ""})
    path = tmp_path / "sr.dcm"
    path.write_bytes(encode(build_pneumonia_sr(source, PneumoniaFinding(0.7, 0.4), algorithm)))
    group = hd.sr.srread(path).content.get_image_measurement_groups()[0]
    texts = {item.name.meaning: item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"}
    assert texts["Algorithm Version"] == sha


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not MONAILABEL_PYTHON.exists(), reason=f"{MONAILABEL_PYTHON} missing (make setup)")
def test_monailabel_decides_by_the_profile(tiny_bundle, films, profile, shipped, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for path in films:
        shutil.copy(path, studies / path.name)
    site = load_site_profile(profile)
    with start_server(tmp_path / "server", studies, {"bundle": str(tiny_bundle), "device": "cpu",
                                                     "site_profile": str(profile)}) as server:
        for result in shipped:
            reply = server.infer(_name(result.image))  # an image id is the full file name
            assert reply.status == 200, server.log_tail()
            answer = reply.json()
            assert answer["threshold"] == pytest.approx(site.threshold)
            assert answer["model_sha256"] == site.model_sha256
            if abs(result.prob_pneumonia - site.threshold) > TOLERANCE:
                assert answer["predicted"]["label"].upper() == ("PNEUMONIA" if site.decide(result.prob_pneumonia)
                                                                 else "NORMAL")


# -- refusals --------------------------------------------------------------------------------------------------


def test_a_profile_of_another_model_is_refused_with_exit_2(tiny_bundle, films, tmp_path, capsys):
    other = tmp_path / "other.json"
    SiteProfile(model_sha256="0" * 64, rule="threshold", threshold=0.4).save(other)
    assert main(["predict", str(films[0]), "--bundle", str(tiny_bundle), "--site", str(other),
                 "--output-dir", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bound to model 000000000000" in err and str(other) in err
    assert not (tmp_path / "p" / "predictions.csv").exists()


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"format": "something else"}),
                                     json.dumps({"format": "monai-pneumonia-site-profile/1", "rule": "threshold"})])
def test_a_missing_or_malformed_profile_is_refused_with_exit_2(tiny_bundle, trained_bundle, tmp_path, capsys,
                                                             content):
    path = tmp_path / "site.json"
    if content is not None:
        path.write_text(content)
    assert main(["evaluate", "--dataset-dir", str(trained_bundle["dataset_dir"]), "--bundle", str(tiny_bundle),
                 "--site", str(path),
                 "--output-dir", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err


def test_a_profile_with_an_invalid_threshold_is_refused(tmp_path):
    path = tmp_path / "site.json"
    stored = SiteProfile(model_sha256="1" * 64, rule="threshold", threshold=0.5).to_json()
    path.write_text(json.dumps({**stored, "threshold": float("nan")}))
    with pytest.raises(SiteProfileError, match="threshold"):
        load_site_profile(path)


def test_site_fit_writes_the_profile_and_the_report(tiny_bundle, trained_bundle, tmp_path, capsys):
    output = tmp_path / "profile"
    assert main(["site", "fit", str(trained_bundle["dataset_dir"]), "--output", str(output), "--bundle",
                 str(tiny_bundle), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "verdict INSUFFICIENT" in out  # 12 films per class: too few to judge
    site = load_site_profile(output / "site.json", file_sha256(tiny_bundle / "models" / "model.pt"))
    acceptance = json.loads((output / "acceptance.json").read_text())
    assert acceptance["verdict"] == "INSUFFICIENT" and site.sample["n"] == 24
    html = (output / "acceptance.html").read_text()
    assert "INSUFFICIENT" in html and "cross-validated" in html and "95%" in html
    assert "not for diagnosis or triage" in html  # the intended use on every human-readable result
    # the accepted sample becomes the site's drift reference, decided by the site rule, with no path or label
    reference = load_drift_reference(output / SITE_REFERENCE)
    assert reference.model_sha256 == file_sha256(tiny_bundle / "models" / "model.pt") and reference.count == 24
    stored = (output / SITE_REFERENCE).read_text()
    assert str(trained_bundle["dataset_dir"]) not in stored and "person" not in stored and "IM-" not in stored
    records = site_records(SiteSample(["a.png", "b.png"], [0, 1], [0.2, 0.9], [{"image": "c.png", "error": "bad"}],
                                      [{}, {}]), site, "ab" * 32)
    assert [r.get("decision") for r in records] == [CLASS_NAMES[site.decide(0.2)], CLASS_NAMES[site.decide(0.9)], None]
    assert records[2]["refused"] and records[2]["reason"] == "bad" and all("a.png" not in str(r) for r in records)
    # serve --site watches against it unless told otherwise
    args = resolve_options(build_parser().parse_args(["serve", "--site", str(output / "site.json"), "--bundle",
                                                      str(tiny_bundle)]))
    assert _default_reference(args) == output / SITE_REFERENCE
    args = resolve_options(build_parser().parse_args(["serve", "--bundle", str(tiny_bundle)]))
    assert _default_reference(args) in (None, tiny_bundle / "models" / "model.reference.json")
