"""What the service tells its operator: one pseudonymous line per classified instance and periodic counters.

Log lines never carry patient data or DICOM identifiers: an instance is named by :func:`pseudonym`, a short
SHA-256 of its SOP Instance UID, which an operator with access to the results log (it holds the UIDs) can match,
while the log itself can be shared. The counters are those of the results log's events (:class:`ActivityCounter`
is fed by :class:`~monai_pneumonia.service.resultslog.ResultsLog`), so the log line and the record agree.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable

__all__ = ["ActivityCounter", "ActivityReporter", "log_classified", "pseudonym"]

logger = logging.getLogger(__name__)

#: Events counted, in the order the periodic line lists them.
EVENTS = ("classified", "refused", "duplicate", "delivered", "dead_letter")
#: How an event is named in the line (a result given up on is "dead-lettered").
_LABELS = {"dead_letter": "dead-lettered"}


def pseudonym(sop_instance_uid: str) -> str:
    """A short, stable pseudonym of a SOP Instance UID for log lines: ``sop:`` and 12 hex digits of its SHA-256."""
    return "sop:" + hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()[:12]


def log_classified(sop_instance_uid: str, prediction: str, prob_pneumonia: float, threshold: float,
                   latency_s: float, flags: str = "") -> None:
    """Log one INFO line for a classified instance (no PHI: the UID is pseudonymised).

    Args:
        sop_instance_uid: the source instance (logged as its :func:`pseudonym`).
        prediction: ``NORMAL`` or ``PNEUMONIA``.
        prob_pneumonia: the model's probability.
        threshold: the operating threshold it was decided at.
        latency_s: seconds from receipt to the result being queued.
        flags: the loader's policy flags (no identifiers), shown when present.
    """
    logger.info("classified %s: %s (p=%.3f, threshold %.3f), %.0f ms after receipt%s", pseudonym(sop_instance_uid),
                prediction, prob_pneumonia, threshold, latency_s * 1000, f", flags {flags}" if flags else "")


class ActivityCounter:
    """Thread-safe counts of results-log events, in total and since the last :meth:`take`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total: Counter[str] = Counter()
        self._recent: Counter[str] = Counter()

    def count(self, event: str, **fields) -> None:
        """Count one event (``classified`` with ``prediction == "PNEUMONIA"`` also counts ``pneumonia``)."""
        with self._lock:
            for counter in (self.total, self._recent):
                counter[event] += 1
                if event == "classified" and fields.get("prediction") == "PNEUMONIA":
                    counter["pneumonia"] += 1

    def take(self) -> tuple[Counter[str], Counter[str]]:
        """``(since the last take, total)``, and restart the recent counts."""
        with self._lock:
            recent, self._recent = self._recent, Counter()
            return recent, Counter(self.total)


def format_activity(recent: Counter[str], total: Counter[str], seconds: float, queued: int) -> str:
    """The periodic counters line."""
    def listing(counts: Counter[str]) -> str:
        parts = [f"{counts[event]} {_LABELS.get(event, event)}" for event in EVENTS]
        parts[0] += f" ({counts['pneumonia']} pneumonia)"
        return ", ".join(parts)

    return f"last {seconds:.0f} s: {listing(recent)}; since start: {listing(total)}; {queued} deliveries queued"


class ActivityReporter(threading.Thread):
    """Logs the counters every ``interval`` seconds (INFO), and once more when stopped.

    Args:
        counter: the counts (from the results log).
        queued: returns how many deliveries are queued (the journal's outbox).
        interval: seconds between lines; 0 or less: no periodic line.
    """

    def __init__(self, counter: ActivityCounter, queued: Callable[[], int], interval: float = 300.0) -> None:
        super().__init__(name="activity", daemon=True)
        self.counter, self.queued, self.interval = counter, queued, float(interval)
        self._stop = threading.Event()

    def run(self) -> None:
        if self.interval <= 0:
            return
        while not self._stop.wait(self.interval):
            self.report(self.interval)

    def report(self, seconds: float) -> str:
        """Log (and return) one counters line."""
        recent, total = self.counter.take()
        try:
            queued = self.queued()
        except Exception:  # noqa: BLE001 - a closed journal at shutdown must not kill the reporter
            queued = -1
        line = format_activity(recent, total, seconds, queued)
        logger.info("%s", line)
        return line

    def stop(self) -> None:
        """Stop the periodic lines."""
        self._stop.set()
