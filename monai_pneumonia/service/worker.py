"""The classification worker: spooled instances -> screening -> batched classification -> results in the outbox.

For each instance, in order: a SOP Instance UID already in the journal is skipped (and its spool file removed
once it is delivered or refused); the header is screened (:func:`~monai_pneumonia.service.screening.screen`);
the accepted ones are classified in batches by the bundle's :class:`~monai_pneumonia.inference.BundleClassifier`;
each result is written to the outbox as DICOM (SR, and with ``cam`` a Grad-CAM SC) *before* the journal records
it, so a crash at any point either leaves the instance undecided (it is processed again, giving the same result
UIDs) or decided with its results on disk. The spool file is deleted only when all its results are delivered.

Poison pills: every attempt is counted in the journal until it returns (:meth:`~monai_pneumonia.service.journal.
Journal.begin_attempt`), so after a restart the worker knows which instances were being processed when the
process died. Those are processed one at a time (a second death names its culprit), and one the process has
died on ``max_interrupted`` times is moved to the quarantine folder, recorded ``quarantined``, logged and written
to the results log, and never retried: no input can keep the service in a crash loop.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor
from pathlib import Path

from pydicom.dataset import Dataset

from monai_pneumonia.inference import Classification
from monai_pneumonia.io.deflate import dcmread_bounded, inflated_limit
from monai_pneumonia.io.policy import DEFAULT_MAX_PIXELS
from monai_pneumonia.redaction import install as _install_redaction
from monai_pneumonia.results import FLAGS_KEY, Refusal, atomic_write, film_record, join_flags, split_flags
from monai_pneumonia.service.activity import log_classified, pseudonym
from monai_pneumonia.service.journal import CLASSIFIED, Journal
from monai_pneumonia.service.reports import AlgorithmInfo, PneumoniaFinding, header_fallbacks, render_results
from monai_pneumonia.service.resultslog import ResultsLog
from monai_pneumonia.service.screening import screen
from monai_pneumonia.service.spool import Spool
from monai_pneumonia.service.uids import is_valid_uid

__all__ = ["Worker"]

logger = logging.getLogger(__name__)
_install_redaction()  # headers are read here too: pydicom's value warnings never reach the log
#: Most bytes a spooled deflated data set may inflate to while its header is read (the loader's own limit).
_INFLATED_LIMIT = inflated_limit(DEFAULT_MAX_PIXELS)


#: The UIDs a result refers to (PS3.5 9.1 grammar required: an invalid one never reaches a report).
_REFERENCED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")


def _invalid_uid(header: Dataset, sop_uid: str) -> str:
    """Why the header's UIDs cannot be referenced by a result (``""`` when they can)."""
    for keyword in _REFERENCED_UIDS:
        if not is_valid_uid(str(header.get(keyword, "") or "")):
            return f"{keyword} is missing or not a valid UID (PS3.5 9.1)"
    if str(header.SOPInstanceUID) != sop_uid:
        return "the data set's SOPInstanceUID differs from the SOP Instance UID it was received as"
    return ""


def _uids(header: Dataset | None, sop_uid: str) -> dict:
    def get(keyword: str) -> str:  # an invalid UID is not written anywhere (it may hold anything, even a name)
        value = str(header.get(keyword, "") or "") if header is not None else ""
        return value if keyword == "Modality" or is_valid_uid(value) else ""

    return {"sop_instance_uid": sop_uid, "study_instance_uid": get("StudyInstanceUID"),
            "series_instance_uid": get("SeriesInstanceUID"), "sop_class_uid": get("SOPClassUID"),
            "modality": get("Modality")}


class Worker(threading.Thread):
    """Classifies spooled instances in batches.

    Args:
        spool: received instances.
        outbox: folder of result files waiting for delivery.
        journal: the state database.
        classifier: a :class:`~monai_pneumonia.inference.BundleClassifier` (or anything with its ``classify``,
            ``cam_overlay`` and ``threshold``).
        targets: destination names results are queued for.
        results_log: the JSON-lines log.
        on_results: called after a batch queued results (wakes the deliverer).
        batch_size: most instances per batch.
        cam: also produce a Grad-CAM Secondary Capture.
        lenient: see :func:`~monai_pneumonia.service.screening.screen`.
        algorithm: name and version written into the SR.
        executor: a ``concurrent.futures`` executor that runs :func:`render_results` (default: this thread).
        quarantine: folder that instances the process died on are moved to (``None``: they are deleted).
        max_interrupted: attempts at one instance the process may not survive before it is quarantined.
        on_failure: called with a reason when the thread cannot go on (the journal cannot be written, an
            unexpected error): the service is then unhealthy and exits (see ``PneumoniaService.health``).
    """

    def __init__(self, spool: Spool, outbox: Path, journal: Journal, classifier, targets: Sequence[str],
                 results_log: ResultsLog, on_results: Callable[[], None] = lambda: None, batch_size: int = 16,
                 cam: bool = False, lenient: bool = False, algorithm: AlgorithmInfo | None = None,
                 executor: Executor | None = None, quarantine: Path | None = None, max_interrupted: int = 2,
                 on_failure: Callable[[str], None] = lambda reason: None) -> None:
        super().__init__(name="classifier", daemon=True)
        self.spool, self.outbox, self.journal, self.classifier = spool, outbox, journal, classifier
        self.targets = list(targets)
        self.results_log, self.on_results = results_log, on_results
        self.batch_size, self.cam, self.lenient = batch_size, cam, lenient
        self.algorithm = algorithm or AlgorithmInfo()
        #: the model's identity (and the site profile's) written into every results.jsonl record
        self.identity = {key: value for key, value in getattr(classifier, "identity", {}).items() if value}
        self.executor = executor
        self.quarantine, self.max_interrupted = quarantine, max_interrupted
        self.retry_delay = 5.0
        self.queue: queue.Queue[tuple[str, Path]] = queue.Queue()
        self.stopping = threading.Event()
        self.on_failure = on_failure
        self.failure: str | None = None

    def submit(self, sop_uid: str, path: Path) -> None:
        """Queue a spooled instance."""
        self.queue.put((sop_uid, path))

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # noqa: BLE001 - never a live listener in front of a dead worker
            # the type, and SQLite's own message (never a value); other texts may quote attribute values or paths
            said = f": {error}" if isinstance(error, sqlite3.Error) else ""
            self.failure = f"the classification worker stopped ({type(error).__name__}{said})"
            logger.critical("%s", self.failure)
            self.on_failure(self.failure)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                items = [self.queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(items) < self.batch_size:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            self.process_safely(items)

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current batch and stop (queued instances stay in the spool)."""
        self.stopping.set()
        self.join(timeout)

    def process_safely(self, items: Sequence[tuple[str, Path]]) -> None:
        """:meth:`process`, isolating failures.

        Instances an earlier process died on are quarantined or processed alone (module docstring). An
        environment failure (``OSError`` such as a full disk, a broken report process) refuses nothing: the
        instances stay in the spool and are queued again after ``retry_delay``. Any other failure of a batch is
        retried one instance at a time, and a single instance that still fails is refused, so one bad input
        cannot block the spool.
        """
        interrupted = self.journal.interrupted(uid for uid, _ in items)
        fresh = []
        for item in items:
            if interrupted[item[0]] >= self.max_interrupted:
                self._quarantine(*item, interrupted[item[0]])
            elif interrupted[item[0]] and len(items) > 1:
                self.process_safely([item])
            else:
                fresh.append(item)
        if not fresh:
            return
        uids = [uid for uid, _ in fresh]
        failure = None
        self.journal.begin_attempt(uids)
        try:
            self.process(fresh)
        except (OSError, BrokenExecutor) as error:  # the environment, not the instance: keep and retry
            if isinstance(error, BrokenExecutor):
                self.executor = None
                logger.error("the report process pool broke; building reports in the classification thread")
            logger.error("%d instances stay in the spool and are retried in %g s: %s", len(fresh),
                         self.retry_delay, error)
            if not self.stopping.wait(self.retry_delay):
                for item in fresh:
                    self.queue.put(item)
        except sqlite3.Error:  # the journal (disk full, I/O error): not the instance's fault, the worker cannot go on
            raise
        except Exception as error:  # noqa: BLE001 - isolate the failing instance
            failure = error
        finally:
            self.journal.end_attempt(uids)
        if failure is None:
            return
        if len(fresh) > 1:
            logger.warning("batch of %d failed (%s); processing one by one", len(fresh), type(failure).__name__)
            for item in fresh:
                self.process_safely([item])
            return
        sop_uid, path = fresh[0]
        logger.error("processing %s failed (%s)", pseudonym(sop_uid), type(failure).__name__)
        # third-party messages may quote attribute values (PHI): the exception type only, never its text
        self._refuse(sop_uid, path, None, f"processing failed ({type(failure).__name__})")

    def _quarantine(self, sop_uid: str, path: Path, interrupted: int) -> None:
        """Move an instance the process died on out of the spool, record and report it (never retried)."""
        target = None
        if self.quarantine is not None and path.exists():
            self.quarantine.mkdir(mode=0o700, parents=True, exist_ok=True)
            target = self.quarantine / path.name
            os.replace(path, target)
        reason = (f"quarantined: the service process ended {interrupted} times while processing this instance "
                  f"(a decoder or library crash); {'moved to ' + str(self.quarantine) if target else 'deleted'}, "
                  "never retried")
        detail = {**_uids(None, sop_uid), "reason": reason, "received": self._received(target or path),
                  "quarantine": str(target) if target else ""}
        if self.journal.record_quarantined(sop_uid, detail):
            logger.error("quarantined %s: %s", pseudonym(sop_uid), reason)
            self.results_log.write("quarantined", **detail)
        self.spool.remove(sop_uid)

    def process(self, items: Sequence[tuple[str, Path]]) -> None:
        """Screen, classify and queue the results of a batch of spooled instances."""
        accepted: dict[str, tuple[str, Path, Dataset]] = {}
        for sop_uid, path in dict(items).items():
            state = self.journal.state(sop_uid)
            if state is not None:
                if state != CLASSIFIED:
                    self.spool.remove(sop_uid)
                continue
            try:
                header = dcmread_bounded(path, _INFLATED_LIMIT, stop_before_pixels=True)  # no deflate bomb
            except FileNotFoundError:
                continue
            except Exception as error:  # noqa: BLE001 - any parse failure is a refusal
                self._refuse(sop_uid, path, None, f"not a readable DICOM file ({type(error).__name__})")
                continue
            reason = _invalid_uid(header, sop_uid) or screen(header, self.lenient)
            if reason:
                self._refuse(sop_uid, path, header, reason)
            else:
                accepted[str(path)] = (sop_uid, path, header)
        if not accepted:
            return
        started = time.time()
        results = self.classifier.classify(list(accepted))
        elapsed = (time.time() - started) / len(accepted)
        reported = []
        for result in results:
            sop_uid, path, header = accepted[result.image]  # the classifier returns each input path as given
            if isinstance(result, Refusal):
                self._refuse(sop_uid, path, header, result.error)
            else:
                reported.append((sop_uid, path, header, result))
        jobs = [(header, PneumoniaFinding(r.prob_pneumonia, r.threshold, tuple(split_flags(r.meta.get(FLAGS_KEY)))),
                 self.algorithm,
                 self.classifier.cam_overlay(path, r) if self.cam else None) for _, path, header, r in reported]
        rendered = self.executor.map(render_results, jobs) if self.executor else map(render_results, jobs)
        for (sop_uid, path, header, result), encoded in zip(reported, rendered, strict=True):
            self._report(sop_uid, path, header, result, encoded, elapsed)
        self.on_results()

    def _received(self, path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:
            return time.time()

    def _refuse(self, sop_uid: str, path: Path, header: Dataset | None, reason: str) -> None:
        detail = {**_uids(header, sop_uid), "reason": reason, "received": self._received(path)}
        if self.journal.record_refused(sop_uid, detail):
            logger.warning("refused %s: %s", pseudonym(sop_uid), reason)
            self.results_log.write("refused", **detail)
        self.spool.remove(sop_uid)

    def _report(self, sop_uid: str, path: Path, header: Dataset, result: Classification,
                encoded: list[tuple[str, bytes]], seconds: float) -> None:
        files = [(uid, atomic_write(self.outbox / f"{uid}.dcm", data)) for uid, data in encoded]
        detail = {**_uids(header, sop_uid), "prob_pneumonia": round(result.prob_pneumonia, 6),
                  "prediction": result.prediction, "threshold": round(result.threshold, 6),
                  "flags": join_flags([*split_flags(result.meta.get(FLAGS_KEY)), *header_fallbacks(header)]),
                  "results": [uid for uid, _ in files],
                  "received": self._received(path), "classified": time.time(), "inference_s": round(seconds, 4),
                  **self.identity}
        if self.journal.record_classified(sop_uid, detail, files, self.targets):
            record = film_record(result.prob_pneumonia, result.prediction, result.threshold, result.meta,
                                 model_sha256=self.identity.get("model_sha256", ""),
                                 site_profile_sha256=self.identity.get("site_profile_sha256", ""),
                                 time=detail["classified"])
            self.results_log.write("classified", **detail, record=record)
            log_classified(sop_uid, result.prediction, result.prob_pneumonia, result.threshold,
                           detail["classified"] - detail["received"], detail["flags"])
            if not self.targets:  # no destination: the results are logged, not kept (serve says so at start-up)
                self.spool.remove(sop_uid)
                for _, written in files:
                    Path(written).unlink(missing_ok=True)
