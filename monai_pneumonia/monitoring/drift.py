"""Window-wise drift tests against a :class:`~monai_pneumonia.monitoring.reference.Reference`.

The rule is docs/research/drift-rule.md: per window, KS (continuous) and chi-square (categorical) p-values,
Benjamini–Hochberg adjusted together; a signal alarms when its adjusted p-value is below ``q`` *and* its PSI is
at least ``psi_floor`` (the guard against "p ≈ 0 at large n"). SciPy does the statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import chi2_contingency, false_discovery_control, ks_2samp

from monai_pneumonia.monitoring.reference import Reference
from monai_pneumonia.monitoring.signals import CATEGORICAL, CONTINUOUS, categorical_values, continuous_values

__all__ = ["DriftRule", "SignalTest", "WindowResult", "monitor_records", "psi", "split_windows", "check_window"]


@dataclass(frozen=True)
class DriftRule:
    """The drift rule's knobs (docs/research/drift-rule.md).

    Attributes:
        window: records per window.
        min_window: fewest records a window (and each tested signal) needs.
        q: Benjamini–Hochberg false discovery rate per window.
        psi_floor: smallest PSI that counts as drift.
        bins: bins of the PSI of a continuous signal.
    """

    window: int = 300
    min_window: int = 100
    q: float = 0.01
    psi_floor: float = 0.25
    bins: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.min_window <= self.window:
            raise ValueError(f"the drift window ({self.window}) must be at least the minimum window size "
                             f"({self.min_window}), which must be positive")
        if not 0 < self.q < 1 or self.psi_floor < 0:
            raise ValueError(f"q must be in (0, 1) and psi_floor >= 0, got {self.q} and {self.psi_floor}")


@dataclass
class SignalTest:
    """One signal's test in one window."""

    signal: str
    kind: str  # "continuous" or "categorical"
    test: str  # "ks" or "chi2"
    n_reference: int
    n_window: int
    statistic: float
    p_value: float
    psi: float
    p_adjusted: float = 1.0
    alarm: bool = False
    reference_summary: float | None = None  # continuous: median; categorical: share of the first category shown
    window_summary: float | None = None


@dataclass
class WindowResult:
    """All tests of one window."""

    index: int
    start: int  # position of the first record in the stream
    count: int
    time_start: float | None
    time_end: float | None
    tests: list[SignalTest]

    @property
    def drift(self) -> bool:
        """True when a signal alarms."""
        return any(t.alarm for t in self.tests)

    @property
    def alarms(self) -> list[str]:
        """The signals that alarm."""
        return [t.signal for t in self.tests if t.alarm]

    def to_json(self) -> dict:
        return {"index": self.index, "start": self.start, "count": self.count, "time_start": self.time_start,
                "time_end": self.time_end, "drift": self.drift, "alarms": self.alarms,
                "signals": {t.signal: {k: v for k, v in asdict(t).items() if k != "signal"} for t in self.tests}}


def psi(reference: np.ndarray, window: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins (half a count added to every bin)."""
    r = (np.asarray(reference, float) + 0.5) / (np.sum(reference) + 0.5 * len(reference))
    w = (np.asarray(window, float) + 0.5) / (np.sum(window) + 0.5 * len(window))
    return float(np.sum((w - r) * np.log(w / r)))


def _edges(signal: str, reference: np.ndarray, bins: int) -> np.ndarray:
    if signal == "probability":  # a fixed scale: more confident scores inside the extreme bins are no shift
        return np.linspace(0.0, 1.0, bins + 1)
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate([[-np.inf], inner, [np.inf]])


def _continuous_test(signal: str, ref: Sequence[float], win: Sequence[float], rule: DriftRule) -> SignalTest:
    ref, win = np.asarray(ref, float), np.asarray(win, float)
    result = ks_2samp(ref, win)
    edges = _edges(signal, ref, rule.bins)
    counts_r = np.histogram(np.clip(ref, edges[0], edges[-1]), edges)[0]
    counts_w = np.histogram(np.clip(win, edges[0], edges[-1]), edges)[0]
    return SignalTest(signal, "continuous", "ks", len(ref), len(win), float(result.statistic), float(result.pvalue),
                      psi(counts_r, counts_w), reference_summary=float(np.median(ref)),
                      window_summary=float(np.median(win)))


def _categorical_test(signal: str, ref: Mapping[str, int], win: Sequence[str]) -> SignalTest | None:
    window_counts: dict[str, int] = {}
    for value in win:
        window_counts[value] = window_counts.get(value, 0) + 1
    categories = sorted(set(ref) | set(window_counts))
    if len(categories) < 2:
        return None  # one category on both sides: nothing to test
    table = np.array([[ref.get(c, 0) for c in categories], [window_counts.get(c, 0) for c in categories]])
    statistic, p_value, _, _ = chi2_contingency(table, correction=False)
    shown = "PNEUMONIA" if signal == "decision" else ("refused" if signal == "refused" else
                                                      "flagged" if signal == "flagged" else categories[0])
    index = categories.index(shown) if shown in categories else 0
    return SignalTest(signal, "categorical", "chi2", int(table[0].sum()), int(table[1].sum()), float(statistic),
                      float(p_value), psi(table[0], table[1]), reference_summary=float(table[0, index] / table[0].sum()),
                      window_summary=float(table[1, index] / table[1].sum()))


def check_window(reference: Reference, records: Sequence[Mapping], rule: DriftRule = DriftRule(), index: int = 0,
                start: int = 0) -> WindowResult:
    """Test one window of records against the reference.

    Signals with fewer than ``rule.min_window`` values on either side are not tested.
    """
    tests: list[SignalTest] = []
    for signal in CONTINUOUS:
        ref, win = reference.continuous.get(signal, []), continuous_values(records, signal)
        if len(ref) >= rule.min_window and len(win) >= rule.min_window:
            tests.append(_continuous_test(signal, ref, win, rule))
    for signal in CATEGORICAL:
        ref_counts, win = reference.categorical.get(signal, {}), categorical_values(records, signal)
        if sum(ref_counts.values()) >= rule.min_window and len(win) >= rule.min_window:
            if (test := _categorical_test(signal, ref_counts, win)) is not None:
                tests.append(test)
    if tests:
        p_values = np.nan_to_num(np.array([t.p_value for t in tests]), nan=1.0)
        for test, adjusted in zip(tests, false_discovery_control(p_values, method="bh"), strict=True):
            test.p_adjusted = float(adjusted)
            test.alarm = bool(adjusted < rule.q and test.psi >= rule.psi_floor)
    times = [float(r["time"]) for r in records if r.get("time") is not None]
    return WindowResult(index, start, len(records), min(times) if times else None, max(times) if times else None,
                        tests)


def split_windows(count: int, rule: DriftRule) -> list[tuple[int, int]]:
    """``(start, stop)`` of the consecutive windows of a stream of ``count`` records (a short tail joins the last)."""
    bounds = [(start, min(start + rule.window, count)) for start in range(0, count, rule.window)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < rule.min_window:
        bounds[-2:] = [(bounds[-2][0], count)]
    return bounds


def monitor_records(reference: Reference, records: Sequence[Mapping], rule: DriftRule = DriftRule()) -> dict:
    """Test every window of a stream of records (sorted by time) and summarise.

    Returns:
        ``{"drift", "status", "rule", "reference", "films", "windows": [...]}``; ``status`` is ``"drift"``,
        ``"no drift"`` or ``"insufficient"`` (fewer records than ``rule.min_window``: never drift).
    """
    records = sorted(records, key=lambda r: float(r.get("time") or 0.0))
    windows = []
    if len(records) >= rule.min_window:
        windows = [check_window(reference, records[a:b], rule, i, a)
                   for i, (a, b) in enumerate(split_windows(len(records), rule))]
    drift = any(w.drift for w in windows)
    status = "insufficient" if not windows else "drift" if drift else "no drift"
    return {"drift": drift, "status": status, "rule": asdict(rule),
            "reference": {"model_sha256": reference.model_sha256, "source": reference.source,
                          "count": reference.count},
            "films": len(records), "windows": [w.to_json() for w in windows]}
