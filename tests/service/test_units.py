"""Unit tests of the DICOM service parts: UIDs, spool, journal, screening, the SR/SC builders, delivery parsing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io import XrayPolicy, load_xray
from monai_pneumonia.service import (
    InvalidUIDError,
    Journal,
    PneumoniaFinding,
    Spool,
    build_cam_secondary_capture,
    build_pneumonia_sr,
    derive_uid,
    is_valid_uid,
    parse_destination,
    screen,
)
from monai_pneumonia.service.delivery import backoff
from monai_pneumonia.service.journal import CLASSIFIED, DELIVERED, REFUSED
from monai_pneumonia.service.reports import PNEUMONIA, encode
from tests.factories import dicom_dataset, gradient_picture, write_dicom

# -- UIDs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.1", "0", "2.25.123", "1." + "2" * 62])
def test_valid_uids(uid):
    assert is_valid_uid(uid)


@pytest.mark.parametrize("uid", ["", "1..2", "1.02", ".1", "1.", "../etc/passwd", "1.2/3", "1.2\x00", "1 2",
                                 "1." + "2" * 63, None, 1.2, "1.2.a"])
def test_invalid_uids(uid):
    assert not is_valid_uid(uid)


def test_derived_uids_are_stable_valid_and_distinct():
    assert derive_uid("sr", "1.2.3") == derive_uid("sr", "1.2.3")
    assert derive_uid("sr", "1.2.3") != derive_uid("sc", "1.2.3")
    assert is_valid_uid(derive_uid("sr", "1.2.3"))


# -- spool -----------------------------------------------------------------------------------------------------


def test_spool_writes_atomically_owner_only(tmp_path):
    spool = Spool(tmp_path / "incoming")
    path = spool.write("1.2.3", b"DICM data")
    assert path == tmp_path / "incoming" / "1.2.3.dcm" and path.read_bytes() == b"DICM data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.root.stat().st_mode) == 0o700
    assert "1.2.3" in spool and [uid for uid, _ in spool.pending()] == ["1.2.3"]
    assert not [p for p in spool.root.iterdir() if p.name.startswith(".")]
    spool.remove("1.2.3")
    assert "1.2.3" not in spool


def test_spool_never_puts_an_invalid_uid_in_a_path(tmp_path):
    spool = Spool(tmp_path / "incoming")
    for bad in ("../../escape", "1.2/../../x", ""):
        with pytest.raises(InvalidUIDError):
            spool.write(bad, b"x")
    assert list(tmp_path.rglob("*")) == [spool.root]


def test_spool_discards_partial_writes(tmp_path):
    spool = Spool(tmp_path)
    (tmp_path / ".incoming-abc").write_bytes(b"half")  # an earlier version's temporary name
    (tmp_path / ".1.2.5.dcm.k3j9.partial").write_bytes(b"half")  # atomic_write's
    spool.write("1.2.4", b"whole")
    assert spool.discard_partial() == 2
    assert [uid for uid, _ in spool.pending()] == ["1.2.4"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    spool = Spool(tmp_path)

    def fail(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        spool.write("1.2.5", b"data")
    assert list(tmp_path.iterdir()) == []


# -- journal ---------------------------------------------------------------------------------------------------


def test_journal_records_once_and_tracks_delivery(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    assert journal.state("1.1") is None
    assert journal.record_classified("1.1", {"received": 1.0}, [("9.1", "/o/9.1.dcm")], ["A", "B"])
    assert not journal.record_classified("1.1", {}, [("9.1", "/o/9.1.dcm")], ["A"])  # duplicate: ignored
    assert journal.state("1.1") == CLASSIFIED and journal.pending_count() == 2
    due = journal.due()
    journal.postpone([d for d in due if d.target == "B"], backoff(100, 100))
    assert journal.delivered([d for d in due if d.target == "A"]) == []  # B still pending
    assert [d.target for d in journal.due()] == []  # B postponed
    finished = journal.delivered([d for d in due if d.target == "B"])
    assert [(s, state, f) for s, state, _, f in finished] == [("1.1", DELIVERED, ["/o/9.1.dcm"])]
    assert journal.state("1.1") == DELIVERED and journal.pending_count() == 0
    assert journal.record_refused("2.2", {"reason": "CT"}) and not journal.record_refused("2.2", {})
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite")  # durable
    assert reopened.state("2.2") == REFUSED and reopened.detail("1.1")["received"] == 1.0


def test_backoff_doubles_and_caps():
    delay = backoff(1.0, 5.0)
    assert [delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]


def test_parse_destination():
    destination = parse_destination("ORTHANC@127.0.0.1:4242")
    assert (destination.aet, destination.host, destination.port) == ("ORTHANC", "127.0.0.1", 4242)
    for bad in ("ORTHANC", "127.0.0.1:4242", "A@h:port"):
        with pytest.raises(ValueError):
            parse_destination(bad)


# -- screening -------------------------------------------------------------------------------------------------


def _image_header(**attrs) -> pydicom.Dataset:
    """The Image Pixel module of a 64 x 48 grey image (no Pixel Data: headers are read without it), plus ``attrs``."""
    header = pydicom.Dataset()
    header.PhotometricInterpretation, header.SamplesPerPixel = "MONOCHROME2", 1
    header.Rows, header.Columns, header.BitsAllocated, header.BitsStored = 64, 48, 16, 12
    for keyword, value in attrs.items():
        setattr(header, keyword, value)
    return header


@pytest.mark.parametrize(("attrs", "refused"), [
    ({"Modality": "DX", "ViewPosition": "PA"}, None),
    ({"Modality": "OT"}, None),  # secondary capture: accepted (flagged by the loader)
    ({"Modality": "CT"}, "modality"),
    ({"Modality": "CR", "NumberOfFrames": 10}, "multi-frame"),
    ({"Modality": "DX", "ViewPosition": "LL"}, "view"),
    ({"Modality": "DX", "BodyPartExamined": "KNEE"}, "body part"),
    ({"Modality": "DX", "PresentationIntentType": "FOR PROCESSING"}, "FOR PROCESSING"),
    ({"Modality": "DX", "PhotometricInterpretation": "RGB", "SamplesPerPixel": 3}, "photometric"),
    ({"Modality": "DX", "Rows": 0}, "no pixels"),
    ({"Modality": "DX", "Rows": 10_000, "Columns": 10_000}, "too large"),
    ({"Modality": "DX", "SamplesPerPixel": None}, "invalid header (TypeError)"),
])
def test_screening(attrs, refused):
    reason = screen(_image_header(**attrs))
    assert (reason is None) if refused is None else (refused in reason)


def test_lenient_screening_classifies_lateral_views():
    header = dicom_dataset("DX", view="LL")
    header.update(_image_header())
    assert screen(header) and screen(header, lenient=True) is None


def test_screening_and_the_loader_refuse_for_the_same_reason(tmp_path):
    """One header policy: a film breaking several rules gets the loader's first reason from the service too."""
    path = write_dicom(tmp_path / "x.dcm", gradient_picture(), modality="DX", view="LL",
                       extra={"NumberOfFrames": 2, "PhotometricInterpretation": "YBR_FULL"})
    with pytest.raises(XrayInputError) as loaded:
        load_xray(path, XrayPolicy(strict=True))
    assert "photometric interpretation 'YBR_FULL'" in loaded.value.reason  # before the frames and the view
    assert screen(pydicom.dcmread(path, stop_before_pixels=True)) == loaded.value.reason


# -- results as DICOM ------------------------------------------------------------------------------------------


@pytest.fixture
def source(tmp_path):
    """A CR header without ImagerPixelSpacing or PatientBirthDate (as many CR images are)."""
    path = write_dicom(tmp_path / "cr.dcm", gradient_picture(), modality="CR")
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.mark.parametrize(("probability", "present"), [(0.8, True), (0.2, False)])
def test_sr_reads_back_with_highdicom(tmp_path, source, probability, present):
    path = tmp_path / "sr.dcm"
    path.write_bytes(encode(build_pneumonia_sr(source, PneumoniaFinding(probability, 0.5))))
    sr = hd.sr.srread(path)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.PatientID == source.PatientID
    group = sr.content.get_image_measurement_groups()[0]
    assert group.finding_type == PNEUMONIA
    values = {m.name.meaning: m.value for m in group.get_measurements()}
    assert values == {"Probability": pytest.approx(probability), "Threshold Value": pytest.approx(0.5)}
    evaluation = group.get_qualitative_evaluations()[0]
    assert evaluation.value == (codes.DCM.Present if present else codes.DCM.Absent)
    assert group.source_images[0].referenced_sop_instance_uid == source.SOPInstanceUID
    texts = {item.name.meaning: item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"}
    assert texts["Algorithm Name"] and texts["Algorithm Version"]


def test_sr_is_deterministic(source):
    first, second = (build_pneumonia_sr(source, PneumoniaFinding(0.3, 0.5)) for _ in range(2))
    assert first.SOPInstanceUID == second.SOPInstanceUID and first.SeriesInstanceUID == second.SeriesInstanceUID


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dsrdump (dcmtk) not installed")
def test_sr_reads_back_with_dsrdump(tmp_path, source):
    path = tmp_path / "sr.dcm"
    path.write_bytes(encode(build_pneumonia_sr(source, PneumoniaFinding(0.9, 0.4))))
    dump = subprocess.run(["dsrdump", path], capture_output=True, text=True, check=True).stdout
    for expected in ("Imaging Measurement Report", "(399208008,SCT,\"Plain chest X-ray\")",
                     "(233604007,SCT,\"Pneumonia\")", "(121053,DCM,\"Present\")", "Probability", "0.9",
                     "Threshold Value", "Algorithm Name", "Source of Measurement"):
        assert expected in dump, expected


def test_cam_secondary_capture(tmp_path, source):
    overlay = np.zeros((40, 30, 3), np.uint8)
    overlay[..., 0] = 200
    path = tmp_path / "sc.dcm"
    path.write_bytes(encode(build_cam_secondary_capture(source, overlay)))
    sc = pydicom.dcmread(path)
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PhotometricInterpretation == "RGB"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    np.testing.assert_array_equal(sc.pixel_array, overlay)
    # General Series Laterality, Type 2C (PS3.3 C.7.3.1): present, empty for a chest (dciodvfy requires it)
    assert "Laterality" in sc and sc.Laterality in ("", None)


def test_cam_secondary_capture_keeps_a_sources_left_or_right(source):
    source.ImageLaterality = "R"
    assert build_cam_secondary_capture(source, np.zeros((4, 4, 3), np.uint8)).Laterality == "R"
    source.ImageLaterality = "U"
    assert not build_cam_secondary_capture(source, np.zeros((4, 4, 3), np.uint8)).Laterality


# -- worker ----------------------------------------------------------------------------------------------------


class _BrokenClassifier:
    """Raises on any batch holding one of the ``bad`` paths, classifies the rest."""

    threshold = 0.5

    def __init__(self, bad: set[str]) -> None:
        self.bad = bad

    def classify(self, paths):
        from monai_pneumonia.inference import Classification

        paths = [os.fspath(p) for p in paths]
        if self.bad & set(paths):
            raise RuntimeError("decoder crashed")
        return [Classification(path, 0.7, "PNEUMONIA", 0.5) for path in paths]


def test_a_failing_instance_is_refused_and_does_not_block_the_batch(tmp_path):
    from monai_pneumonia.service.resultslog import ResultsLog
    from monai_pneumonia.service.worker import Worker

    spool, outbox = Spool(tmp_path / "in"), Spool(tmp_path / "out")
    journal = Journal(tmp_path / "j.sqlite")
    items = []
    for seed in range(2):
        path = write_dicom(tmp_path / f"{seed}.dcm", gradient_picture(seed=seed), modality="DX")
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        items.append((uid, spool.write(uid, path.read_bytes())))
    classifier = _BrokenClassifier({os.fspath(items[1][1])})
    worker = Worker(spool, outbox.root, journal, classifier, ["PACS"], ResultsLog(tmp_path / "r.jsonl"))
    worker.process_safely(items)
    assert [journal.state(uid) for uid, _ in items] == [CLASSIFIED, REFUSED]
    assert "RuntimeError" in journal.detail(items[1][0])["reason"]  # the type, never a third-party text
    assert [d.source_uid for d in journal.due()] == [items[0][0]]
    assert items[0][0] in spool and items[1][0] not in spool  # kept until delivered / refused and removed


def test_an_environment_failure_refuses_nothing(tmp_path, monkeypatch):
    from monai_pneumonia.service import worker as worker_module
    from monai_pneumonia.service.resultslog import ResultsLog
    from monai_pneumonia.service.worker import Worker

    spool, outbox = Spool(tmp_path / "in"), Spool(tmp_path / "out")
    journal = Journal(tmp_path / "j.sqlite")
    path = write_dicom(tmp_path / "x.dcm", gradient_picture(), modality="DX")
    uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
    item = (uid, spool.write(uid, path.read_bytes()))
    worker = Worker(spool, outbox.root, journal, _BrokenClassifier(set()), ["PACS"], ResultsLog(tmp_path / "r.jsonl"))
    worker.retry_delay = 0.01

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(worker_module, "atomic_write", disk_full)
    worker.process_safely([item])
    assert journal.state(uid) is None and uid in spool and worker.queue.get_nowait() == item


# -- command line ----------------------------------------------------------------------------------------------


def test_serve_options_from_a_config_file_and_flags(tmp_path):
    import json

    from monai_pneumonia.cli import build_parser
    from monai_pneumonia.cli.serve import build_config

    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"aet": "FROMFILE", "port": 104, "spool": str(tmp_path / "s"),
                                  "destination": "PACS@10.0.0.5:104", "max-associations": 3, "allow": ["PACS"]}))
    args = build_parser().parse_args(["serve", "--config", str(config), "--port", "11112",
                                      "--stow-url", "http://pacs/dicom-web"])
    service = build_config(args)
    assert (service.aet, service.port, service.limits.max_associations) == ("FROMFILE", 11112, 3)
    assert [d.name for d in service.destinations] == ["PACS@10.0.0.5:104", "stow:http://pacs/dicom-web"]
    assert list(service.allow) == ["PACS"] and service.host == "127.0.0.1" and service.batch_size == 16


def test_serve_help_explains_every_option(capsys):
    from monai_pneumonia.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for option in ("--aet", "--host", "--port", "--spool", "--destination", "--allow", "--cam", "--stow-url",
                   "--bundle", "--max-associations", "--max-pdu", "--acse-timeout", "--dimse-timeout",
                   "--network-timeout", "--retry-initial", "--retry-max", "--config", "--lenient"):
        assert option in text


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["sr", "sc"])
def test_results_have_no_dciodvfy_error(tmp_path, source, kind):
    """The SR and the Secondary Capture the listener stores pass the standard's IOD checks (dicom3tools)."""
    dataset = (build_pneumonia_sr(source, PneumoniaFinding(0.9, 0.4)) if kind == "sr"
               else build_cam_secondary_capture(source, np.full((40, 30, 3), 100, np.uint8)))
    path = tmp_path / f"{kind}.dcm"
    path.write_bytes(encode(dataset))
    report = subprocess.run(["dciodvfy", "-new", path], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    assert errors == [], "\n".join(errors)
