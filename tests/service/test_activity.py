"""What the service tells its operator: per-instance lines, refused contexts, counters, --keep-results."""

from __future__ import annotations

import logging
import os
import stat

import pydicom
from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

from monai_pneumonia.service.activity import ActivityReporter, pseudonym
from monai_pneumonia.service.delivery import Deliverer
from monai_pneumonia.service.folder import FolderDestination
from monai_pneumonia.service.journal import DELIVERED, Journal
from monai_pneumonia.service.resultslog import ResultsLog
from monai_pneumonia.service.scp import StorageSCP
from monai_pneumonia.service.spool import Spool
from monai_pneumonia.service.worker import Worker
from tests.conftest import free_port
from tests.factories import gradient_picture, write_dicom


class _Classifier:
    """Calls every film pneumonia at p = 0.7 (threshold 0.5)."""

    threshold = 0.5

    def classify(self, paths):
        from monai_pneumonia.inference import Classification

        return [Classification(os.fspath(p), 0.7, "PNEUMONIA", 0.5) for p in paths]


def _spooled(tmp_path, count=2):
    spool = Spool(tmp_path / "in")
    items = []
    for seed in range(count):
        path = write_dicom(tmp_path / f"{seed}.dcm", gradient_picture(seed=seed), modality="DX")
        header = pydicom.dcmread(path, stop_before_pixels=True)
        items.append((header.SOPInstanceUID, spool.write(header.SOPInstanceUID, path.read_bytes()), header))
    return spool, items


def test_each_classified_instance_is_one_pseudonymous_info_line(tmp_path, caplog):
    spool, items = _spooled(tmp_path)
    outbox, journal, log = Spool(tmp_path / "out"), Journal(tmp_path / "j.sqlite"), ResultsLog(tmp_path / "r.jsonl")
    worker = Worker(spool, outbox.root, journal, _Classifier(), [], log)
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.service"):
        worker.process([(uid, path) for uid, path, _ in items])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("classified ")]
    assert [line.split(": ")[0] for line in lines] == [f"classified {pseudonym(uid)}" for uid, _, _ in items]
    assert all("PNEUMONIA (p=0.700, threshold 0.500)" in line and " ms after receipt" in line for line in lines)
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for uid, _, header in items:  # no identifiers of the instance or the patient in the log
        for value in (uid, header.StudyInstanceUID, str(header.get("PatientID", "")) or None,
                      str(header.get("PatientName", "")) or None):
            assert value is None or value not in everything
    # without a destination the results are recorded, not kept: nothing is left to vanish at the next start
    assert [journal.state(uid) for uid, _, _ in items] == [DELIVERED, DELIVERED]
    assert list(outbox.root.iterdir()) == []
    recent, total = log.activity.take()
    assert recent["classified"] == total["classified"] == 2 and total["pneumonia"] == 2


def test_keep_results_keeps_every_result_file_and_lists_it(tmp_path):
    spool, items = _spooled(tmp_path, count=1)
    outbox, journal, log = Spool(tmp_path / "out"), Journal(tmp_path / "j.sqlite"), ResultsLog(tmp_path / "r.jsonl")
    kept = FolderDestination(tmp_path / "kept")
    worker = Worker(spool, outbox.root, journal, _Classifier(), [kept.name], log)
    worker.process([(uid, path) for uid, path, _ in items])
    delivered = []
    assert Deliverer(journal, [kept], lambda *args: delivered.append(args)).deliver_due() == 1
    files = list((tmp_path / "kept").iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    sr = pydicom.dcmread(files[0])
    assert sr.Modality == "SR" and sr.StudyInstanceUID == items[0][2].StudyInstanceUID
    assert delivered and delivered[0][0] == items[0][0]
    assert journal.state(items[0][0]) == DELIVERED


def test_refused_presentation_contexts_are_one_line_per_association(caplog):
    scp, port = StorageSCP("PNEUMO", store=lambda *args: 0x0000), free_port()
    scp.start("127.0.0.1", port)
    try:
        peer = AE(ae_title="STORESCU")
        for context in StoragePresentationContexts[:120]:  # what storescu offers: every storage class
            peer.add_requested_context(context.abstract_syntax)
        if DigitalXRayImageStorageForPresentation not in [c.abstract_syntax for c in peer.requested_contexts]:
            peer.add_requested_context(DigitalXRayImageStorageForPresentation)
        with caplog.at_level(logging.DEBUG, logger="monai_pneumonia.service.scp"):
            assoc = peer.associate("127.0.0.1", port, ae_title="PNEUMO")
            assert assoc.is_established
            assoc.release()
    finally:
        scp.stop()
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    message = refused[0].getMessage()
    assert message.startswith("association from STORESCU: refused ") and " and " in message and "more" in message
    # routine (the sender also offered a class we read, DX): DEBUG, else Orthanc fills the log on every association
    assert refused[0].levelno == logging.DEBUG


def test_periodic_counters_line(tmp_path):
    log = ResultsLog(tmp_path / "r.jsonl")
    for event, fields in (("classified", {"prediction": "PNEUMONIA"}), ("classified", {"prediction": "NORMAL"}),
                          ("refused", {}), ("delivered", {})):
        log.write(event, **fields)
    reporter = ActivityReporter(log.activity, queued=lambda: 3, interval=60)
    first = reporter.report(60)
    assert first == ("last 60 s: 2 classified (1 pneumonia), 1 refused, 0 duplicate, 1 delivered, 0 dead-lettered; "
                     "since start: 2 classified (1 pneumonia), 1 refused, 0 duplicate, 1 delivered, 0 dead-lettered; "
                     "3 deliveries queued")
    log.write("duplicate")
    log.write("dead_letter")
    assert reporter.report(60).startswith("last 60 s: 0 classified (0 pneumonia), 0 refused, 1 duplicate, 0 delivered, "
                                          "1 dead-lettered;")


def test_serve_keep_results_option_is_a_folder_destination(tmp_path):
    from monai_pneumonia.cli import build_parser
    from monai_pneumonia.cli.serve import build_config

    args = build_parser().parse_args(["serve", "--spool", str(tmp_path / "s"), "--keep-results", str(tmp_path / "k"),
                                      "--stats-interval", "30"])
    config = build_config(args)
    assert [d.name for d in config.destinations] == [f"folder:{(tmp_path / 'k').resolve()}"]
    assert config.stats_interval == 30
