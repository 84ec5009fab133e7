"""Delivering result instances: C-STORE to an AE (PS3.4 Annex B) and STOW-RS to a DICOMweb service (PS3.18 10.5).

A :class:`Deliverer` thread sends whatever the journal's outbox holds, per destination, and retries failures with
exponential backoff; results stay queued (on disk and in the journal) until a destination acknowledges them, across
restarts.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import ComprehensiveSRStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage
from pynetdicom import AE

from monai_pneumonia.service.journal import Journal, PendingResult

__all__ = ["CStoreDestination", "Deliverer", "Destination", "StowDestination", "describe_destination",
           "parse_destination"]

logger = logging.getLogger(__name__)

_AE_ADDRESS = re.compile(r"(?P<aet>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})")
#: SOP Classes of the results (Comprehensive SR, Secondary Capture Image).
RESULT_SOP_CLASSES = (ComprehensiveSRStorage, SecondaryCaptureImageStorage)


class Destination:
    """Where results go; :meth:`send` returns the files it delivered."""

    name: str

    def send(self, files: Sequence[Path]) -> list[Path]:  # pragma: no cover - interface
        raise NotImplementedError


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

    def send(self, files: Sequence[Path]) -> list[Path]:
        """C-STORE the files over up to ``associations`` parallel associations; returns those acknowledged.

        Each C-STORE waits for its response; parallel associations keep the link busy meanwhile.
        """
        chunks = [list(files[i::self.associations]) for i in range(min(self.associations, len(files)))]
        if len(chunks) <= 1:
            return self._send_one_association(files)
        with ThreadPoolExecutor(len(chunks)) as pool:
            futures = [pool.submit(self._send_one_association, chunk) for chunk in chunks]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if len(errors) == len(futures):
            raise errors[0]
        for error in errors:
            logger.warning("one association to %s failed (%s); its results are retried", self.name, error)
        return [path for f in futures if f.exception() is None for path in f.result()]

    def _send_one_association(self, files: Sequence[Path]) -> list[Path]:
        ae = AE(ae_title=self.calling_aet)
        for sop_class in RESULT_SOP_CLASSES:
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        assoc = ae.associate(self.host, self.port, ae_title=self.aet)
        if not assoc.is_established:
            raise ConnectionError(f"association with {self.name} failed")
        disable_nagle(assoc)
        sent = []
        try:
            for path in files:
                status = assoc.send_c_store(path)  # a file is sent as encoded, without decoding it
                code = getattr(status, "Status", None)
                if code is None:
                    raise ConnectionError(f"{self.name}: no C-STORE response for {path.name}")
                if code == 0 or code & 0xF000 == 0xB000:  # Success or Warning (PS3.4 B.2.3)
                    sent.append(path)
                else:
                    logger.error("%s refused %s with status 0x%04X", self.name, path.name, code)
        finally:
            assoc.release()
        return sent


@dataclass
class StowDestination(Destination):
    """A DICOMweb service's STOW-RS endpoint (``dicomweb-client``)."""

    url: str
    timeout: float = 30.0

    @property
    def name(self) -> str:
        return f"stow:{self.url}"

    def send(self, files: Sequence[Path]) -> list[Path]:
        client = DICOMwebClient(url=self.url)
        client.store_instances(datasets=[pydicom.dcmread(path) for path in files])
        return list(files)


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


class Deliverer(threading.Thread):
    """Sends the outbox to every destination, with retries.

    Args:
        journal: the state database.
        destinations: by name.
        on_delivered: called with ``(source UID, detail, files)`` when every result of a source is delivered.
        retry_initial: first retry delay (s); doubles per failure up to ``retry_max``.
        retry_max: longest delay between retries (s).
        batch: results per association / request.
    """

    def __init__(self, journal: Journal, destinations: Sequence[Destination],
                 on_delivered: Callable[[str, dict, list[str]], None], retry_initial: float = 1.0,
                 retry_max: float = 60.0, batch: int = 64) -> None:
        super().__init__(name="deliverer", daemon=True)
        self.journal = journal
        self.destinations = {d.name: d for d in destinations}
        self.on_delivered = on_delivered
        self.delay_for = backoff(retry_initial, retry_max)
        self.batch = batch
        self.wakeup = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.deliver_due()
            next_try = self.journal.next_attempt()
            wait = 1.0 if next_try is None else max(0.0, min(1.0, next_try - time.time()))
            self.wakeup.wait(wait)
            self.wakeup.clear()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current round."""
        self.stopping.set()
        self.wakeup.set()
        self.join(timeout)

    def deliver_due(self) -> int:
        """One round: send every due result; returns how many were delivered."""
        by_target: dict[str, list[PendingResult]] = defaultdict(list)
        for item in self.journal.due(limit=self.batch * max(1, len(self.destinations))):
            by_target[item.target].append(item)
        delivered = 0
        for target, items in by_target.items():
            destination = self.destinations.get(target)
            if destination is None:
                logger.warning("%d results queued for %s, which is no longer configured; kept", len(items), target)
                continue
            paths = {Path(i.path): i for i in items}
            try:
                sent = set(destination.send(list(paths)))
            except Exception as error:  # noqa: BLE001 - any failure: keep queued, retry later
                sent = set()
                logger.warning("delivery of %d results to %s failed (%s); retry in %.0f s", len(items), target,
                               error, self.delay_for(items[0].attempts + 1))
            done = [paths[p] for p in sent]
            failed = [i for p, i in paths.items() if p not in sent]
            if failed:
                self.journal.postpone(failed, self.delay_for)
            for source, detail, files in self.journal.delivered(done):
                self.on_delivered(source, detail, files)
            delivered += len(done)
        return delivered
