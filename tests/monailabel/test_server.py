"""The MONAI Label app behind a real server: ``/info/``, ``/infer/pneumonia`` on PNG, JPEG and DICOM, errors.

Scores are compared with :class:`~monai_pneumonia.inference.BundleClassifier` run here, in the project's main
environment (pydicom 3), on the same files: the server runs in ``.venv-monailabel/`` (pydicom 2.4).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
from PIL import Image

from tests.factories import gradient_picture, write_dicom, write_png
from tests.monailabel.server import MONAILABEL_PYTHON, start_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not MONAILABEL_PYTHON.exists(),
                       reason=f"{MONAILABEL_PYTHON} missing: `make setup` creates the MONAI Label environment"),
]

ROWS, COLUMNS = 48, 40
#: Largest allowed difference between the server's score and the bundle's in-process score (both run the bundle's
#: backend, ONNX Runtime in float32; only the two environments' builds differ).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A studies folder with one radiograph per format: PNG, JPEG, MONOCHROME1 DICOM, and a DICOM and a PNG that
    share a stem (``twin``)."""
    root = tmp_path_factory.mktemp("studies")
    write_png(root / "chest_png.png", gradient_picture(ROWS, COLUMNS, seed=1))
    Image.fromarray(gradient_picture(ROWS, COLUMNS, seed=2)).save(root / "chest_jpeg.jpg", quality=95)
    write_dicom(root / "chest_dicom.dcm", gradient_picture(ROWS, COLUMNS, seed=3), photometric="MONOCHROME1",
                bits_stored=12)
    write_dicom(root / "twin.dcm", gradient_picture(ROWS, COLUMNS, seed=4))
    write_png(root / "twin.png", gradient_picture(ROWS, COLUMNS, seed=5))
    return root


@pytest.fixture(scope="module")
def expected(studies, tiny_bundle):
    """``{file name: Classification}`` from the bundle's in-process inference on the studies' files."""
    from monai_pneumonia.inference import BundleClassifier

    files = sorted(p for p in studies.iterdir() if p.is_file())
    results = BundleClassifier.from_bundle(tiny_bundle, device="cpu").classify(files)
    return {r.image.rsplit("/", 1)[-1]: r for r in results}


@pytest.fixture(scope="module")
def server_tmp(tmp_path_factory):
    """The server's TMPDIR."""
    return tmp_path_factory.mktemp("server_tmp")


@pytest.fixture(scope="module")
def server(studies, tiny_bundle, tmp_path_factory, server_tmp):
    """The server with the app on ``tiny_bundle``."""
    with start_server(tmp_path_factory.mktemp("monailabel"), studies, {"bundle": str(tiny_bundle), "device": "cpu"},
                      env={"TMPDIR": os.fspath(server_tmp)}) as running:
        yield running


def test_info_lists_the_classification_model(server):
    info = server.request("GET", "/info/").json()
    model = info["models"]["pneumonia"]
    assert model["type"] == "classification"
    assert model["labels"] == {"normal": 0, "pneumonia": 1}
    assert model["config"]["cam"] is False
    assert info["labels"] == ["normal", "pneumonia"]


@pytest.mark.parametrize("stem", ["chest_png.png", "chest_jpeg.jpg", "chest_dicom.dcm", "twin.dcm", "twin.png"])
def test_scores_match_the_bundle(server, expected, stem):
    reply = server.infer(stem)
    assert reply.status == 200, server.log_tail()
    result = reply.json()
    scores = {p["label"]: p["score"] for p in result["prediction"]}
    reference = expected[stem]
    assert scores["pneumonia"] == pytest.approx(reference.prob_pneumonia, abs=TOLERANCE)
    assert scores["normal"] + scores["pneumonia"] == pytest.approx(1.0, abs=1e-5)
    assert result["prob_pneumonia"] == scores["pneumonia"]
    assert result["threshold"] == pytest.approx(reference.threshold)
    positive = result["prob_pneumonia"] >= result["threshold"]
    assert result["predicted"] == {"idx": int(positive), "label": "pneumonia" if positive else "normal"}
    if abs(reference.prob_pneumonia - reference.threshold) > TOLERANCE:
        assert result["predicted"]["label"].upper() == reference.prediction


def test_cam_comes_back_as_a_png_the_size_of_the_image(server, studies, tiny_bundle):
    from monai_pneumonia.inference import BundleClassifier

    reply = server.infer("chest_dicom.dcm", output="image", cam=True)
    assert reply.status == 200, server.log_tail()
    heatmap = np.asarray(Image.open(io.BytesIO(reply.body)), dtype=np.float64)
    assert heatmap.shape == (ROWS, COLUMNS)
    _, cam = BundleClassifier.from_bundle(tiny_bundle, device="cpu").grad_cam(studies / "chest_dicom.dcm")
    reference = Image.fromarray(cam[0].numpy().T).resize((COLUMNS, ROWS), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(heatmap / 255.0, np.asarray(reference), atol=2 / 255)
    result = server.infer("chest_dicom.dcm", output="json", cam=True).json()
    assert result["cam"] == {"format": "png", "rows": ROWS, "columns": COLUMNS, "class": 1}


def test_unknown_image_is_a_clear_error_and_the_server_keeps_serving(server):
    reply = server.infer("no_such_image")
    assert reply.status == 404
    assert "no_such_image" in reply.json()["detail"]
    assert server.request("GET", "/info/").status == 200
    assert server.infer("chest_png.png").status == 200


def test_a_path_outside_the_studies_is_answered_as_an_unknown_id(server, studies, tmp_path):
    outside = write_png(tmp_path / "elsewhere.png", gradient_picture(ROWS, COLUMNS, seed=6))
    missing = tmp_path / "missing.png"
    answers = [server.infer(os.fspath(path)) for path in (outside, missing)]
    assert [a.status for a in answers] == [404, 404], server.log_tail()
    details = [a.json()["detail"].replace(os.fspath(p), "ID") for a, p in zip(answers, (outside, missing), strict=True)]
    assert details[0] == details[1]  # the same answer: nothing told about the server's files
    assert server.infer(os.fspath(studies / "chest_png.png")).status == 200  # a path inside the studies is fine
    assert server.infer(os.fspath(studies / ".." / tmp_path.name / "elsewhere.png")).status == 404


def _upload(server, name: str, data: bytes):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(server.url + "/infer/pneumonia?output=json", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_uploads_are_private_and_deleted_after_use(server, studies, expected, server_tmp):
    status, result = _upload(server, "x.png", (studies / "chest_png.png").read_bytes())
    assert status == 200, server.log_tail()
    assert result["prob_pneumonia"] == pytest.approx(expected["chest_png.png"].prob_pneumonia, abs=TOLERANCE)
    for _ in range(3):
        assert _upload(server, "y.png", b"not a picture")[0] == 422
    [private] = server_tmp.glob("monai-pneumonia-label-*")  # the app's own folder in the server's TMPDIR
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert [p.name for p in server_tmp.rglob("*.png")] == []  # each upload deleted once answered


def test_missing_checkpoint_answers_503_until_the_model_is_shipped(studies, tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle, ignore=shutil.ignore_patterns("*.pt"))
    with start_server(tmp_path, studies, {"bundle": str(bundle), "device": "cpu"}) as server:
        assert "pneumonia" not in server.request("GET", "/info/").json()["models"]
        reply = server.infer("chest_png.png")
        assert reply.status == 503
        assert "model.pt" in reply.json()["detail"]
        shutil.copy(tiny_bundle / "models" / "model.pt", bundle / "models" / "model.pt")
        assert "pneumonia" in server.request("GET", "/info/").json()["models"]
        assert server.infer("chest_png.png").status == 200
