"""Delivering result instances: C-STORE to an AE (PS3.4 Annex B) and STOW-RS to a DICOMweb service (PS3.18 10.5).

A :class:`Deliverer` runs one :class:`DestinationLane` thread per destination (a slow one delays no other), each
sending what the journal's outbox holds for it. A result is recorded delivered only when the destination confirmed
that instance (C-STORE status, or its entry in the STOW-RS response). Failures are retried with exponential backoff;
results stay queued (on disk and in the journal) across restarts while a destination is unreachable. A result the
destination answered and refused ``max_refusals`` times, a damaged result file, or one queued for a destination
no longer configured, is dead-lettered: moved to the journal's dead letters (and its file to ``dead-letter/``),
logged once, written to the results log, never retried.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE
from requests import HTTPError

from monai_pneumonia.service.journal import Journal, PendingResult

__all__ = ["CStoreDestination", "DamagedResultError", "Deliverer", "Destination", "DestinationLane", "Outcome",
           "StowDestination", "describe_destination", "parse_destination", "read_result", "stow_statuses"]

logger = logging.getLogger(__name__)

_AE_ADDRESS = re.compile(r"(?P<aet>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})")
#: SOP Classes of the results (Comprehensive SR, Secondary Capture Image).
RESULT_SOP_CLASSES = (ComprehensiveSRStorage, SecondaryCaptureImageStorage)


class DamagedResultError(ValueError):
    """A result file in the outbox that cannot be read as DICOM: no destination will ever take it (dead-lettered).

    Attributes:
        path: the file.
        reason: what is wrong with it, without the file name (log lines never carry a UID, and it is named after one).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"{self.path}: {reason}")


def read_result(path: Path, stop_before_pixels: bool = False) -> pydicom.Dataset:
    """Read a result instance from the outbox.

    Raises:
        DamagedResultError: the file is missing or is not a readable DICOM file (the message names the file).
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except Exception as error:  # noqa: BLE001 - any failure to read the file means it is damaged
        raise DamagedResultError(path, f"not a readable DICOM file ({type(error).__name__})") from error


@dataclass
class Outcome:
    """What a destination did with a batch of result files.

    Attributes:
        delivered: files the destination confirmed it stored.
        refused: files it answered for and did not store, with its reason; retried with backoff, and
            dead-lettered after the deliverer's ``max_refusals``.
        damaged: files that cannot be sent at all (:class:`DamagedResultError`); dead-lettered at once.

    A file in none of them was not confirmed (e.g. the connection failed): it is retried with backoff and never
    dead-lettered for it.
    """

    delivered: list[Path] = field(default_factory=list)
    refused: dict[Path, str] = field(default_factory=dict)
    damaged: dict[Path, str] = field(default_factory=dict)


class Destination:
    """Where results go; :meth:`send` returns the :class:`Outcome` of a batch.

    ``send`` raises for a failure of the whole batch (destination unreachable): every file is retried then.
    """

    name: str

    def send(self, files: Sequence[Path]) -> Outcome:  # pragma: no cover - interface
        raise NotImplementedError


def _readable(files: Sequence[Path], outcome: Outcome, stop_before_pixels: bool = True) -> list[tuple[Path, object]]:
    """``(file, data set)`` of the readable files; the others go to ``outcome.damaged``."""
    readable = []
    for path in files:
        try:
            readable.append((Path(path), read_result(path, stop_before_pixels)))
        except DamagedResultError as error:
            outcome.damaged[Path(path)] = error.reason
    return readable


@dataclass
class CStoreDestination(Destination):
    """A Storage SCP reached by C-STORE (e.g. the PACS).

    Args:
        aet: its AE title; host, port: its address.
        calling_aet: our AE title.
        timeout: ACSE, DIMSE and network timeout in seconds.
        associations: parallel associations used for a batch of results.
    """

    aet: str
    host: str
    port: int
    calling_aet: str = "PNEUMO"
    timeout: float = 30.0
    associations: int = 4

    @property
    def name(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"

    def send(self, files: Sequence[Path]) -> Outcome:
        """C-STORE the files over up to ``associations`` parallel associations.

        Each C-STORE waits for its response; parallel associations keep the link busy meanwhile.
        """
        outcome = Outcome()
        paths = [path for path, _ in _readable(files, outcome)]
        chunks = [paths[i::self.associations] for i in range(min(self.associations, len(paths)))]
        if not chunks:
            return outcome
        with ThreadPoolExecutor(len(chunks)) as pool:
            futures = [pool.submit(self._send_one_association, chunk) for chunk in chunks]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if len(errors) == len(futures):
            raise errors[0]
        for error in errors:
            logger.warning("one association to %s failed (%s); its results are retried", self.name, error)
        for future in futures:
            if future.exception() is None:
                delivered, refused = future.result()
                outcome.delivered += delivered
                outcome.refused.update(refused)
        return outcome

    def _send_one_association(self, files: Sequence[Path]) -> tuple[list[Path], dict[Path, str]]:
        ae = AE(ae_title=self.calling_aet)
        for sop_class in RESULT_SOP_CLASSES:
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        assoc = ae.associate(self.host, self.port, ae_title=self.aet)
        if not assoc.is_established:
            raise ConnectionError(f"association with {self.name} failed")
        disable_nagle(assoc)
        sent, refused = [], {}
        try:
            for path in files:
                try:
                    status = assoc.send_c_store(path)  # a file is sent as encoded, without decoding it
                except ValueError as error:  # pynetdicom: no accepted context for this file, an unusable file
                    refused[path] = f"cannot be sent ({type(error).__name__})"
                    continue
                code = getattr(status, "Status", None)
                if code is None:
                    raise ConnectionError(f"{self.name}: no C-STORE response for {path.name}")
                if code == 0 or code & 0xF000 == 0xB000:  # Success or Warning (PS3.4 B.2.3)
                    sent.append(path)
                else:
                    refused[path] = f"C-STORE status 0x{code:04X}"
        finally:
            assoc.release()
        return sent, refused


@dataclass
class StowDestination(Destination):
    """A DICOMweb service's STOW-RS endpoint (``dicomweb-client``).

    Only the instances the response confirms (Referenced SOP Sequence of the Store Instances Response Module,
    PS3.18 10.5.3) count as delivered; those in its Failed SOP Sequence are refused with their Failure Reason,
    and a 4xx answer refuses the whole batch. Anything else the response does not mention is retried.
    """

    url: str
    timeout: float = 30.0

    @property
    def name(self) -> str:
        return f"stow:{self.url}"

    def send(self, files: Sequence[Path]) -> Outcome:
        outcome = Outcome()
        readable = _readable(files, outcome, stop_before_pixels=False)
        if not readable:
            return outcome
        client = DICOMwebClient(url=self.url)
        try:
            response = client.store_instances(datasets=[ds for _, ds in readable])
        except HTTPError as error:
            status = getattr(error.response, "status_code", None)
            if status is None or not 400 <= status < 500:
                raise
            outcome.refused.update((path, f"HTTP {status}") for path, _ in readable)  # the PACS answered: no
            return outcome
        stored, failed = stow_statuses(response)
        for path, ds in readable:
            uid = str(ds.SOPInstanceUID)
            if uid in failed:
                outcome.refused[path] = failed[uid]
            elif uid in stored:
                outcome.delivered.append(path)
        unconfirmed = len(readable) - len(outcome.delivered) - len(outcome.refused)
        if unconfirmed:
            logger.warning("%s: the STOW-RS response does not confirm %d of %d instances; they are retried",
                           self.name, unconfirmed, len(readable))
        return outcome


def stow_statuses(response: pydicom.Dataset) -> tuple[set[str], dict[str, str]]:
    """``(stored SOP Instance UIDs, {failed SOP Instance UID: reason})`` of a STOW-RS response (PS3.18 10.5.3).

    ``ReferencedSOPSequence`` lists the instances stored (with a ``WarningReason`` when coerced: still stored),
    ``FailedSOPSequence`` those not stored, with a ``FailureReason`` (PS3.18 Table 10.5.3-1).
    """
    stored = {str(item.get("ReferencedSOPInstanceUID", "")) for item in response.get("ReferencedSOPSequence", [])}
    failed = {}
    for item in response.get("FailedSOPSequence", []):
        reason = item.get("FailureReason")
        failed[str(item.get("ReferencedSOPInstanceUID", ""))] = (
            f"STOW-RS failure reason 0x{int(reason):04X}" if reason is not None else "STOW-RS failure")
    return stored - set(failed) - {""}, failed


def describe_destination(destination: Destination) -> str:
    """Where a destination puts results, in words for the start-up log (``C-STORE to PACS@10.0.0.5:104``)."""
    if isinstance(destination, CStoreDestination):
        return f"C-STORE to {destination.name}"
    if isinstance(destination, StowDestination):
        return f"STOW-RS to {destination.url}"
    folder = getattr(destination, "folder", None)
    return f"kept in the folder {folder} (never cleaned up)" if folder is not None else destination.name


def disable_nagle(assoc) -> None:
    """Set TCP_NODELAY on an association's socket.

    pynetdicom sends a C-STORE as several small PDUs; with Nagle's algorithm each one waits for the peer's
    delayed ACK (40 ms on Linux), which made every C-STORE to Orthanc take ~90 ms on loopback instead of ~10 ms.
    """
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def parse_destination(text: str, calling_aet: str = "PNEUMO", timeout: float = 30.0) -> CStoreDestination:
    """Parse ``AET@host:port``.

    Raises:
        ValueError: another form.
    """
    match = _AE_ADDRESS.fullmatch(text.strip())
    if not match:
        raise ValueError(f"destination {text!r} is not AET@host:port")
    return CStoreDestination(match["aet"], match["host"], int(match["port"]), calling_aet, timeout)


def backoff(initial: float, maximum: float) -> Callable[[int], float]:
    """``attempts -> delay``: ``initial * 2**(attempts-1)``, capped at ``maximum``."""
    return lambda attempts: min(maximum, initial * 2 ** max(0, attempts - 1))


class Deliverer:
    """Sends the outbox: one :class:`DestinationLane` thread per destination, so a slow one delays no other.

    Results queued for a destination that is no longer configured are dead-lettered at start-up (once, one
    warning), never retried.

    Args:
        journal: the state database.
        destinations: where results go.
        on_finished: called with ``(source UID, state, detail, files)`` when the last result of a source left the
            outbox (``state``: ``delivered``, or ``undeliverable`` when one was dead-lettered).
        retry_initial: first retry delay (s); doubles per failure up to ``retry_max``.
        retry_max: longest delay between retries (s).
        batch: results per association / request.
        max_refusals: refusals of one result by one destination before it is dead-lettered.
        on_dead_letter: called with ``(PendingResult, reason)`` for each result dead-lettered.
        on_failure: called with a reason if a lane thread ends by an unexpected error (the service is then
            unhealthy).
    """

    def __init__(self, journal: Journal, destinations: Sequence[Destination],
                 on_finished: Callable[[str, str, dict, list[str]], None], retry_initial: float = 1.0,
                 retry_max: float = 60.0, batch: int = 64, max_refusals: int = 5,
                 on_dead_letter: Callable[[PendingResult, str], None] = lambda item, reason: None,
                 on_failure: Callable[[str], None] = lambda reason: None) -> None:
        self.journal = journal
        self.on_finished, self.on_dead_letter = on_finished, on_dead_letter
        self.lanes = [DestinationLane(self, d, backoff(retry_initial, retry_max), batch, max_refusals, on_failure)
                      for d in destinations]

    def wakeup(self) -> None:
        """New results are queued: every lane looks at the outbox now."""
        for lane in self.lanes:
            lane.wakeup.set()

    def quarantine_stale(self) -> int:
        """Dead-letter what is queued for destinations no longer configured; returns how many."""
        configured = {lane.destination.name for lane in self.lanes}
        count = 0
        for target in sorted(self.journal.targets() - configured):
            items = self.journal.due(target=target, now=float("inf"), limit=-1)
            reason = "its destination is no longer configured"
            logger.warning("%d result(s) queued for %s, which is no longer configured: dead-lettered, not retried",
                           len(items), target)
            self.dead_letter(items, reason, log=False)
            count += len(items)
        return count

    def dead_letter(self, items: Sequence[PendingResult], reason: str, log: bool = True) -> None:
        """Report results given up on (``on_dead_letter`` keeps their files), then move them to the dead letters.

        Reported first: a crash in between leaves them queued (tried again), never gone without a trace.
        """
        if not items:
            return
        if log:
            logger.warning("dead-lettered %d result(s) for %s: %s; not retried (kept in the dead letters)",
                           len(items), items[0].target, reason)
        for item in items:
            self.on_dead_letter(item, reason)
        finished = self.journal.dead_letter(items, reason)
        for source, state, detail, files in finished:
            self.on_finished(source, state, detail, files)

    def start(self) -> None:
        """Quarantine stale results, then start a lane per destination."""
        self.quarantine_stale()
        for lane in self.lanes:
            lane.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every lane after its current round."""
        for lane in self.lanes:
            lane.stopping.set()
            lane.wakeup.set()
        deadline = time.monotonic() + timeout
        for lane in self.lanes:
            if lane.is_alive():
                lane.join(max(0.0, deadline - time.monotonic()))

    def deliver_due(self) -> int:
        """One round on every destination, in this thread; returns how many results were delivered."""
        return sum(lane.deliver_due() for lane in self.lanes)


class DestinationLane(threading.Thread):
    """Delivers the outbox of one destination, with backoff, refusal counting and dead letters.

    Args:
        deliverer: the :class:`Deliverer` it belongs to (journal, callbacks).
        destination: where it sends.
        delay_for: ``attempts -> seconds`` until the next try.
        batch: results per :meth:`Destination.send`.
        max_refusals: see :class:`Deliverer`.
        on_failure: see :class:`Deliverer`.
    """

    def __init__(self, deliverer: Deliverer, destination: Destination, delay_for: Callable[[int], float],
                 batch: int, max_refusals: int, on_failure: Callable[[str], None]) -> None:
        super().__init__(name=f"deliverer {destination.name}", daemon=True)
        self.deliverer, self.journal, self.destination = deliverer, deliverer.journal, destination
        self.delay_for, self.batch, self.max_refusals = delay_for, batch, max_refusals
        self.on_failure = on_failure
        self.wakeup = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.deliver_due()
                next_try = self.journal.next_attempt(self.destination.name)
                wait = 1.0 if next_try is None else max(0.0, min(1.0, next_try - time.time()))
                self.wakeup.wait(wait)
                self.wakeup.clear()
        except Exception as error:  # noqa: BLE001 - the journal is gone (disk full...): the service must know
            said = f": {error}" if isinstance(error, sqlite3.Error) else ""
            reason = f"delivery to {self.destination.name} stopped ({type(error).__name__}{said})"
            logger.critical("%s", reason)
            self.on_failure(reason)

    def deliver_due(self) -> int:
        """One round: send every due result of this destination; returns how many were delivered."""
        items = self.journal.due(target=self.destination.name, limit=self.batch)
        if not items:
            return 0
        paths = {Path(i.path): i for i in items}
        try:
            outcome = self.destination.send(list(paths))
        except Exception as error:  # noqa: BLE001 - any failure of the whole batch: keep queued, retry later
            outcome = Outcome()
            logger.warning("delivery of %d results to %s failed (%s); retry in %.0f s", len(items),
                           self.destination.name, error, self.delay_for(items[0].attempts + 1))
        done = [paths[Path(p)] for p in outcome.delivered if Path(p) in paths]
        for source, state, detail, files in self.journal.delivered(done):
            self.deliverer.on_finished(source, state, detail, files)
        damaged = [paths[Path(p)] for p in outcome.damaged if Path(p) in paths]
        for item in damaged:
            self.deliverer.dead_letter([item], outcome.damaged[Path(item.path)])
        exhausted = []
        for path, reason in outcome.refused.items():
            item = paths.get(Path(path))
            if item is None:
                continue
            if item.refusals + 1 >= self.max_refusals:
                exhausted.append((item, reason))
            else:
                logger.warning("%s refused a result (%s); retry %d of %d in %.0f s", self.destination.name, reason,
                               item.refusals + 1, self.max_refusals - 1, self.delay_for(item.attempts + 1))
        for item, reason in exhausted:
            self.deliverer.dead_letter([item], f"refused {self.max_refusals} times by the destination ({reason})")
        handled = {i.result_uid for i in done + damaged} | {i.result_uid for i, _ in exhausted}
        failed = [i for i in items if i.result_uid not in handled]
        if failed:
            refused = {paths[Path(p)].result_uid for p in outcome.refused if Path(p) in paths}
            self.journal.postpone(failed, self.delay_for, refused=refused)
        return len(done)
