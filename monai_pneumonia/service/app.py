"""The service: listener, spool, classification worker and deliverer, wired together.

State folder layout (``spool``)::

    incoming/        received instances, <SOP Instance UID>.dcm (0600), deleted once their results are delivered
    outbox/          result instances waiting for delivery, <result SOP Instance UID>.dcm
    quarantine/      instances the service process died on twice (poison pills, see worker.py), never retried,
                     and stray files found in incoming/ (named stray-<pseudonym>), never classified
    dead-letter/     result files given up on (refused too often, damaged, destination removed; see delivery.py)
    journal.sqlite   what became of each SOP Instance UID and the delivery queue (see journal.py)
    results.jsonl    the results log (default location)

Start-up recovery: partial writes (never acknowledged) are deleted; every complete instance in ``incoming/``
that the journal has not decided is classified; decided ones are skipped (their results are delivered from the
outbox, or were already); outbox files the journal no longer references are deleted; a file in ``incoming/``
whose name is not ``<SOP Instance UID>.dcm`` is moved to ``quarantine/`` (logged by pseudonym, never by name).

Health (:meth:`PneumoniaService.health`): the service is unhealthy once its classification worker or a
deliverer cannot go on (the journal cannot be written, e.g. a full disk; an unexpected error). From then on every
C-STORE is answered ``0xA700`` (Out of Resources), never Success, and ``serve`` exits with status 1 so that
systemd restarts it: nothing is acknowledged into a dead pipeline.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from monai_pneumonia.monitoring import DriftRule, LiveMonitor, load_reference
from monai_pneumonia.redaction import install_log_hygiene
from monai_pneumonia.results import event_record
from monai_pneumonia.service.activity import ActivityReporter, pseudonym
from monai_pneumonia.service.delivery import Deliverer, Destination, describe_destination
from monai_pneumonia.service.journal import DELIVERED, Journal, PendingResult
from monai_pneumonia.service.lifeline import init_child
from monai_pneumonia.service.metrics import MetricsServer, ServiceMetrics
from monai_pneumonia.service.reports import AlgorithmInfo, PneumoniaFinding
from monai_pneumonia.service.resultslog import ResultsLog
from monai_pneumonia.service.scp import OUT_OF_RESOURCES, SUCCESS, AssociationLimits, StorageSCP, TLSConfig
from monai_pneumonia.service.spool import Spool
from monai_pneumonia.service.worker import Worker, render_results

__all__ = ["PneumoniaService", "ServiceConfig"]

logger = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    """Settings of :class:`PneumoniaService` (the ``serve`` options).

    Attributes:
        aet: our AE title.
        host: listen address.
        port: listen port.
        spool: state folder.
        destinations: where results go (C-STORE and/or STOW-RS).
        allow: calling AE titles accepted (empty: any).
        cam: also send a Grad-CAM Secondary Capture.
        lenient: flag rather than refuse lateral views, other body parts, FOR PROCESSING.
        batch_size: instances per classification batch.
        limits: association limits.
        retry_initial: first retry delay after a failed delivery (s).
        retry_max: longest retry delay (s).
        results_log: JSON-lines log (default ``<spool>/results.jsonl``).
        algorithm: name and version written into the reports.
        report_processes: processes that build the result instances (0: the classification thread does).
        tls: accept only DICOM TLS connections (``None``: plain TCP).
        stats_interval: seconds between the counters lines in the log (0: none).
        metrics_port: serve ``/metrics`` and ``/healthz`` on 127.0.0.1 at this port (``None``: no endpoint; 0: any).
        drift_reference: the live drift monitor's reference (a sidecar or records file; ``None``: no monitor).
        drift_window: films in the drift monitor's rolling window.
        drift_min_window: fewest films the drift monitor tests.
        max_refusals: refusals of one result by one destination before it is dead-lettered.
    """

    aet: str = "PNEUMO"
    host: str = "127.0.0.1"
    port: int = 11112
    spool: Path = Path("spool")
    destinations: Sequence[Destination] = field(default_factory=list)
    allow: Sequence[str] = field(default_factory=list)
    cam: bool = False
    lenient: bool = False
    batch_size: int = 16
    limits: AssociationLimits = field(default_factory=AssociationLimits)
    retry_initial: float = 1.0
    retry_max: float = 60.0
    results_log: Path | None = None
    algorithm: AlgorithmInfo = field(default_factory=AlgorithmInfo)
    report_processes: int = 2
    tls: TLSConfig | None = None
    stats_interval: float = 300.0
    metrics_port: int | None = None
    drift_reference: Path | None = None
    drift_window: int = 300
    drift_min_window: int = 100
    max_refusals: int = 5


class PneumoniaService:
    """Receive chest radiographs, classify them, store the results back.

    Args:
        config: the settings.
        classifier: a loaded :class:`~monai_pneumonia.inference.BundleClassifier`.

    Raises:
        StateFileError: the journal or the results log cannot be used (the message names the file).
    """

    def __init__(self, config: ServiceConfig, classifier) -> None:
        self.config = config
        root = Path(config.spool)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.spool = Spool(root / "incoming")
        self.outbox = Spool(root / "outbox")
        self.journal = Journal(root / "journal.sqlite")
        self.results_log = ResultsLog(config.results_log or root / "results.jsonl")
        self.quarantine, self.dead_letters = root / "quarantine", root / "dead-letter"
        self.failed = threading.Event()
        self._failure = ""
        #: the SR's algorithm identification: version = the model's SHA-256, the site profile as parameters
        self.algorithm = config.algorithm.identified(getattr(classifier, "identity", {}))
        self.deliverer = Deliverer(self.journal, config.destinations, self._finished, config.retry_initial,
                                   config.retry_max, max_refusals=config.max_refusals,
                                   on_dead_letter=self._dead_letter, on_failure=self._fail)
        self.worker = Worker(self.spool, self.outbox.root, self.journal, classifier,
                             [d.name for d in config.destinations], self.results_log,
                             on_results=self.deliverer.wakeup, batch_size=config.batch_size, cam=config.cam,
                             lenient=config.lenient, algorithm=self.algorithm, quarantine=self.quarantine,
                             on_failure=self._fail)
        self.executor = None
        if config.report_processes > 0:
            # init_child: the report processes end when this process ends, even by SIGKILL (lifeline.py)
            self.executor = ProcessPoolExecutor(config.report_processes, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=init_child,
                                                initargs=(os.getpid(), "monai_pneumonia.service.reports"))
            self.worker.executor = self.executor
        self.scp = StorageSCP(config.aet, self._store, config.allow or None, config.limits, config.tls)
        self._receive_lock = threading.Lock()
        self.stopped = threading.Event()
        self.activity = ActivityReporter(self.results_log.activity, self.journal.pending_count, config.stats_interval)
        self.metrics = ServiceMetrics()
        self.results_log.listeners.append(self.metrics.observe)
        self.drift_monitor = None
        if config.drift_reference is not None:  # DriftReferenceError at start-up, naming the file
            self.drift_monitor = LiveMonitor(load_reference(config.drift_reference),
                                             DriftRule(config.drift_window, config.drift_min_window),
                                             on_result=self.metrics.drift)
            self.results_log.listeners.append(self._monitor)
        self.metrics_server = None

    # -- event targets ----------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """``(ok, reason)`` for ``/healthz``: False once the worker or a deliverer cannot go on (the module
        docstring), when stopped, or while the classification worker is not running (during the warm-up)."""
        if self.failed.is_set():
            return False, self._failure
        if self.stopped.is_set():
            return False, "stopped"
        if not self.worker.is_alive():
            return False, "classification worker not running"
        return True, "classifying and delivering"

    def _fail(self, reason: str) -> None:
        if not self.failed.is_set():
            self._failure = reason
            self.failed.set()
            logger.critical("unhealthy: %s; every C-STORE is now answered 0xA700", reason)

    def _store(self, sop_uid: str, data: bytes, calling_aet: str) -> int:
        if self.failed.is_set():  # never acknowledge what nothing would classify
            logger.error("C-STORE from %s answered 0xA700: the service is unhealthy (%s)", calling_aet, self._failure)
            return OUT_OF_RESOURCES
        with self._receive_lock:  # one writer per UID at a time; the duplicate check sees finished writes
            if self.journal.state(sop_uid) is not None or sop_uid in self.spool:
                logger.info("duplicate SOP Instance UID %s from %s: acknowledged, not re-reported", pseudonym(sop_uid),
                            calling_aet)
                self.results_log.write("duplicate", sop_instance_uid=sop_uid, calling_aet=calling_aet)
                return SUCCESS
            try:
                path = self.spool.write(sop_uid, data)
            except OSError as error:
                logger.error("cannot spool %s from %s (%s): answered 0xA700", pseudonym(sop_uid), calling_aet,
                             type(error).__name__)
                return OUT_OF_RESOURCES
        self.metrics.received()
        self.worker.submit(sop_uid, path)
        return SUCCESS

    def _finished(self, source_uid: str, state: str, detail: dict, files: list[str]) -> None:
        """The last result of a source left the outbox (delivered, or some dead-lettered): clean up, record."""
        for name in files:
            Path(name).unlink(missing_ok=True)
        self.spool.remove(source_uid)
        if state == DELIVERED:
            latency = detail["delivered"] - detail.get("received", detail["delivered"])
            self.results_log.write("delivered", **detail, latency_s=round(latency, 4))

    def _dead_letter(self, item: PendingResult, reason: str) -> None:
        """Keep the file of a result given up on in ``dead-letter/`` and write it to the results log."""
        source = Path(item.path)
        kept = self.dead_letters / source.name
        try:
            self.dead_letters.mkdir(mode=0o700, parents=True, exist_ok=True)
            if source.is_file() and not kept.exists():
                shutil.copyfile(source, kept)
                os.chmod(kept, 0o600)
        except OSError as error:
            logger.error("cannot keep a dead-lettered result in %s (%s)", self.dead_letters, error.strerror)
        self.results_log.write("dead_letter", sop_instance_uid=item.source_uid, result_uid=item.result_uid,
                               destination=item.target, attempts=item.attempts + 1, reason=reason,
                               file=os.fspath(kept) if kept.exists() else "")

    def _monitor(self, event: dict) -> None:
        if (record := event_record(event)) is not None:
            self.drift_monitor.add(record)

    # -- life cycle -------------------------------------------------------------------------------------------

    def recover(self) -> int:
        """Re-queue the undecided instances of the spool (see the module docstring); returns how many."""
        partial = self.spool.discard_partial() + self.outbox.discard_partial()
        if partial:
            logger.info("deleted %d partial writes left by an interruption (never acknowledged)", partial)
        referenced = self.journal.referenced_files()
        for _, path in self.outbox.pending():
            if os.fspath(path) not in referenced:
                path.unlink(missing_ok=True)
        for stray in self.spool.strays():  # never written by the listener (every name it writes is a UID)
            self.quarantine.mkdir(mode=0o700, parents=True, exist_ok=True)
            moved = self.quarantine / f"stray-{pseudonym(stray.name)[4:]}"
            os.replace(stray, moved)
            logger.warning("a file in %s is not named after a SOP Instance UID: moved to %s, never classified",
                           self.spool.root, moved)  # its name may be anything, even a patient's: not logged
        queued = 0
        for sop_uid, path in self.spool.pending():
            self.worker.submit(sop_uid, path)
            queued += 1
        return queued

    def warm_up(self) -> None:
        """Classify and report one synthetic radiograph (not sent anywhere), so the first real one is not slow."""
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = DigitalXRayImageStorageForPresentation, generate_uid()
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "DX"
        ds.Rows = ds.Columns = 64
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = np.linspace(0, 255, 64 * 64).astype(np.uint8).tobytes()
        with tempfile.TemporaryDirectory(dir=self.spool.root.parent) as folder:
            path = Path(folder) / "warm-up.dcm"
            ds.save_as(path, enforce_file_format=True)
            result = self.worker.classifier(path)
            overlay = self.worker.classifier.cam_overlay(path, result) if self.config.cam else None
            jobs = [(ds, PneumoniaFinding(0.5, 0.5), self.algorithm, overlay)] * 4 * self.config.report_processes
            list(self.executor.map(render_results, jobs) if self.executor else map(render_results, jobs[:1]))

    def start(self) -> None:
        """Recover the spool, start the listener, warm the model up, start the worker and the deliverer."""
        config = self.config
        install_log_hygiene()  # third-party warnings quote names: withheld; every logged field escaped
        queued = self.recover()
        self.scp.start(config.host, config.port)  # instances received during the warm-up wait in the spool
        if config.metrics_port is not None:  # /healthz answers 503 until the worker runs
            self.metrics_server = MetricsServer(self.metrics, self.health, config.metrics_port)
            self.metrics_server.start()
        self.warm_up()
        self.worker.start()
        self.deliverer.start()
        self.activity.start()
        logger.info("ready: classifying and delivering")
        logger.info("listening as AE %s on %s:%d (max %d associations, PDU %d, timeouts ACSE %gs DIMSE %gs "
                    "network %gs)", config.aet, config.host, config.port, config.limits.max_associations,
                    config.limits.max_pdu, config.limits.acse_timeout, config.limits.dimse_timeout,
                    config.limits.network_timeout)
        if config.tls is not None:
            logger.info("DICOM TLS only (certificate %s); client certificates %s", config.tls.cert,
                        f"required, signed by {config.tls.ca}" if config.tls.ca else "not required")
        if config.allow:
            logger.info("calling AE titles accepted: %s", ", ".join(config.allow))
        else:
            logger.warning("no --allow given: ANY calling AE title is accepted")
        if config.destinations:
            logger.info("results go to: %s", "; ".join(describe_destination(d) for d in config.destinations))
        else:
            logger.warning("results go nowhere: no --destination, --stow-url or --keep-results; each result is "
                           "recorded in %s and its SR/SC files are deleted (keep them with --keep-results DIR)",
                           self.results_log.path)
        if self.drift_monitor is not None:
            logger.info("drift monitor: rolling window of %d films (tested from %d) against %s",
                        self.drift_monitor.rule.window, self.drift_monitor.rule.min_window,
                        self.drift_monitor.reference.source or config.drift_reference)
        logger.info("spool %s: %d instances to process, %d deliveries queued, %d dead letters; results log %s",
                    Path(config.spool).resolve(), queued, self.journal.pending_count(),
                    self.journal.dead_letter_count(), self.results_log.path)

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Graceful stop: refuse new associations, finish the current batch, try one last delivery round.

        What is not finished stays in the spool and outbox and is processed at the next start.
        """
        logger.info("stopping: no new associations; finishing the current batch")
        self.scp.stop()
        self.worker.stop()
        self.deliverer.stop(drain_timeout)
        self.activity.stop()
        self.activity.report(0)
        if self.metrics_server is not None:
            self.metrics_server.stop()
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
        try:
            left = self.journal.pending_count() + sum(1 for _ in self.spool.pending())
            logger.info("stopped; %d items kept for the next start", left)
        except Exception as error:  # noqa: BLE001 - an unhealthy journal must not hide the reason we stop for
            logger.error("stopped; the journal cannot be read (%s)", type(error).__name__)
        self.journal.close()
        self.results_log.close()
        self.stopped.set()
