"""Crash safety and data hygiene of ``monai-pneumonia serve`` with real parts (Orthanc, dcmtk, a namespace).

* SIGKILL in the middle of a dcmsend burst, restart: every instance dcmsend saw acknowledged gets exactly one SR
  in Orthanc, also when Orthanc is down during the burst and comes back after the restart.
* The bad-input corpus sent in one run: the listener keeps running and refuses what is not a radiograph.
* Patient names and IDs never reach the service log or the results log.
* Checkpoints are loaded with ``weights_only=True`` everywhere.
"""

from __future__ import annotations

import ast
import json
import re
import signal
from pathlib import Path

import pydicom
import pytest

from tests.factories import gradient_picture, write_dicom
from tests.reliability.corpus import build_corpus
from tests.reliability.crash import acknowledged_by_dcmsend, crash_burst
from tests.service.harness import NetNS, Orthanc, Service, missing_tools, wait_for

REPO = Path(__file__).resolve().parents[2]
_MISSING = missing_tools()
needs_pacs = pytest.mark.skipif(_MISSING is not None, reason=f"PACS integration tests: {_MISSING}")


@pytest.fixture(scope="module")
def ns():
    if _MISSING is not None:
        pytest.skip(_MISSING)
    namespace = NetNS()
    yield namespace
    namespace.delete()


@pytest.fixture(scope="module")
def orthanc(ns, tmp_path_factory):
    pacs = Orthanc(ns, tmp_path_factory.mktemp("orthanc")).start()
    yield pacs
    pacs.stop()


def _burst(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [write_dicom(folder / f"b{i:03d}.dcm", gradient_picture(64, 64, seed=seed + i)) for i in range(count)]


@needs_pacs
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("pacs_down", [None, 3.0], ids=["pacs-up", "pacs-down-meanwhile"])
def test_sigkill_mid_burst_loses_nothing_acknowledged_and_reports_once(ns, orthanc, tiny_bundle, tmp_path,
                                                                       pacs_down):
    files = _burst(tmp_path / "in", 40, seed=1000 if pacs_down is None else 2000)
    counts = crash_burst(ns, orthanc, tiny_bundle, files, kill_after=15, workdir=tmp_path / "run",
                         port=11121 if pacs_down is None else 11122, pacs_down_s=pacs_down)
    assert counts["kill_reached"] and counts["killed_exit_code"] == -signal.SIGKILL
    assert 15 <= counts["acknowledged"] < counts["sent"], counts  # killed mid-burst: the rest was never acked
    assert counts["lost"] == [], counts
    assert counts["srs"] == counts["acknowledged"]
    assert counts["duplicates"] == 0, counts


@needs_pacs
@pytest.mark.integration
@pytest.mark.slow
def test_listener_survives_the_bad_input_corpus_and_refuses_it(ns, orthanc, tiny_bundle, tmp_path):
    cases = [c for c in build_corpus(tmp_path / "corpus") if c.dicom]
    listener = Service(ns, tmp_path / "spool", tiny_bundle, port=11123).start(timeout=300)
    try:
        log = tmp_path / "dcmsend.log"
        sender = ns.popen(["dcmsend", "-d", "--no-halt", "-aet", "MODALITY", "-aec", "PNEUMO", "127.0.0.1", "11123",
                           *[c.path for c in cases]], log)
        sender.wait(300)
        acknowledged = set(acknowledged_by_dcmsend(log.read_text(errors="replace")))
        assert acknowledged, "nothing was acknowledged:\n" + log.read_text(errors="replace")[-3000:]
        decided = wait_for(lambda: (lambda d: d if acknowledged <= set(d) else None)(
            {r["sop_instance_uid"]: r for r in listener.results() if r["event"] in ("refused", "classified")}),
            timeout=120)
        assert decided, f"undecided: {acknowledged - {r['sop_instance_uid'] for r in listener.results()}}"
        assert listener.process.poll() is None  # still running
        assert ns.run(["echoscu", "-aet", "MODALITY", "-aec", "PNEUMO", "127.0.0.1", "11123"]).returncode == 0
        by_uid = {}
        for case in cases:
            try:
                by_uid[str(pydicom.dcmread(case.path, stop_before_pixels=True, force=True).SOPInstanceUID)] = case
            except Exception:  # noqa: BLE001 - unreadable here too: dcmsend could not send it either
                continue
        for uid in acknowledged:
            record, case = decided[uid], by_uid.get(uid)
            if case is not None and case.expect == "refuse":
                assert record["event"] == "refused" and record["reason"], (case.name, record)
        # records (a timestamped line plus its continuation lines) with a traceback: only pydicom's own decoder
        # log may carry one (it logs the plugin's exception before our loader turns it into a refusal)
        records = re.split(r"\n(?=\d{4}-\d\d-\d\d )", listener.log.read_text())
        unexpected = [r for r in records if "Traceback" in r and not re.match(r"\S+ \S+ \w+ pydicom", r)]
        assert not unexpected, unexpected[0][-3000:]
    finally:
        assert listener.stop() == 0


@needs_pacs
@pytest.mark.integration
@pytest.mark.slow
def test_patient_names_and_ids_never_reach_the_logs(ns, orthanc, tiny_bundle, tmp_path):
    good = write_dicom(tmp_path / "named.dcm", gradient_picture(64, 64, seed=77))
    refused = write_dicom(tmp_path / "lateral.dcm", gradient_picture(64, 64, seed=78), view="LL")
    for path in (good, refused):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = "Doe^Jane", "SECRET123"
        ds.OtherPatientIDsSequence = []
        ds.save_as(path)
    listener = Service(ns, tmp_path / "spool", tiny_bundle, "--destination", "ORTHANC@127.0.0.1:4242",
                       "--log-level", "DEBUG", port=11124).start(timeout=300)
    try:
        result = ns.run(["dcmsend", "-aet", "MODALITY", "-aec", "PNEUMO", "127.0.0.1", "11124", good, refused])
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: listener.events("delivered") and listener.events("refused"), timeout=120)
    finally:
        assert listener.stop() == 0
    texts = {"service log": listener.log.read_text(), "results log": (tmp_path / "spool" / "results.jsonl").read_text()}
    assert "classified" in texts["results log"] and "refused" in texts["results log"]
    for name, text in texts.items():
        for secret in ("Doe", "Jane", "SECRET123"):
            assert secret not in text, f"{secret!r} found in the {name}"
    assert all(oct(p.stat().st_mode & 0o777) in ("0o600", "0o700") for p in (tmp_path / "spool").rglob("*")
               if p.is_file() or p.is_dir())


def _torch_load_calls(path: Path) -> list[tuple[int, bool]]:
    """``(line, has weights_only=True)`` of every ``torch.load(...)`` call in a Python file."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
            safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords)
            calls.append((node.lineno, safe))
    return calls


def test_every_checkpoint_load_is_weights_only():
    import monai.handlers.checkpoint_loader as checkpoint_loader

    unsafe, found = [], 0
    for folder in ("monai_pneumonia", "scripts", "benchmarks", "bundle"):
        for path in (REPO / folder).rglob("*.py"):
            for line, safe in _torch_load_calls(path):
                found += 1
                if not safe:
                    unsafe.append(f"{path.relative_to(REPO)}:{line}")
    assert found >= 2 and not unsafe, unsafe
    # the bundle configs load model.pt with networks.load_weights (checked above); MONAI's CheckpointLoader, if a
    # config uses it, must be weights_only too
    monai_calls = _torch_load_calls(Path(checkpoint_loader.__file__))
    assert monai_calls and all(safe for _, safe in monai_calls), monai_calls
    configs = json.dumps([json.loads(c.read_text()) for c in (REPO / "bundle" / "configs").glob("*.json")])
    assert "monai_pneumonia.networks.load_weights(" in configs
    assert "torch.load" not in configs
