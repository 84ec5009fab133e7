"""The local results log: one JSON object per line, without patient names or IDs.

Events: ``classified`` (probability, prediction, threshold, result UIDs), ``refused`` (the reason),
``delivered`` (all results acknowledged; with ``latency_s`` from receipt to the last acknowledgement),
``duplicate`` (a SOP Instance UID received again, acknowledged and not re-reported) and ``quarantined`` (the
service process died on it twice; moved out of the spool, never retried) and ``dead_letter`` (one result given up on
for one destination, with the reason and the file kept in ``dead-letter/``). Every event written is also counted
(:attr:`ResultsLog.activity`) for the service's periodic counters line, and passed to the
:attr:`ResultsLog.listeners` (the metrics and the live drift monitor). A ``classified`` event carries the film's
per-film record (:mod:`monai_pneumonia.results`) under ``"record"``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from monai_pneumonia.service.activity import ActivityCounter
from monai_pneumonia.service.journal import TRANSIENT_ERRNOS, StateFileError

__all__ = ["ResultsLog"]

logger = logging.getLogger(__name__)


class ResultsLog:
    """Append-only JSON-lines file (``0600``).

    Args:
        path: the file.

    Raises:
        StateFileError: it cannot be opened for appending (a directory in its place, no permission...).

    Attributes:
        activity: counts of the events written (:class:`~monai_pneumonia.service.activity.ActivityCounter`).
        listeners: called with each record written; one that fails is logged, never fails the write.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as error:
            if error.errno in TRANSIENT_ERRNOS:  # a full disk: not the configuration, a restart may succeed
                raise
            raise StateFileError(f"results log {self.path}: cannot be opened for appending "
                                 f"({error.strerror or error})") from error
        self._stream = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self.activity = ActivityCounter()
        self.listeners: list[Callable[[dict], None]] = []

    def write(self, event: str, **fields) -> None:
        """Append one record ``{"time", "event", **fields}``."""
        record = {"time": round(time.time(), 6), "event": event, **fields}
        line = json.dumps(record, sort_keys=True)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
        self.activity.count(event, **fields)
        for listener in self.listeners:
            try:
                listener(record)
            except Exception as error:  # noqa: BLE001 - monitoring never costs a result
                logger.error("results-log listener %r failed (%s)", listener, type(error).__name__)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._stream.close()
