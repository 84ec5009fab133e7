"""``monitor.html``: the monitor's plots over time, one self-contained page (images inline, no scripts).

Volume, positive / refusal / flagged rates, the score distribution against the reference, atypicality, image
statistics and the acquisition mix, per window, with the windows in drift shaded and their alarms named.
Drawn with Matplotlib's object API (``Figure``, no pyplot state, no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from monai_pneumonia.monitoring.reference import Reference
from monai_pneumonia.monitoring.signals import categorical_values, continuous_values
from monai_pneumonia.results import DISCLAIMER, atomic_write

__all__ = ["write_dashboard"]

_ALERT = "#d62728"


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str, height: float = 3.0) -> tuple[Figure, object]:
    figure = Figure(figsize=(9, height))
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    return figure, axes


def _mark_alerts(axes, windows: Sequence[Mapping]) -> None:
    for i, window in enumerate(windows):
        if window["drift"]:
            axes.axvspan(i - 0.5, i + 0.5, color=_ALERT, alpha=0.12, lw=0)


def _window_labels(axes, windows: Sequence[Mapping]) -> None:
    axes.set_xticks(range(len(windows)))
    axes.set_xticklabels([f"{w['index']}" + ("\n" + time.strftime("%m-%d %H:%M", time.gmtime(w["time_start"]))
                                             if w.get("time_start") else "") for w in windows], fontsize=7)
    axes.set_xlabel("window (start, UTC)", fontsize=8)
    if windows:
        axes.set_xlim(-0.5, len(windows) - 0.5)


def _volume(records: Sequence[Mapping], windows: Sequence[Mapping]) -> str:
    figure, axes = _figure("Volume: films per window (refused in grey)")
    refused = [sum(1 for v in categorical_values(records[w["start"]:w["start"] + w["count"]], "refused")
                   if v == "refused") for w in windows]
    counts = [w["count"] for w in windows]
    axes.bar(range(len(windows)), np.subtract(counts, refused), color="#1f77b4", label="classified")
    axes.bar(range(len(windows)), refused, bottom=np.subtract(counts, refused), color="#999999", label="refused")
    _mark_alerts(axes, windows)
    _window_labels(axes, windows)
    axes.legend(fontsize=7)
    return _png(figure)


def _rates(reference: Reference, windows: Sequence[Mapping]) -> str:
    figure, axes = _figure("Positive rate, refusal rate and flagged rate per window (dashed: reference)")
    for signal, colour in (("decision", "#1f77b4"), ("refused", "#7f7f7f"), ("flagged", "#ff7f0e")):
        values = [w["signals"].get(signal, {}).get("window_summary") for w in windows]
        label = {"decision": "positive rate", "refused": "refused", "flagged": "flagged"}[signal]
        axes.plot(range(len(windows)), [np.nan if v is None else v for v in values], "o-", color=colour, label=label)
        counts = reference.categorical.get(signal, {})
        key = {"decision": "PNEUMONIA", "refused": "refused", "flagged": "flagged"}[signal]
        if counts:
            axes.axhline(counts.get(key, 0) / sum(counts.values()), color=colour, ls="--", lw=1)
    axes.set_ylim(-0.02, 1.02)
    _mark_alerts(axes, windows)
    _window_labels(axes, windows)
    axes.legend(fontsize=7)
    return _png(figure)


def _distribution(reference: Reference, records: Sequence[Mapping], windows: Sequence[Mapping], signal: str,
                  title: str, bins: np.ndarray | None = None) -> str:
    figure, axes = _figure(title)
    ref = reference.continuous.get(signal, [])
    samples = [continuous_values(records[w["start"]:w["start"] + w["count"]], signal) for w in windows]
    every = np.concatenate([ref, *samples]) if ref or any(samples) else np.array([0.0, 1.0])
    edges = bins if bins is not None else np.linspace(np.min(every), np.max(every) + 1e-9, 31)
    if ref:
        axes.hist(ref, edges, density=True, color="#cccccc", label=f"reference (n={len(ref)})")
    for window, values in zip(windows, samples, strict=True):
        if values:
            axes.hist(values, edges, density=True, histtype="step", lw=1.5,
                      color=_ALERT if signal in window["alarms"] else None,
                      label=f"window {window['index']}" + (" (drift)" if signal in window["alarms"] else ""))
    axes.legend(fontsize=7, ncol=2)
    return _png(figure)


def _per_window(reference: Reference, records: Sequence[Mapping], windows: Sequence[Mapping], signal: str,
                title: str) -> str:
    figure, axes = _figure(title)
    ref = reference.continuous.get(signal, [])
    if ref:
        low, mid, high = np.quantile(ref, [0.25, 0.5, 0.75])
        axes.axhspan(low, high, color="#cccccc", alpha=0.6, label="reference quartiles")
        axes.axhline(mid, color="#555555", lw=1)
    for i, window in enumerate(windows):
        values = continuous_values(records[window["start"]:window["start"] + window["count"]], signal)
        if values:
            low, mid, high = np.quantile(values, [0.25, 0.5, 0.75])
            colour = _ALERT if signal in window["alarms"] else "#1f77b4"
            axes.errorbar([i], [mid], yerr=[[mid - low], [high - mid]], fmt="o", color=colour, capsize=3)
    if not ref and not any(signal in w["signals"] for w in windows):
        axes.text(0.5, 0.5, "not in the records", ha="center", va="center", transform=axes.transAxes)
    _mark_alerts(axes, windows)
    _window_labels(axes, windows)
    return _png(figure)


def _acquisition(reference: Reference, records: Sequence[Mapping], windows: Sequence[Mapping]) -> str:
    figure, axes = _figure("Acquisition mix: manufacturer / model (first bar: reference)")
    columns = [Counter(reference.categorical.get("ManufacturerModelName", {}))]
    columns += [Counter(categorical_values(records[w["start"]:w["start"] + w["count"]], "ManufacturerModelName"))
                for w in windows]
    categories = sorted(set().union(*columns)) or ["(none)"]
    bottom = np.zeros(len(columns))
    for category in categories:
        shares = np.array([c.get(category, 0) / max(1, sum(c.values())) for c in columns])
        axes.bar(range(len(columns)), shares, bottom=bottom, label=category[:30])
        bottom += shares
    axes.set_xticks(range(len(columns)))
    axes.set_xticklabels(["ref"] + [str(w["index"]) + (" !" if w["drift"] else "") for w in windows], fontsize=7)
    axes.legend(fontsize=6, ncol=3)
    return _png(figure)


def _table(windows: Sequence[Mapping]) -> str:
    rows = []
    for window in windows:
        for signal, test in window["signals"].items():
            style = ' class="alarm"' if test["alarm"] else ""
            rows.append(f"<tr{style}><td>{window['index']}</td><td>{html.escape(signal)}</td><td>{test['test']}</td>"
                        f"<td>{test['n_window']}</td><td>{test['statistic']:.3g}</td><td>{test['p_adjusted']:.2g}</td>"
                        f"<td>{test['psi']:.3f}</td><td>{'ALARM' if test['alarm'] else ''}</td></tr>")
    return ("<table><tr><th>window</th><th>signal</th><th>test</th><th>n</th><th>statistic</th><th>p (BH)</th>"
            "<th>PSI</th><th></th></tr>" + "".join(rows) + "</table>")


def write_dashboard(path: str | os.PathLike, report: Mapping, reference: Reference, records: Sequence[Mapping]) -> Path:
    """Write ``monitor.html`` for a :func:`~monai_pneumonia.monitoring.drift.monitor_records` report.

    Args:
        path: the file to write.
        report: the report.
        reference: the reference it was computed against.
        records: the records, sorted by time as the report's windows index them.
    """
    windows = report["windows"]
    verdict = {"drift": "DRIFT", "no drift": "no drift", "insufficient": "too few films to test"}[report["status"]]
    alarms = "".join(f"<li>window {w['index']} ({w['count']} films): {html.escape(', '.join(w['alarms']))}</li>"
                     for w in windows if w["drift"])
    rule = report["rule"]
    images = [_volume(records, windows), _rates(reference, windows),
              _distribution(reference, records, windows, "probability", "Score distribution against the reference",
                            np.linspace(0, 1, 21)),
              _per_window(reference, records, windows, "atypicality", "Atypicality per window (median, quartiles)"),
              _per_window(reference, records, windows, "sharpness", "Image sharpness per window (median, quartiles)"),
              _per_window(reference, records, windows, "mean", "Image mean intensity per window (median, quartiles)"),
              _acquisition(reference, records, windows)]
    body = "".join(f'<img alt="plot" src="{src}">' for src in images)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>monai-pneumonia drift monitor</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:1em auto}} img{{display:block;max-width:100%}}
table{{border-collapse:collapse;font-size:80%}} td,th{{border:1px solid #ccc;padding:2px 6px}}
.alarm{{background:#f8d0d0}} .verdict{{font-size:150%;color:{_ALERT if report['drift'] else '#2ca02c'}}}</style>
</head><body><h1>Drift monitor</h1>
<p><strong>{html.escape(DISCLAIMER)}</strong></p>
<p class="verdict">{verdict}</p>
<p>{report['films']} films in {len(windows)} window(s) of up to {rule['window']}; reference:
{html.escape(reference.source or 'unnamed')} ({reference.count} films, model
{html.escape(reference.model_sha256[:12] or 'unbound')}). A signal alarms when its Benjamini&ndash;Hochberg adjusted
p-value is below {rule['q']} and its PSI is at least {rule['psi_floor']} (docs/research/drift-rule.md). Shaded
windows are in drift. What to do on an alert: docs/monitoring.md.</p>
<ul>{alarms}</ul>{body}<h2>Per-window statistics</h2>{_table(windows)}</body></html>
"""
    return atomic_write(path, page, mode=0o644)
