"""The drift monitor on a live stream: a rolling window of the latest records, the same rule as ``monitor``."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping

from monai_pneumonia.monitoring.drift import DriftRule, WindowResult, check_window
from monai_pneumonia.monitoring.reference import Reference

__all__ = ["LiveMonitor"]

logger = logging.getLogger(__name__)


class LiveMonitor:
    """Feed per-film records one by one; the last ``rule.window`` are tested every ``stride`` records.

    Entering drift logs ONE WARNING line naming the alarming signals; leaving it logs one INFO line; nothing is
    logged per film. Thread-safe.

    Args:
        reference: the reference distributions.
        rule: the drift rule (its ``window`` is the rolling window's length).
        stride: records between two evaluations (default: ``max(1, window // 10)``).
        on_result: called with each evaluation's :class:`~monai_pneumonia.monitoring.drift.WindowResult`
            (e.g. to update metrics).
    """

    def __init__(self, reference: Reference, rule: DriftRule | None = None, stride: int | None = None,
                 on_result: Callable[[WindowResult], None] | None = None) -> None:
        self.reference, self.rule = reference, rule or DriftRule()
        self.stride = stride or max(1, self.rule.window // 10)
        self.on_result = on_result
        self.records: deque[Mapping] = deque(maxlen=self.rule.window)
        self.seen = 0
        self.drift = False
        self.last: WindowResult | None = None
        self._lock = threading.Lock()

    def add(self, record: Mapping) -> WindowResult | None:
        """Add one record; returns the evaluation when one ran."""
        with self._lock:
            self.records.append(record)
            self.seen += 1
            if len(self.records) < self.rule.min_window or self.seen % self.stride:
                return None
            result = check_window(self.reference, list(self.records), self.rule, start=self.seen - len(self.records))
            self.last = result
            if result.drift and not self.drift:
                worst = ", ".join(f"{t.signal} (PSI {t.psi:.2f}, p {t.p_adjusted:.1g})" for t in result.tests if t.alarm)
                logger.warning("drift: the last %d films differ from the reference in %s; see docs/monitoring.md "
                               "(re-run `monai-pneumonia site fit`)", result.count, worst)
            elif self.drift and not result.drift:
                logger.info("drift cleared: the last %d films match the reference again", result.count)
            self.drift = result.drift
        if self.on_result is not None:
            self.on_result(result)
        return result
