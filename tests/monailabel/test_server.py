"""The MONAI Label app behind a real server: ``/info/``, ``/infer/pneumonia`` on PNG, JPEG and DICOM, errors.

Scores are compared with :class:`~monai_pneumonia.inference.BundleClassifier` run here, in the project's main
environment (pydicom 3), on the same files: the server runs in ``.venv-monailabel/`` (pydicom 2.4).
"""

from __future__ import annotations

import io
import shutil

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
#: Largest allowed difference between the server's score and the bundle's in-process score.
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    """A studies folder with one radiograph per format: PNG, JPEG, MONOCHROME1 DICOM."""
    root = tmp_path_factory.mktemp("studies")
    write_png(root / "chest_png.png", gradient_picture(ROWS, COLUMNS, seed=1))
    Image.fromarray(gradient_picture(ROWS, COLUMNS, seed=2)).save(root / "chest_jpeg.jpg", quality=95)
    write_dicom(root / "chest_dicom.dcm", gradient_picture(ROWS, COLUMNS, seed=3), photometric="MONOCHROME1",
                bits_stored=12)
    return root


@pytest.fixture(scope="module")
def expected(studies, tiny_bundle):
    """``{stem: Classification}`` from the bundle's in-process inference on the studies' files."""
    from monai_pneumonia.inference import BundleClassifier

    files = sorted(p for p in studies.iterdir() if p.is_file())
    results = BundleClassifier.from_bundle(tiny_bundle, device="cpu").classify(files)
    return {r.image.rsplit("/", 1)[-1].split(".")[0]: r for r in results}


@pytest.fixture(scope="module")
def server(studies, tiny_bundle, tmp_path_factory):
    """The server with the app on ``tiny_bundle``."""
    with start_server(tmp_path_factory.mktemp("monailabel"), studies, {"bundle": str(tiny_bundle),
                                                                       "device": "cpu"}) as running:
        yield running


def test_info_lists_the_classification_model(server):
    info = server.request("GET", "/info/").json()
    model = info["models"]["pneumonia"]
    assert model["type"] == "classification"
    assert model["labels"] == {"normal": 0, "pneumonia": 1}
    assert model["config"]["cam"] is False
    assert info["labels"] == ["normal", "pneumonia"]


@pytest.mark.parametrize("stem", ["chest_png", "chest_jpeg", "chest_dicom"])
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

    reply = server.infer("chest_dicom", output="image", cam=True)
    assert reply.status == 200, server.log_tail()
    heatmap = np.asarray(Image.open(io.BytesIO(reply.body)), dtype=np.float64)
    assert heatmap.shape == (ROWS, COLUMNS)
    _, cam = BundleClassifier.from_bundle(tiny_bundle, device="cpu").grad_cam(studies / "chest_dicom.dcm")
    reference = Image.fromarray(cam[0].numpy().T).resize((COLUMNS, ROWS), Image.Resampling.BILINEAR)
    np.testing.assert_allclose(heatmap / 255.0, np.asarray(reference), atol=2 / 255)
    result = server.infer("chest_dicom", output="json", cam=True).json()
    assert result["cam"] == {"format": "png", "rows": ROWS, "columns": COLUMNS, "class": 1}


def test_unknown_image_is_a_clear_error_and_the_server_keeps_serving(server):
    reply = server.infer("no_such_image")
    assert reply.status == 404
    assert "no_such_image" in reply.json()["detail"]
    assert server.request("GET", "/info/").status == 200
    assert server.infer("chest_png").status == 200


def test_missing_checkpoint_answers_503_until_the_model_is_shipped(studies, tiny_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle, ignore=shutil.ignore_patterns("*.pt"))
    with start_server(tmp_path, studies, {"bundle": str(bundle), "device": "cpu"}) as server:
        assert "pneumonia" not in server.request("GET", "/info/").json()["models"]
        reply = server.infer("chest_png")
        assert reply.status == 503
        assert "model.pt" in reply.json()["detail"]
        shutil.copy(tiny_bundle / "models" / "model.pt", bundle / "models" / "model.pt")
        assert "pneumonia" in server.request("GET", "/info/").json()["models"]
        assert server.infer("chest_png").status == 200
