"""No PHI in the service's logs, results log or journal, and out-of-specification patient attributes refuse nothing.

Third-party error texts quote attribute values (highdicom: ``Unable to convert '01/02/1970' to 'DA' object``), so
refusal reasons are built from our own words, attribute names and exception types only.
"""

from __future__ import annotations

import logging
import os

import pydicom

from monai_pneumonia.inference import Classification
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
