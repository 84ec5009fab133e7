"""Delivery records only what a destination confirmed; what it never takes is dead-lettered, once, not spun on.

Real peers on 127.0.0.1: a small STOW-RS server (``http.server``) answering per instance (PS3.18 10.5.3) and a
pynetdicom Storage SCP; the results are real files in the outbox, queued in a real journal.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE, evt

from monai_pneumonia.service.delivery import CStoreDestination, Deliverer, StowDestination, stow_statuses
from monai_pneumonia.service.folder import FolderDestination
from monai_pneumonia.service.journal import CLASSIFIED, DELIVERED, UNDELIVERABLE, Journal
from tests.conftest import free_port
from tests.factories import gradient_picture, write_dicom
from tests.service.harness import wait_for


def _queue(tmp_path: Path, journal: Journal, targets: list[str], count: int, start: int = 0) -> list[tuple[str, str]]:
    """``count`` sources, each with one result file in ``outbox/``, queued for ``targets``: ``(source, result)``."""
    outbox = tmp_path / "outbox"
    outbox.mkdir(exist_ok=True)
    queued = []
    for seed in range(start, start + count):
        result = write_dicom(outbox / f"r{seed}.dcm", gradient_picture(24, 20, seed=seed), modality="OT")
        ds = pydicom.dcmread(result)  # a Secondary Capture, as the Grad-CAM results are
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        ds.save_as(result)
        result_uid = str(ds.SOPInstanceUID)
        source = generate_uid()
        assert journal.record_classified(source, {"received": time.time()}, [(result_uid, str(result))], targets)
        queued.append((source, result_uid))
    return queued


class _Recorder:
    """The deliverer's callbacks, recorded."""

    def __init__(self) -> None:
        self.finished, self.dead = [], []

    def deliverer(self, journal: Journal, destinations, **kwargs) -> Deliverer:
        return Deliverer(journal, destinations, lambda *args: self.finished.append(args), retry_initial=0,
                         retry_max=0, on_dead_letter=lambda item, reason: self.dead.append((item, reason)), **kwargs)


# -- a STOW-RS peer ------------------------------------------------------------------------------------------------


class _StowServer(http.server.ThreadingHTTPServer):
    """Answers STOW-RS with a Store Instances Response: ``fail`` UIDs in FailedSOPSequence, the rest referenced."""

    def __init__(self, fail: set[str] = frozenset(), xml: bool = False, empty: bool = False, delay: float = 0.0):
        self.fail, self.xml, self.empty, self.delay = set(fail), xml, empty, delay
        self.known: set[str] = set()
        self.requests = 0
        super().__init__(("127.0.0.1", 0), _StowHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StowHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        server: _StowServer = self.server
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.requests += 1
        time.sleep(server.delay)
        sent = {uid for uid in server.known if uid.encode() in body}
        if server.empty:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        response = Dataset()
        response.ReferencedSOPSequence = [_item(uid) for uid in sorted(sent - server.fail)]
        failed = [_item(uid) for uid in sorted(sent & server.fail)]
        for item in failed:
            item.FailureReason = 0xC000
        response.FailedSOPSequence = failed
        if server.xml:
            payload, kind = _xml(response).encode(), "application/dicom+xml"
        else:
            payload, kind = json.dumps(response.to_json_dict()).encode(), "application/dicom+json"
        self.send_response(202 if failed else 200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _item(uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ComprehensiveSRStorage, uid
    return item


def _xml(response: Dataset) -> str:
    """The response in the Native DICOM Model (PS3.19 A.1)."""
    def attribute(element) -> str:
        head = f'<DicomAttribute tag="{element.tag:08X}" vr="{element.VR}" keyword="{element.keyword}">'
        if element.VR == "SQ":
            items = "".join(f'<Item number="{n}">{"".join(attribute(e) for e in item)}</Item>'
                            for n, item in enumerate(element.value, 1))
            return f"{head}{items}</DicomAttribute>"
        return f'{head}<Value number="1">{element.value}</Value></DicomAttribute>'

    return ('<?xml version="1.0" encoding="UTF-8"?><NativeDicomModel>'
            + "".join(attribute(e) for e in response) + "</NativeDicomModel>")


@pytest.fixture()
def stow():
    servers = []

    def start(**kwargs) -> _StowServer:
        servers.append(_StowServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("xml", [False, True], ids=["json", "xml"])
def test_stow_partial_failure_delivers_only_what_the_pacs_confirmed(tmp_path, stow, xml):
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    server = stow(xml=xml)
    destination = StowDestination(server.url)
    queued = _queue(tmp_path, journal, [destination.name], 6)
    server.known, server.fail = {result for _, result in queued}, {queued[2][1]}
    deliverer = calls.deliverer(journal, [destination], max_refusals=2)
    assert deliverer.deliver_due() == 5
    states = [journal.state(source) for source, _ in queued]
    assert states == [DELIVERED, DELIVERED, CLASSIFIED, DELIVERED, DELIVERED, DELIVERED]
    assert [item.result_uid for item in journal.due()] == [queued[2][1]]  # still queued, for a retry
    assert (tmp_path / "outbox" / "r2.dcm").is_file()
    assert deliverer.deliver_due() == 0  # refused again: that was the last attempt (max_refusals 2)
    assert journal.state(queued[2][0]) == UNDELIVERABLE and journal.pending_count() == 0
    assert [(item.result_uid, "0xC000" in reason) for item, reason in calls.dead] == [(queued[2][1], True)]
    assert journal.dead_letter_count() == 1 and server.requests == 2
    assert deliverer.deliver_due() == 0 and server.requests == 2  # never retried


def test_a_stow_response_that_confirms_nothing_delivers_nothing(tmp_path, stow):
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    server = stow(empty=True)
    destination = StowDestination(server.url)
    queued = _queue(tmp_path, journal, [destination.name], 2)
    assert calls.deliverer(journal, [destination]).deliver_due() == 0
    assert [journal.state(source) for source, _ in queued] == [CLASSIFIED, CLASSIFIED]
    assert journal.pending_count() == 2 and not calls.dead  # not refused either: retried, never given up on


def test_stow_statuses_reads_the_store_instances_response():
    response = Dataset()
    response.ReferencedSOPSequence = [_item("1.2.3"), _item("1.2.4")]
    failed = _item("1.2.5")
    failed.FailureReason = 0xA700
    response.FailedSOPSequence = [failed]
    assert stow_statuses(response) == ({"1.2.3", "1.2.4"}, {"1.2.5": "STOW-RS failure reason 0xA700"})
    assert stow_statuses(Dataset()) == (set(), {})


# -- bounded retries: a PACS that always refuses -------------------------------------------------------------------


@pytest.fixture()
def refusing_scp():
    """A Storage SCP for SRs that answers every C-STORE 0xA700 (Out of Resources)."""
    ae = AE(ae_title="PACS")
    ae.add_supported_context(ComprehensiveSRStorage, ExplicitVRLittleEndian)
    ae.add_supported_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    stores = []
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, lambda event: stores.append(1) or 0xA700)])
    yield port, stores
    server.shutdown()


def test_a_result_the_pacs_always_refuses_is_dead_lettered_after_max_refusals(tmp_path, refusing_scp, caplog):
    port, stores = refusing_scp
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    destination = CStoreDestination("PACS", "127.0.0.1", port, timeout=10)
    queued = _queue(tmp_path, journal, [destination.name], 1)
    deliverer = calls.deliverer(journal, [destination], max_refusals=3)
    with caplog.at_level(logging.WARNING, logger="monai_pneumonia.service.delivery"):
        for _ in range(6):
            deliverer.deliver_due()
    assert len(stores) == 3  # three attempts, then never again
    assert journal.state(queued[0][0]) == UNDELIVERABLE and journal.pending_count() == 0
    assert len(calls.dead) == 1 and "0xA700" in calls.dead[0][1]
    assert len([r for r in caplog.records if "dead-lettered" in r.getMessage()]) == 1


# -- a destination removed from the configuration ------------------------------------------------------------------


def test_results_for_a_removed_destination_are_dead_lettered_once_and_new_ones_delivered(tmp_path, caplog):
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    stale = _queue(tmp_path, journal, ["OLDPACS@127.0.0.1:1"], 70)
    kept = FolderDestination(tmp_path / "kept")
    fresh = _queue(tmp_path, journal, [kept.name], 1, start=100)
    deliverer = calls.deliverer(journal, [kept])
    cpu = time.process_time()
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.service.delivery"):
        deliverer.start()
        try:
            assert wait_for(lambda: journal.state(fresh[0][0]) == DELIVERED, timeout=10)
            time.sleep(2.0)
        finally:
            deliverer.stop()
    assert time.process_time() - cpu < 0.3 * 4  # no spinning: well under a core for the ~2-4 s it ran
    assert [journal.state(source) for source, _ in stale] == [UNDELIVERABLE] * 70
    assert journal.pending_count() == 0 and len(calls.dead) == 70
    assert all("no longer configured" in reason for _, reason in calls.dead)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name == "monai_pneumonia.service.delivery"]
    assert len(warnings) == 1 and "OLDPACS" in warnings[0].getMessage()


# -- one damaged file in the outbox --------------------------------------------------------------------------------


def _damage(tmp_path: Path, queued, missing: int, garbage: int) -> None:
    (tmp_path / "outbox" / f"r{missing}.dcm").unlink()
    (tmp_path / "outbox" / f"r{garbage}.dcm").write_bytes(b"\x00not DICOM\xff" * 20)


def test_one_damaged_file_is_dead_lettered_and_the_others_kept_in_the_folder(tmp_path, caplog):
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    kept = FolderDestination(tmp_path / "kept")
    queued = _queue(tmp_path, journal, [kept.name], 10)
    _damage(tmp_path, queued, missing=3, garbage=7)
    deliverer = calls.deliverer(journal, [kept])
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.service"):
        assert deliverer.deliver_due() == 8
    assert len([r for r in caplog.records if "dead-lettered" in r.getMessage()]) == 2
    assert not [uid for pair in queued for uid in pair if uid in caplog.text]  # no UID in the log
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == sorted(
        f"r{i}.dcm" for i in range(10) if i not in (3, 7))
    assert {item.result_uid for item, _ in calls.dead} == {queued[3][1], queued[7][1]}
    assert journal.state(queued[3][0]) == journal.state(queued[7][0]) == UNDELIVERABLE
    assert journal.pending_count() == 0 and deliverer.deliver_due() == 0


def test_one_damaged_file_is_dead_lettered_and_the_others_stowed(tmp_path, stow):
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    server = stow()
    destination = StowDestination(server.url)
    queued = _queue(tmp_path, journal, [destination.name], 10)
    server.known = {result for _, result in queued}
    _damage(tmp_path, queued, missing=1, garbage=4)
    assert calls.deliverer(journal, [destination]).deliver_due() == 8
    assert {item.result_uid for item, _ in calls.dead} == {queued[1][1], queued[4][1]}
    assert journal.pending_count() == 0 and server.requests == 1


# -- one deliverer per destination ---------------------------------------------------------------------------------


def test_a_slow_destination_does_not_delay_the_others(tmp_path, stow):
    journal, calls = Journal(tmp_path / "j.sqlite"), _Recorder()
    slow = stow(delay=6.0)
    slow_destination, kept = StowDestination(slow.url, timeout=30), FolderDestination(tmp_path / "kept")
    queued = _queue(tmp_path, journal, [slow_destination.name, kept.name], 3)
    slow.known = {result for _, result in queued}
    deliverer = calls.deliverer(journal, [slow_destination, kept])
    started = time.monotonic()
    deliverer.start()
    try:
        assert wait_for(lambda: len(list((tmp_path / "kept").glob("*.dcm"))) == 3, timeout=20)
        assert time.monotonic() - started < 3, "the folder waited for the slow STOW-RS endpoint"
        assert wait_for(lambda: journal.pending_count() == 0, timeout=30)
    finally:
        deliverer.stop()
    assert [journal.state(source) for source, _ in queued] == [DELIVERED] * 3
