"""No PHI in the service's logs, results log or journal, and out-of-specification patient attributes refuse nothing.

Third-party error texts quote attribute values (highdicom: ``Unable to convert '01/02/1970' to 'DA' object``), so
refusal reasons are built from our own words, attribute names and exception types only.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pydicom
import pytest

from monai_pneumonia import redaction
from monai_pneumonia.inference import Classification
from monai_pneumonia.redaction import describe_warning, escape_controls, install_log_hygiene
from monai_pneumonia.service.activity import pseudonym
from monai_pneumonia.service.app import PneumoniaService, ServiceConfig
from monai_pneumonia.service.journal import CLASSIFIED, REFUSED, Journal
from monai_pneumonia.service.reports import PneumoniaFinding, render_results
from monai_pneumonia.service.resultslog import ResultsLog
from monai_pneumonia.service.spool import Spool
from monai_pneumonia.service.worker import Worker
from tests.factories import gradient_picture, write_dicom

SECRETS = ("Doe^Jane", "SECRET123", "01/02/1970", "19700102")


class _Classifier:
    threshold = 0.5

    def classify(self, paths):
        return [Classification(os.fspath(p), 0.7, "PNEUMONIA", 0.5) for p in paths]


def _spooled(tmp_path, spool, name, patch: tuple[bytes, bytes] | None = None, **attributes):
    path = write_dicom(tmp_path / name, gradient_picture(48, 40), extra={"PatientName": "Doe^Jane",
                                                                         "PatientID": "SECRET123", **attributes})
    if patch is not None:  # a value the writer would not accept
        path.write_bytes(path.read_bytes().replace(*patch, 1))
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return uid, spool.write(uid, path.read_bytes())


def test_out_of_spec_sex_and_birth_date_are_classified_and_leak_nowhere(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    spool, outbox = Spool(tmp_path / "in"), Spool(tmp_path / "out")
    journal = Journal(tmp_path / "j.sqlite")
    items = [_spooled(tmp_path, spool, "a.dcm", PatientSex="U", PatientBirthDate="01/02/1970"),
             _spooled(tmp_path, spool, "b.dcm", StudyDate="2020-01-02", StudyTime="25:99"),
             _spooled(tmp_path, spool, "c.dcm", StudyInstanceUID="Doe^Jane.19700102"),  # not a UID: refused
             _spooled(tmp_path, spool, "d.dcm", (b"77777777", b"Doe^Jane"), NumberOfFrames=77777777)]  # unreadable
    worker = Worker(spool, outbox.root, journal, _Classifier(), ["PACS"], ResultsLog(tmp_path / "r.jsonl"))
    worker.process_safely(items)
    assert [journal.state(uid) for uid, _ in items] == [CLASSIFIED, CLASSIFIED, REFUSED, REFUSED]
    assert "StudyInstanceUID" in journal.detail(items[2][0])["reason"]
    sr = pydicom.dcmread(next(outbox.root.glob("*.dcm")))
    assert sr.Modality == "SR"
    journal.close()
    stored = (tmp_path / "r.jsonl").read_text() + (tmp_path / "j.sqlite").read_bytes().decode("latin-1")
    for wal in tmp_path.glob("j.sqlite-wal"):
        stored += wal.read_bytes().decode("latin-1")
    for secret in SECRETS:
        assert secret not in stored, secret
        assert secret not in caplog.text, secret


def test_the_sr_of_an_out_of_spec_header_omits_only_the_bad_values(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", gradient_picture(48, 40),
                       extra={"PatientSex": "U", "PatientBirthDate": "01/02/1970", "PatientID": "P1"})
    header = pydicom.dcmread(path, stop_before_pixels=True)
    [(uid, data)] = render_results((header, PneumoniaFinding(0.7, 0.5), None or _algorithm(), None))
    import io

    sr = pydicom.dcmread(io.BytesIO(data))
    assert sr.PatientID == "P1" and not sr.PatientSex and not sr.PatientBirthDate
    assert str(sr.SOPInstanceUID) == uid


def _algorithm():
    from monai_pneumonia.service.reports import AlgorithmInfo

    return AlgorithmInfo()


# -- third-party warnings, crafted values, out-of-spec headers (log hygiene) -------------------------------------


@pytest.fixture
def hygiene():
    """The command line's and service's log hygiene, every warning shown (undone afterwards)."""
    factory = logging.getLogRecordFactory()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        install_log_hygiene()
        yield
    logging.setLogRecordFactory(factory)


class _CamClassifier(_Classifier):
    def __init__(self, flags: str = "") -> None:
        self.flags = flags

    def classify(self, paths):
        return [Classification(os.fspath(p), 0.7, "PNEUMONIA", 0.5, {"xray_flags": self.flags}) for p in paths]

    def cam_overlay(self, path, result):
        return np.zeros((40, 48, 3), np.uint8)


def _worker(tmp_path, classifier, **kwargs):
    spool, outbox = Spool(tmp_path / "in"), Spool(tmp_path / "out")
    journal = Journal(tmp_path / "j.sqlite")
    return spool, journal, Worker(spool, outbox.root, journal, classifier, ["PACS"], ResultsLog(tmp_path / "r.jsonl"),
                                  **kwargs)


def test_highdicom_name_warnings_are_withheld_from_the_log(tmp_path, caplog, capfd, hygiene):
    caplog.set_level(logging.DEBUG)
    spool, journal, worker = _worker(tmp_path, _CamClassifier(), cam=True)
    items = [_spooled(tmp_path, spool, "a.dcm", PatientName="DOE JANE", ReferringPhysicianName="SMITH JOHN")]
    worker.process_safely(items)
    assert journal.state(items[0][0]) == CLASSIFIED
    assert "UserWarning from highdicom" in caplog.text  # the warnings were routed, and their text withheld
    logged = caplog.text + "".join(capfd.readouterr())
    for secret in ("DOE JANE", "SMITH JOHN", "SECRET123"):
        assert secret not in logged, secret


def test_a_crafted_value_cannot_forge_a_log_line(tmp_path, caplog, hygiene):
    caplog.set_level(logging.DEBUG)
    forged = "view:LL\r\n2026-01-01 00:00:00 INFO monai_pneumonia.service.activity: classified sop:0: NORMAL\x1b[2J"
    spool, journal, worker = _worker(tmp_path, _CamClassifier(flags=forged), lenient=True)
    worker.process_safely([_spooled(tmp_path, spool, "a.dcm")])
    logging.getLogger("pydicom").warning("name %s", "Doe^Jane\nINFO forged")
    messages = [record.getMessage() for record in caplog.records]
    assert any("classified sop:" in m and "\\r\\n2026" in m and "\\x1b[2J" in m for m in messages), messages
    for message in messages:
        assert not any(c in message for c in "\r\n\x1b"), message


def test_escape_controls_and_describe_warning():
    assert escape_controls("a\r\nb\x1b[0m\x00\x85\u2028é") == "a\\r\\nb\\x1b[0m\\x00\\x85\\u2028é"
    ours = describe_warning(UserWarning("x\ny"), UserWarning, redaction.__file__, 3)
    assert ours == "UserWarning: x\\ny"
    theirs = describe_warning(UserWarning('The string "DOE JANE"'), UserWarning,
                              "/v/lib/python3.11/site-packages/highdicom/base.py", 199)
    assert "DOE" not in theirs and theirs.startswith("UserWarning from highdicom/base.py:199")


def test_out_of_spec_instance_number_and_character_set_fall_back_and_are_flagged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    spool, journal, worker = _worker(tmp_path, _CamClassifier(), cam=True)
    items = [_spooled(tmp_path, spool, "a.dcm", (b"\x13\x00IS\x02\x007 ", b"\x13\x00IS\x04\x00abc "), InstanceNumber="7"),
             _spooled(tmp_path, spool, "b.dcm", SpecificCharacterSet="ISO_IR 999")]
    worker.process_safely(items)
    assert [journal.state(uid) for uid, _ in items] == [CLASSIFIED, CLASSIFIED]
    assert "instance_number:invalid" in journal.detail(items[0][0])["flags"]
    assert "character_set:unknown" in journal.detail(items[1][0])["flags"], journal.detail(items[1][0])
    results = [pydicom.dcmread(p) for p in sorted((tmp_path / "out").glob("*.dcm"))]
    assert len(results) == 4 and {r.InstanceNumber for r in results} == {1}
    assert {r.get("SpecificCharacterSet") for r in results} <= {"ISO_IR 192", None}


def test_the_duplicate_instance_line_names_the_pseudonym(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    service = PneumoniaService(ServiceConfig(spool=tmp_path / "spool", report_processes=0), _Classifier())
    path = write_dicom(tmp_path / "a.dcm", gradient_picture(48, 40))
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert service._store(uid, path.read_bytes(), "MODALITY") == 0
    assert service._store(uid, path.read_bytes(), "MODALITY") == 0
    service.journal.close()
    assert pseudonym(uid) in caplog.text and uid not in caplog.text


def test_a_table_logged_on_purpose_keeps_its_lines_a_value_never_does(hygiene, caplog):
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("monai_pneumonia.test")
    logger.info("datalist from %s:\n%s", "d", "split  images\ntraining  16")
    logger.info("classified %s", "x\nforged\r\x1b[2J")
    table, value = (record.getMessage() for record in caplog.records[-2:])
    assert table == "datalist from d:\nsplit  images\ntraining  16"
    assert value == "classified x\\nforged\\r\\x1b[2J"
