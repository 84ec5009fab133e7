"""The service's monitoring: Prometheus /metrics and /healthz, and the live drift monitor on a real association.

The listener runs in process; films are sent by pynetdicom over loopback. The classifier loads each film with the
real preprocessing chain (so its records carry the loader's image statistics) and answers a fixed probability: the
subject here is the stream -> record -> monitor path, not the network.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFilter
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian
from pynetdicom import AE

from monai_pneumonia.inference import Classification
from monai_pneumonia.monitoring import Reference
from monai_pneumonia.results import film_record
from monai_pneumonia.service import PneumoniaService, ServiceConfig
from monai_pneumonia.service.metrics import MetricsServer, ServiceMetrics
from monai_pneumonia.transforms import xray_preprocessing
from tests.conftest import free_port
from tests.factories import gradient_picture, write_dicom


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_endpoint_serves_counters_and_health_on_loopback():
    metrics, healthy = ServiceMetrics(), {"ok": True}
    server = MetricsServer(metrics, lambda: (healthy["ok"], "worker stopped"), port=0)
    server.start()
    try:
        metrics.received()
        metrics.observe({"event": "classified", "flags": "atypical", "received": 10.0, "classified": 11.5})
        metrics.observe({"event": "refused", "reason": "CT"})
        base = f"http://127.0.0.1:{server.port}"
        status, text = _get(base + "/metrics")
        assert status == 200
        for line in ("monai_pneumonia_received_total 1.0", "monai_pneumonia_classified_total 1.0",
                     "monai_pneumonia_refused_total 1.0", "monai_pneumonia_flagged_total 1.0",
                     "monai_pneumonia_quarantined_total 0.0", 'monai_pneumonia_latency_seconds_bucket{le="2.0"} 1.0'):
            assert line in text
        assert _get(base + "/healthz") == (200, "ok\n")
        healthy["ok"] = False
        assert _get(base + "/healthz") == (503, "unhealthy: worker stopped\n")
        assert _get(base + "/other")[0] == 404
    finally:
        server.stop()


def _films(folder, count: int, blur: bool) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        picture = gradient_picture(64, 56, seed=seed, noise=12)
        if blur:
            picture = np.asarray(Image.fromarray(picture).filter(ImageFilter.GaussianBlur(2)))
        paths.append(write_dicom(folder / f"{seed}.dcm", picture))
    return paths


class _LoadingClassifier:
    """The real loader and preprocessing (32 px), a fixed answer."""

    threshold = 0.5

    def __init__(self) -> None:
        self.preprocessing = xray_preprocessing(spatial_size=32)

    def __call__(self, path) -> Classification:
        meta = dict(self.preprocessing({"image": str(path)})["image"].meta)
        return Classification(str(path), 0.3, "NORMAL", self.threshold, meta)

    def classify(self, paths) -> list[Classification]:
        return [self(path) for path in paths]


@pytest.fixture()
def classifier():
    return _LoadingClassifier()


def test_shifted_films_through_a_real_association_raise_one_drift_warning_and_show_in_metrics(
        classifier, tmp_path, caplog):
    window = 30
    reference = Reference.from_records([film_record(r.prob_pneumonia, r.prediction, r.threshold, r.meta)
                                        for r in classifier.classify(_films(tmp_path / "sharp", window, blur=False))],
                                       source="sharp test films")
    reference.save(tmp_path / "reference.json")
    config = ServiceConfig(port=free_port(), spool=tmp_path / "spool", report_processes=0, batch_size=8,
                           stats_interval=0, metrics_port=0, drift_reference=tmp_path / "reference.json",
                           drift_window=window, drift_min_window=window)
    service = PneumoniaService(config, classifier)
    caplog.set_level(logging.INFO)
    service.start()
    try:
        peer = AE(ae_title="MODALITY")
        peer.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
        assoc = peer.associate("127.0.0.1", config.port, ae_title="PNEUMO")
        assert assoc.is_established
        for path in _films(tmp_path / "blurred", window + 10, blur=True):
            assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
        assoc.release()
        deadline = time.time() + 180
        while service.results_log.activity.total["classified"] < window + 10 and time.time() < deadline:
            time.sleep(0.2)
        status, text = _get(f"http://127.0.0.1:{service.metrics_server.port}/metrics")
        assert status == 200
        assert f"monai_pneumonia_received_total {window + 10}.0" in text
        assert f"monai_pneumonia_classified_total {window + 10}.0" in text
        assert f"monai_pneumonia_latency_seconds_count {window + 10}.0" in text
        assert "monai_pneumonia_drift 1.0" in text
        assert 'monai_pneumonia_drift_alarm{signal="sharpness"} 1.0' in text
        assert _get(f"http://127.0.0.1:{service.metrics_server.port}/healthz") == (200, "ok\n")
    finally:
        service.stop()
    drift = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("drift:")]
    assert len(drift) == 1 and "sharpness" in drift[0].getMessage()  # one line, not one per film
