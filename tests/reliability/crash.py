"""SIGKILL ``monai-pneumonia serve`` in the middle of a dcmsend burst, restart it, count the SRs in Orthanc.

Shared by ``tests/reliability/test_crash.py`` and ``benchmarks/bench_crash.py``. What the sender saw acknowledged
comes from ``dcmsend -d`` (each C-STORE response with its Affected SOP Instance UID and DIMSE status), never from
the service, so a lie by the service (Success before the instance is safe) shows up as a lost instance.
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

import pydicom

from monai_pneumonia.service.reports import result_uids
from tests.service.harness import NetNS, Orthanc, Service, wait_for

__all__ = ["acknowledged_by_dcmsend", "crash_burst", "sr_uids_in_orthanc"]

_RESPONSE = re.compile(r"Message Type\s+: C-STORE RSP")
_UID = re.compile(r"Affected SOP Instance UID\s+: (\S+)")
_STATUS = re.compile(r"DIMSE Status\s+: 0x([0-9A-Fa-f]{4})")


def acknowledged_by_dcmsend(log: str) -> list[str]:
    """SOP Instance UIDs whose C-STORE response in a ``dcmsend -d`` log says Success (0x0000), in order."""
    acknowledged, uid, in_response = [], None, False
    for line in log.splitlines():
        if _RESPONSE.search(line):
            in_response, uid = True, None
        elif in_response and (match := _UID.search(line)):
            uid = match.group(1)
        elif in_response and (match := _STATUS.search(line)):
            if uid and int(match.group(1), 16) == 0:
                acknowledged.append(uid)
            in_response = False
    return acknowledged


def sr_uids_in_orthanc(orthanc: Orthanc) -> list[str]:
    """SOP Instance UIDs of every SR instance in Orthanc (one ``/tools/find`` call)."""
    found = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}, "Expand": True})
    return [item["MainDicomTags"]["SOPInstanceUID"] for item in found]


def crash_burst(ns: NetNS, orthanc: Orthanc, bundle: Path, files: list[Path], kill_after: int, workdir: Path,
                port: int = 11120, pacs_down_s: float | None = None, timeout: float = 300, start_timeout: float = 300) -> dict:
    """Send ``files`` in one dcmsend association, SIGKILL the listener after ``kill_after`` acknowledgements,
    restart it on the same spool, wait for the SRs; returns the counts.

    Args:
        ns: the network namespace everything runs in.
        orthanc: the PACS, started (the results' destination).
        bundle: bundle folder for ``serve``.
        files: DICOM files with distinct SOP Instance UIDs.
        kill_after: acknowledged C-STOREs before the SIGKILL.
        workdir: folder for the spool and logs.
        port: the listener's port.
        pacs_down_s: when given, Orthanc is stopped during the burst and started again this many seconds
            after the listener restarted (results must queue, then be delivered).
        timeout: seconds to wait for the SRs after the restart.
        start_timeout: seconds the listener may take to start (model loading on a busy machine).

    Returns:
        ``sent``, ``acknowledged``, ``srs`` (acknowledged instances with their SR in Orthanc), ``lost``
        (acknowledged, no SR), ``duplicates`` (SR instances beyond one per source, and SRs with an unexpected
        UID), ``unacknowledged_with_sr``, ``killed_at_acknowledged``, timings and the exit code of the killed run.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f for f in files}
    expected_sr = {uid: result_uids(pydicom.dcmread(path, stop_before_pixels=True), "sr")[1]
                   for uid, path in sources.items()}
    before = Counter(sr_uids_in_orthanc(orthanc))
    spool, send_log = workdir / "spool", workdir / "dcmsend.log"
    service = Service(ns, spool, bundle, "--destination", "ORTHANC@127.0.0.1:4242", "--retry-initial", "0.5",
                      "--retry-max", "2", port=port, log=workdir / "serve.log").start(timeout=start_timeout)
    if pacs_down_s is not None:
        orthanc.stop()
    started = time.time()
    sender = ns.popen(["dcmsend", "-d", "-aet", "MODALITY", "-aec", "PNEUMO", "127.0.0.1", str(port), *files],
                      send_log)
    reached = wait_for(lambda: len(acknowledged_by_dcmsend(send_log.read_text(errors="replace"))) >= kill_after
                       or sender.poll() is not None, timeout=timeout, interval=0.02)
    acked_at_kill = len(acknowledged_by_dcmsend(send_log.read_text(errors="replace")))
    killed_code = service.stop(signal.SIGKILL)
    sender.wait(timeout)
    acknowledged = acknowledged_by_dcmsend(send_log.read_text(errors="replace"))
    restarted = time.time()
    service.start(timeout=start_timeout)
    try:
        if pacs_down_s is not None:
            time.sleep(pacs_down_s)  # the restarted listener classifies and queues; deliveries fail meanwhile
            orthanc.start()
        wanted = {expected_sr[uid] for uid in acknowledged}
        wait_for(lambda: wanted <= set(sr_uids_in_orthanc(orthanc)), timeout=timeout, interval=0.5)
        recovered = time.time()
        time.sleep(1.0)  # anything delivered twice would arrive now
        after = Counter(sr_uids_in_orthanc(orthanc)) - before
    finally:
        service.stop()
    classified = Counter(r["sop_instance_uid"] for r in service.events("classified"))
    delivered = Counter(r["sop_instance_uid"] for r in service.events("delivered"))
    by_source = {uid: after.get(sr, 0) for uid, sr in expected_sr.items()}
    unexpected = sum(n for sr, n in after.items() if sr not in set(expected_sr.values()))
    return {
        "sent": len(files),
        "acknowledged": len(acknowledged),
        "killed_at_acknowledged": acked_at_kill,
        "kill_reached": bool(reached),
        "killed_exit_code": killed_code,
        "srs": sum(1 for uid in acknowledged if by_source[uid] >= 1),
        "lost": sorted(uid for uid in acknowledged if by_source[uid] == 0),
        "duplicates": sum(max(0, n - 1) for n in by_source.values()) + unexpected,
        "unacknowledged_with_sr": sum(1 for uid in set(sources) - set(acknowledged) if by_source[uid]),
        "classified_twice": sum(1 for n in classified.values() if n > 1),
        "delivered_events_twice": sum(1 for n in delivered.values() if n > 1),
        "pacs_down_s": pacs_down_s,
        "burst_to_kill_s": round(restarted - started, 3),
        "restart_to_all_srs_s": round(recovered - restarted, 3),
    }
