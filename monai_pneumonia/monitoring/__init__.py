"""Drift monitoring: per-signal reference distributions stored with the model, window-wise tests against them.

Pure statistics on per-film records (:mod:`monai_pneumonia.results`): no torch. The ``monitor`` command and the
service's live monitor use it. The rule is docs/research/drift-rule.md.
"""

from monai_pneumonia.monitoring.drift import DriftRule, SignalTest, WindowResult, check_window, monitor_records, psi
from monai_pneumonia.monitoring.live import LiveMonitor
from monai_pneumonia.monitoring.reference import (
    REFERENCE_SCHEMA,
    DriftReferenceError,
    Reference,
    load_reference,
    reference_path,
)

__all__ = ["REFERENCE_SCHEMA", "DriftRule", "LiveMonitor", "Reference", "DriftReferenceError", "SignalTest",
           "WindowResult", "load_reference", "monitor_records", "psi", "check_window", "reference_path"]
