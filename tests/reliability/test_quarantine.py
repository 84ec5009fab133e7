"""Poison pills: an instance that kills the service process is quarantined after two deaths, never a crash loop.

A child process plays the service after each restart: it processes the spool with the real
:class:`~monai_pneumonia.service.worker.Worker` and journal, and a classifier that aborts the process (SIGABRT, as
a native decoder does) whenever the poison instance is in its batch. The test restarts it until it exits normally.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest

from monai_pneumonia.service.journal import DELIVERED, QUARANTINED, Journal
from monai_pneumonia.service.spool import Spool
from tests.factories import gradient_picture, write_dicom

REPO = Path(__file__).resolve().parents[2]

_SERVICE_RUN = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from monai_pneumonia.inference import Classification
    from monai_pneumonia.service.journal import Journal
    from monai_pneumonia.service.resultslog import ResultsLog
    from monai_pneumonia.service.spool import Spool
    from monai_pneumonia.service.worker import Worker

    root, poison = Path(sys.argv[1]), sys.argv[2]

    class Aborting:
        threshold = 0.5
        def classify(self, paths):
            paths = [os.fspath(p) for p in paths]
            if any(poison in p for p in paths):
                os.abort()
            return [Classification(p, 0.7, "PNEUMONIA", 0.5) for p in paths]

    spool = Spool(root / "incoming")
    worker = Worker(spool, Spool(root / "outbox").root, Journal(root / "journal.sqlite"), Aborting(), [],
                    ResultsLog(root / "results.jsonl"), quarantine=root / "quarantine")
    worker.process_safely(list(spool.pending()))
""")


@pytest.mark.slow
def test_an_instance_that_kills_the_process_is_quarantined_and_the_others_are_classified(tmp_path):
    spool = Spool(tmp_path / "incoming")
    uids = []
    for seed in range(4):
        path = write_dicom(tmp_path / f"{seed}.dcm", gradient_picture(seed=seed))
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        spool.write(uid, path.read_bytes())
        uids.append(uid)
    poison = uids[2]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    codes = []
    for _ in range(5):  # a crash loop would need more restarts than this
        run = subprocess.run([sys.executable, "-c", _SERVICE_RUN, str(tmp_path), poison], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
        codes.append(run.returncode)
        if run.returncode == 0:
            break
    # batch (dies), poison alone (dies), then quarantined: two deaths, the third start ends normally
    assert codes == [-signal.SIGABRT, -signal.SIGABRT, 0], (codes, run.stderr[-2000:])
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.state(poison) == QUARANTINED
    assert [journal.state(uid) for uid in uids if uid != poison] == [DELIVERED] * 3  # no destinations
    assert (tmp_path / "quarantine" / f"{poison}.dcm").is_file() and poison not in spool
    assert "quarantined" in journal.detail(poison)["reason"]
    events = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [e["sop_instance_uid"] for e in events if e["event"] == "quarantined"] == [poison]
    # never retried: another start leaves it alone
    run = subprocess.run([sys.executable, "-c", _SERVICE_RUN, str(tmp_path), poison], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and journal.interrupted([poison]) == {poison: 0}


def test_attempts_the_process_survives_are_not_counted(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.begin_attempt(["1.2.3"])
    journal.end_attempt(["1.2.3"])
    assert journal.interrupted(["1.2.3"]) == {"1.2.3": 0}
    journal.begin_attempt(["1.2.3"])  # the process dies here
    assert Journal(tmp_path / "journal.sqlite").interrupted(["1.2.3", "1.2.4"]) == {"1.2.3": 1, "1.2.4": 0}
