"""A service whose worker cannot go on is unhealthy: it answers 0xA700, never Success, and ``serve`` exits 1.

Also: a stray file in ``spool/incoming/`` is quarantined (never logged by name) instead of stopping the worker, and
a journal or results log that cannot be used is one line and exit status 2 (the unit does not restart it).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

import pydicom
import pytest

from monai_pneumonia.cli import build_parser, serve
from monai_pneumonia.inference import Classification
from monai_pneumonia.service import PneumoniaService, ServiceConfig
from monai_pneumonia.service.journal import DELIVERED, Journal
from monai_pneumonia.service.scp import OUT_OF_RESOURCES, SUCCESS
from tests.conftest import free_port
from tests.factories import gradient_picture, write_dicom
from tests.service.harness import c_store, wait_for

REPO = Path(__file__).resolve().parents[2]


class _Classifier:
    """Calls every film pneumonia at p = 0.7; callable like BundleClassifier (the warm-up)."""

    threshold = 0.5
    identity = {"model_sha256": "0" * 64, "site_profile_sha256": "", "site_rule": ""}

    def classify(self, paths):
        return [Classification(os.fspath(p), 0.7, "PNEUMONIA", 0.5) for p in paths]

    def __call__(self, path):
        return self.classify([path])[0]


@pytest.fixture()
def service(tmp_path):
    service = PneumoniaService(ServiceConfig(spool=tmp_path / "spool", port=free_port(), report_processes=0),
                               _Classifier())
    service.scp.start("127.0.0.1", service.config.port)
    yield service
    service.scp.stop()
    service.worker.stopping.set()


def test_a_full_journal_after_ack_makes_the_service_unhealthy_and_refuse_new_stores(service, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Journal, "record_classified", full)
    service.worker.start()
    first = write_dicom(tmp_path / "a.dcm", gradient_picture(48, 40, seed=1), modality="DX")
    assert c_store(service.config.port, first) == SUCCESS  # acknowledged: it is on disk
    assert wait_for(lambda: service.failed.is_set(), timeout=20)
    ok, reason = service.health()
    assert not ok and "database or disk is full" in reason
    assert not service.worker.is_alive()
    second = write_dicom(tmp_path / "b.dcm", gradient_picture(48, 40, seed=2), modality="DX")
    assert c_store(service.config.port, second) == OUT_OF_RESOURCES  # never ACKed into a dead pipeline
    uid = str(pydicom.dcmread(first, stop_before_pixels=True).SOPInstanceUID)
    assert uid in service.spool and service.journal.state(uid) is None  # kept for the next start, not refused


def test_an_unexpected_error_in_the_worker_thread_is_unhealthy(service, monkeypatch):
    monkeypatch.setattr(service.worker, "process_safely", lambda items: 1 / 0)
    service.worker.start()
    service.worker.submit("1.2.3", Path("unused"))
    assert wait_for(lambda: service.failed.is_set(), timeout=10)
    assert service.health() == (False, "the classification worker stopped (ZeroDivisionError)")


def test_a_stray_file_in_incoming_is_quarantined_and_the_others_classified(service, tmp_path, caplog):
    name = "DOE^JANE 1980-01-01.dcm"  # names are files: anything may lie there, even a patient's name
    (service.spool.root / name).write_bytes(b"whatever")
    (service.spool.root / "notes.txt").write_text("x")
    film = write_dicom(tmp_path / "c.dcm", gradient_picture(48, 40, seed=3), modality="DX")
    uid = str(pydicom.dcmread(film, stop_before_pixels=True).SOPInstanceUID)
    service.spool.write(uid, film.read_bytes())
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.service"):
        assert service.recover() == 1
        items = []
        while not service.worker.queue.empty():
            items.append(service.worker.queue.get_nowait())
        service.worker.process_safely(items)
    assert service.journal.state(uid) == DELIVERED  # classified (no destination: recorded and done)
    strays = sorted(p.name for p in (service.quarantine).iterdir())
    assert len(strays) == 2 and all(p.startswith("stray-") for p in strays)
    assert list(service.spool.root.iterdir()) == []
    text = caplog.text
    assert "DOE" in name and "DOE" not in text and "notes" not in text
    assert len([r for r in caplog.records if "not named after a SOP Instance UID" in r.getMessage()]) == 2


# -- serve's exit statuses -----------------------------------------------------------------------------------------


@pytest.fixture()
def no_model(monkeypatch):
    """``serve`` with a stand-in classifier instead of the bundle (these tests are about the service around it)."""
    from monai_pneumonia.inference import BundleClassifier

    monkeypatch.setattr(BundleClassifier, "from_bundle", classmethod(lambda cls, *a, **k: _Classifier()))
    monkeypatch.setattr(serve.signal, "signal", lambda *args: None)  # pytest's own handlers stay


def _serve(tmp_path: Path, *extra: str) -> int:
    args = build_parser().parse_args(["serve", "--spool", str(tmp_path / "spool"), "--port", str(free_port()),
                                      "--report-processes", "0", "--stats-interval", "0", *extra])
    return serve.run(args)


def test_a_corrupt_journal_is_one_line_and_exit_status_2(tmp_path, no_model, capsys):
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "journal.sqlite").write_bytes(b"this is not an SQLite database" * 100)
    assert _serve(tmp_path) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("monai-pneumonia serve: journal ") and "journal.sqlite" in lines[-1]
    assert "not a usable SQLite database" in lines[-1] and "Traceback" not in "\n".join(lines)


def test_a_directory_in_place_of_the_results_log_is_one_line_and_exit_status_2(tmp_path, no_model, capsys):
    (tmp_path / "spool" / "results.jsonl").mkdir(parents=True)
    assert _serve(tmp_path) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("monai-pneumonia serve: results log ") and "results.jsonl" in last
    assert "Is a directory" in last


def test_serve_exits_1_when_the_service_becomes_unhealthy(tmp_path, no_model, monkeypatch):
    started = threading.Event()
    original = PneumoniaService.start

    def start_then_break(self):
        original(self)
        started.set()
        threading.Timer(0.5, self._fail, ("the classification worker stopped (test)",)).start()

    monkeypatch.setattr(PneumoniaService, "start", start_then_break)
    assert _serve(tmp_path) == 1
    assert started.is_set()


def test_the_systemd_unit_does_not_restart_a_configuration_error():
    unit = (REPO / "deploy" / "systemd" / "monai-pneumonia.service").read_text()
    assert "Restart=on-failure" in unit
    prevent = [line for line in unit.splitlines() if line.startswith("RestartPreventExitStatus=")]
    assert prevent and "2" in prevent[0].split("=", 1)[1].split()
