"""Integration tests with real parts: Orthanc as the PACS, dcmtk as the modality, ``monai-pneumonia serve``.

Everything runs inside a private network namespace on loopback (see :mod:`tests.service.harness`); the tests skip
with the reason when Orthanc, dcmtk or ``ip netns`` is unavailable.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from monai_pneumonia.service.reports import result_uids
from tests.factories import gradient_picture, transcode_with_dcmtk, write_dicom
from tests.service.harness import ROUTE_LUA, NetNS, Orthanc, Service, dcmsend, missing_tools, wait_for

_MISSING = missing_tools()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(_MISSING is not None, reason=f"PACS integration tests: {_MISSING}")]

DESTINATION = ["--destination", "ORTHANC@127.0.0.1:4242"]


@pytest.fixture(scope="module")
def ns():
    namespace = NetNS()
    yield namespace
    namespace.delete()


@pytest.fixture(scope="module")
def orthanc(ns, tmp_path_factory):
    pacs = Orthanc(ns, tmp_path_factory.mktemp("orthanc"), lua=ROUTE_LUA).start()
    yield pacs
    pacs.stop()


@pytest.fixture(scope="module")
def service(ns, orthanc, tiny_bundle, tmp_path_factory):
    """The main listener, accepting only MODALITY, ORTHANC (auto-routing) and PROBE (the start-up echo)."""
    listener = Service(ns, tmp_path_factory.mktemp("main") / "spool", tiny_bundle, *DESTINATION,
                       "--allow", "MODALITY", "ORTHANC", "PROBE").start()
    yield listener
    assert listener.stop() == 0, listener.log.read_text()[-3000:]


def radiograph(folder: Path, name: str, seed: int, syntax: str = ExplicitVRLittleEndian, **kwargs) -> Path:
    """A chest DX (or ``modality=...``) file in ``syntax``; dcmtk for JPEG Lossless SV1, pydicom otherwise."""
    picture = gradient_picture(64, 56, seed=seed)
    if syntax == JPEGLosslessSV1:
        plain = write_dicom(folder / f"{name}.plain.dcm", picture, **kwargs)
        return transcode_with_dcmtk(plain, folder / f"{name}.dcm", syntax)
    return write_dicom(folder / f"{name}.dcm", picture, transfer_syntax=syntax, **kwargs)


def sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def srs_referencing(orthanc: Orthanc, uids: set[str]) -> dict[str, dict]:
    """SR instances in Orthanc by the source SOP Instance UID they reference (only those in ``uids``)."""
    found = {}
    for instance in orthanc.instances("SR"):
        for uid in orthanc.referenced_sop_uids(instance["ID"]) & uids:
            found.setdefault(uid, []).append(instance)
    return found


def wait_for_srs(orthanc: Orthanc, uids: set[str], timeout: float = 60) -> dict:
    return wait_for(lambda: (lambda f: f if set(f) == uids else None)(srs_referencing(orthanc, uids)),
                    timeout=timeout, interval=0.5) or srs_referencing(orthanc, uids)


def test_echo_and_calling_ae_allow_list(ns, service):
    assert ns.run(["echoscu", "-aet", "MODALITY", "-aec", "PNEUMO", "127.0.0.1", "11112"]).returncode == 0
    assert ns.run(["echoscu", "-aet", "INTRUDER", "-aec", "PNEUMO", "127.0.0.1", "11112"]).returncode != 0


@pytest.mark.parametrize("kind", ["CR", "DX"])
def test_every_encoding_gets_one_sr_in_its_study(ns, orthanc, service, tmp_path, kind):
    syntaxes = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEG2000Lossless,
                RLELossless, JPEGLSLossless, JPEGLosslessSV1]
    if kind == "CR":
        syntaxes = syntaxes[3:5]  # JPEG 2000 and RLE again, as CR with MONOCHROME1
    files = [radiograph(tmp_path, f"{kind}{i}", seed=i, syntax=s, modality=kind,
                        **({"photometric": "MONOCHROME1", "bits_stored": 12} if kind == "CR" else {}))
             for i, s in enumerate(syntaxes)]
    sent = dcmsend(ns, files)
    assert sent.returncode == 0, sent.stderr
    sources = {sop_uid(f): pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    found = wait_for_srs(orthanc, set(sources))
    assert set(found) == set(sources)
    for uid, instances in found.items():
        assert len(instances) == 1
        tags = orthanc.get(f"/instances/{instances[0]['ID']}/simplified-tags")
        assert tags["StudyInstanceUID"] == sources[uid].StudyInstanceUID
        assert tags["SeriesInstanceUID"] != sources[uid].SeriesInstanceUID
        assert tags["SOPInstanceUID"] == result_uids(sources[uid], "sr")[1]
    delivered = {r["sop_instance_uid"]: r for r in service.events("delivered")}
    assert set(sources) <= set(delivered)
    assert all("PatientName" not in r and "patient_id" not in r for r in delivered.values())


def test_refusal_policy(ns, orthanc, service, tmp_path):
    ct = radiograph(tmp_path, "ct", 1, modality="CT")
    result = dcmsend(ns, [ct])  # CT Image Storage: presentation context rejected at negotiation
    assert "No Acceptable Presentation Contexts" in result.stdout + result.stderr
    lateral = radiograph(tmp_path, "lateral", 2, modality="DX", view="LL")
    multiframe = radiograph(tmp_path, "multi", 3, modality="OT", extra={"NumberOfFrames": 1, "Modality": "CT"})
    assert dcmsend(ns, [lateral, multiframe]).returncode == 0  # acknowledged: stored, then refused
    refused = wait_for(lambda: {r["sop_instance_uid"]: r["reason"] for r in service.events("refused")}
                       if len(service.events("refused")) >= 2 else None, timeout=30)
    assert "view position 'LL'" in refused[sop_uid(lateral)]
    assert "modality 'CT'" in refused[sop_uid(multiframe)]
    assert ("association from MODALITY: refused 1 presentation context(s) of 1 SOP Class(es) that are not chest "
            "radiographs (abstract syntax not supported): CT Image Storage") in service.log.read_text()
    assert not srs_referencing(orthanc, {sop_uid(lateral), sop_uid(multiframe), sop_uid(ct)})
    classified = {r["sop_instance_uid"] for r in service.events("classified")}
    assert not classified & {sop_uid(lateral), sop_uid(multiframe)}


def test_duplicate_sop_instance_uid_is_not_reported_twice(ns, orthanc, service, tmp_path):
    first = radiograph(tmp_path, "dup", 7)
    uid = sop_uid(first)
    assert dcmsend(ns, [first]).returncode == 0
    assert len(wait_for_srs(orthanc, {uid})[uid]) == 1
    again = transcode_with_dcmtk(first, tmp_path / "dup-rle.dcm", RLELossless)  # same SOP Instance UID
    assert dcmsend(ns, [again]).returncode == 0
    assert wait_for(lambda: [r for r in service.events("duplicate") if r["sop_instance_uid"] == uid], timeout=20)
    assert len(srs_referencing(orthanc, {uid})[uid]) == 1
    assert sum(r["sop_instance_uid"] == uid for r in service.events("classified")) == 1


def test_orthanc_auto_routes_radiographs_to_the_listener(ns, orthanc, service, tmp_path):
    image = radiograph(tmp_path, "routed", 11, syntax=JPEG2000Lossless)
    assert dcmsend(ns, [image], port=4242, aec="ORTHANC").returncode == 0  # to the PACS, which routes (Lua)
    uid = sop_uid(image)
    assert set(wait_for_srs(orthanc, {uid})) == {uid}


def test_deployment_routing_sends_chest_films_only_and_never_the_results(ns, orthanc, service, tmp_path):
    """deploy/orthanc/route-to-pneumo.lua: CR/DX chest (or no body part) go to the listener; a hand and the SR do not."""
    hand = radiograph(tmp_path, "hand", 12, body_part="HAND")
    unnamed = radiograph(tmp_path, "unnamed", 13, body_part=None)
    assert dcmsend(ns, [hand, unnamed], port=4242, aec="ORTHANC").returncode == 0  # the hand first
    uid = sop_uid(unnamed)
    assert set(wait_for_srs(orthanc, {uid})) == {uid}
    time.sleep(3)  # a routed-back SR would follow its storage at once
    seen = {r.get("sop_instance_uid") for r in service.results()}
    assert sop_uid(hand) not in seen, "a hand film was routed to the listener"
    # routing an SR back would fail (the listener reads no SR SOP Class) and Orthanc would log an error
    errors = [line for line in (orthanc.workdir / "orthanc.log").read_text().splitlines() if line.startswith("E")]
    assert not errors, errors


def test_restart_processes_the_spool_and_does_not_report_twice(ns, orthanc, tiny_bundle, tmp_path):
    from monai_pneumonia.service import Spool

    spool_root = tmp_path / "spool"
    files = [radiograph(tmp_path, f"left{i}", 20 + i, syntax=RLELossless) for i in range(3)]
    incoming = Spool(spool_root / "incoming")  # as left by a crash after Success was answered
    for path in files:
        incoming.write(sop_uid(path), path.read_bytes())
    (incoming.root / ".incoming-partial").write_bytes(b"never acknowledged")
    uids = {sop_uid(f) for f in files}
    listener = Service(ns, spool_root, tiny_bundle, *DESTINATION, port=11113).start()
    try:
        assert set(wait_for_srs(orthanc, uids)) == uids
        assert wait_for(lambda: not list(incoming.root.iterdir()), timeout=20)  # deleted once delivered
    finally:
        assert listener.stop() == 0
    incoming.write(files[0].name and sop_uid(files[0]), files[0].read_bytes())  # a stale copy after delivery
    listener = Service(ns, spool_root, tiny_bundle, *DESTINATION, port=11113).start()
    try:
        assert wait_for(lambda: not list(incoming.root.iterdir()), timeout=20)
    finally:
        listener.stop()
    assert len(listener.events("classified")) == 3 and len(listener.events("delivered")) == 3
    assert all(len(v) == 1 for v in srs_referencing(orthanc, uids).values())


def test_results_queue_while_the_destination_is_down(ns, orthanc, tiny_bundle, tmp_path):
    listener = Service(ns, tmp_path / "spool", tiny_bundle, *DESTINATION, "--retry-initial", "0.5",
                       "--retry-max", "1", port=11114).start()
    try:
        orthanc.stop()
        files = [radiograph(tmp_path, f"down{i}", 30 + i) for i in range(2)]
        assert dcmsend(ns, files, port=11114).returncode == 0
        assert wait_for(lambda: len(listener.events("classified")) == 2, timeout=30)
        assert not listener.events("delivered")
        orthanc.start()
        uids = {sop_uid(f) for f in files}
        assert set(wait_for_srs(orthanc, uids, timeout=30)) == uids
    finally:
        if orthanc.process is None:
            orthanc.start()
        listener.stop()
    assert "delivery of" in listener.log.read_text()


def test_graceful_sigterm_keeps_unfinished_work(ns, tiny_bundle, tmp_path):
    listener = Service(ns, tmp_path / "spool", tiny_bundle, port=11115).start()
    assert listener.stop(signal.SIGTERM) == 0
    log = listener.log.read_text()
    assert "no --allow given: ANY calling AE title is accepted" in log and "stopped;" in log
    assert oct(os.stat(tmp_path / "spool").st_mode & 0o777) == "0o700"


def test_cam_secondary_capture_and_stow_rs(ns, orthanc, tiny_bundle, tmp_path):
    listener = Service(ns, tmp_path / "spool", tiny_bundle, "--cam", "--stow-url",
                       "http://127.0.0.1:8042/dicom-web", port=11116).start()
    try:
        image = radiograph(tmp_path, "cam", 40, syntax=JPEG2000Lossless)
        assert dcmsend(ns, [image], port=11116).returncode == 0
        source = pydicom.dcmread(image, stop_before_pixels=True)
        sc_uid = result_uids(source, "sc")[1]
        assert set(wait_for_srs(orthanc, {source.SOPInstanceUID})) == {source.SOPInstanceUID}
        captures = wait_for(lambda: [i for i in orthanc.instances("OT")
                                     if i["MainDicomTags"]["SOPInstanceUID"] == sc_uid], timeout=30)
        assert captures
        tags = orthanc.get(f"/instances/{captures[0]['ID']}/simplified-tags")
        assert tags["StudyInstanceUID"] == source.StudyInstanceUID and tags["PhotometricInterpretation"] == "RGB"
    finally:
        listener.stop()
