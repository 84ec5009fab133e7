"""A self-contained HTML evaluation report for the pneumonia classifier.

One file, no external assets and no JavaScript: the plots are PNGs drawn with matplotlib's Agg canvas and
inlined as base64 ``data:`` URIs, the style is a small CSS block. Sections, top to bottom: header (model,
threshold, dataset size), headline numbers, the metrics table with 95% confidence intervals, four plots (ROC
with the operating point, confusion matrix, reliability diagram with ECE, probability histograms per class with
the threshold), the intended-use flags (how many films the gate flagged ``atypical`` or the header rules flagged,
and the metrics without them) and a Grad-CAM gallery: false negatives first (missed pneumonia, the dangerous
errors), then false positives, then a few true positives and true negatives, each card naming its flags. Every text that comes from the data (file names,
model information) is HTML-escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from monai_pneumonia.decision import CLASS_NAMES, decide
from monai_pneumonia.evaluation.metrics import binary_metrics, calibration_bins, roc_curve
from monai_pneumonia.results import DISCLAIMER, atomic_write, split_flags
from monai_pneumonia.visualize.overlay import as_uint8_picture

__all__ = ["MIN_FILMS_PER_CLASS", "ROC_COLOR", "gallery_cases", "small_sample_warning", "write_report"]

ROC_COLOR = "#d62728"
"""Colour of the ROC curve (a test looks for it in a rendering of the report)."""
CLASS_COLORS = ("#1f78b4", "#ff7f00")
CONFUSION_CMAP = "Blues"
CALIBRATION_COLOR = "#6a3d9a"
_FIG_SIZE = (5.6, 4.2)  # inches; shown at 100 px per inch, drawn at twice that for sharp text
_DISPLAY_DPI = 100
_RENDER_DPI = 200
_THUMBNAIL_PX = 224


@dataclass(frozen=True)
class _Group:
    """One group of the Grad-CAM gallery."""

    key: str
    title: str
    blurb: str
    label: int
    prediction: int
    descending: bool  # sort by probability, most telling case first
    limit: int
    needs_cam: bool  # list cases without an overlay too (errors) or only those with one (correct cases)


_GROUPS = (
    _Group("false_negative", "Missed pneumonia (false negatives)",
           "Pneumonia called normal: the dangerous errors. Lowest pneumonia probability first.", 1, 0, False, 48, False),
    _Group("false_positive", "False alarms (false positives)",
           "Normal films called pneumonia. Highest pneumonia probability first.", 0, 1, True, 48, False),
    _Group("true_positive", "Correct: pneumonia (true positives)",
           "A few of the most confident correct pneumonia calls.", 1, 1, True, 6, True),
    _Group("true_negative", "Correct: normal (true negatives)",
           "A few of the most confident correct normal calls.", 0, 0, False, 6, True),
)

_METRIC_ROWS = (
    ("sensitivity", "Sensitivity (recall)", "Of the children with pneumonia, the share the model flags."),
    ("specificity", "Specificity", "Of the children without pneumonia, the share the model clears."),
    ("precision", "Precision (PPV)", "Of the films flagged as pneumonia, the share that truly are."),
    ("accuracy", "Accuracy", "Share of all films classified correctly."),
    ("f1", "F1 score", "Harmonic mean of precision and sensitivity."),
    ("auc", "ROC AUC", "Ranking quality over all thresholds: 1.0 perfect, 0.5 chance."),
)

_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  background:#f4f5f7;color:#1e2430}
header{background:#24324a;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:24px;font-weight:600}
header .sub{margin:0;opacity:.85}
header dl{display:flex;flex-wrap:wrap;gap:4px 24px;margin:10px 0 0}
header dt{opacity:.7} header dd{margin:0 0 0 6px;font-weight:600}
header .kv{display:flex}
main{max-width:1220px;margin:0 auto;padding:20px 32px 40px}
h2{font-size:19px;margin:28px 0 10px;border-bottom:2px solid #d8dce3;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 4px}
.headline{display:grid;grid-template-columns:repeat(4,1fr);gap:14px}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.card .name{font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:#5a6272}
.card .value{font-size:30px;font-weight:650}
.card .ci{font-size:13px;color:#5a6272}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.12);border-radius:8px}
th,td{padding:7px 12px;text-align:left;border-bottom:1px solid #e6e8ec}
th{background:#eef0f4;font-size:13px;text-transform:uppercase;letter-spacing:.03em;color:#4a5262}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
td.meaning{color:#4a5262}
.note{font-size:13px;color:#5a6272;margin:6px 0}
.warn{background:#fff4e5;color:#3b2600;border-left:4px solid #e08a00;padding:8px 12px;margin:8px 0}
.plots{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:16px}
.plots figure{margin:0;background:#fff;border-radius:8px;padding:8px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
.plots img{display:block;width:100%;height:auto}
.plots figcaption{font-size:13px;color:#4a5262;padding:4px 6px 0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px}
.case{margin:0;background:#fff;border-radius:6px;overflow:hidden;box-shadow:0 1px 3px rgba(0,0,0,.12);
  border-top:5px solid #8a93a3}
.case.false_negative{border-top-color:#b2182b}.case.false_positive{border-top-color:#e08a00}
.case.true_positive,.case.true_negative{border-top-color:#3a8a4f}
.case img{display:block;width:100%;height:auto;background:#000}
.case .noimg{height:90px;display:flex;align-items:center;justify-content:center;color:#8a93a3;
  font-size:13px;background:#f0f1f4}
.case figcaption{padding:6px 8px;font-size:12.5px}
.case .file{display:block;font-weight:600;overflow-wrap:anywhere}
.case .flags{color:#9a5b00;font-weight:600}
footer{font-size:12.5px;color:#6a7282;margin-top:32px}
"""


def _e(value: Any) -> str:
    """HTML-escapes any value's text, quotes included (safe in text and in attribute values)."""
    return html.escape(str(value), quote=True)


def _data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI of PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt_rate(value: float | None, name: str) -> str:
    """AUC with three decimals, proportions as percentages; ``None`` as "undefined"."""
    if value is None:
        return "undefined"
    return f"{value:.3f}" if name == "auc" else f"{100 * value:.1f}%"


def _fmt_ci(ci: Sequence[float] | None, name: str) -> str:
    """``"low – high"`` in the metric's format, or a dash when there is no interval."""
    if not ci:
        return "—"
    return f"{_fmt_rate(ci[0], name)} – {_fmt_rate(ci[1], name)}"


# --------------------------------------------------------------------------------------------------- figures


def _new_figure(**gridspec: Any) -> tuple[Figure, Any]:
    """A figure on its own Agg canvas (no pyplot state), and its axes."""
    figure = Figure(figsize=_FIG_SIZE, dpi=_DISPLAY_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(**gridspec)


def _png(figure: Figure) -> bytes:
    """The figure as PNG bytes at the render resolution, on white."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_RENDER_DPI, facecolor="white")
    return buffer.getvalue()


def _plot_img(png: bytes, alt: str) -> str:
    """An ``<img class="plot">`` with the figure's display size (half its pixel size) as width and height."""
    width, height = (round(side * _DISPLAY_DPI) for side in _FIG_SIZE)
    return f'<img class="plot" src="{_data_uri(png)}" width="{width}" height="{height}" alt="{_e(alt)}">'


def _roc_figure(labels: np.ndarray, probs: np.ndarray, metrics: Mapping[str, Any]) -> bytes:
    figure, ax = _new_figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="#9aa1ad", linewidth=1, label="chance")
    auc = metrics.get("auc")
    if auc is not None:
        fpr, tpr, _ = roc_curve(labels, probs)
        ci = metrics.get("auc_ci95")
        ci_text = f", 95% CI {ci[0]:.3f}–{ci[1]:.3f}" if ci else ""
        ax.plot(fpr, tpr, color=ROC_COLOR, linewidth=2.4, label=f"ROC, AUC {auc:.3f}{ci_text}")
    else:
        ax.text(0.5, 0.55, "ROC undefined:\nonly one class in the labels", ha="center", va="center", fontsize=12)
    sensitivity, specificity = metrics.get("sensitivity"), metrics.get("specificity")
    if sensitivity is not None and specificity is not None:
        ax.plot([1 - specificity], [sensitivity], marker="o", markersize=10, color="black", linestyle="none",
                label=f"operating point (threshold {metrics.get('threshold', float('nan')):.3g}):\n"
                      f"sensitivity {100 * sensitivity:.1f}%, specificity {100 * specificity:.1f}%")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal",
           xlabel="1 − specificity (false-positive rate)", ylabel="Sensitivity (true-positive rate)",
           title="ROC curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8.5)
    return _png(figure)


def _confusion_figure(metrics: Mapping[str, Any]) -> bytes:
    """Rows: actual NORMAL / PNEUMONIA; columns: predicted. Colour = share of the actual class."""
    counts = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]], dtype=float)
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    names = (("True negative", "False positive"), ("False negative", "True positive"))
    figure, ax = _new_figure()
    ax.imshow(shares, cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0)
    for row in range(2):
        for col in range(2):
            colour = "white" if shares[row, col] > 0.55 else "#1e2430"
            ax.text(col, row, f"{names[row][col]}\n{int(counts[row, col])}\n"
                              f"{100 * shares[row, col]:.1f}% of {CLASS_NAMES[row].lower()}",
                    ha="center", va="center", color=colour, fontsize=10)
    ax.set_xticks([0, 1], [f"predicted\n{CLASS_NAMES[0]}", f"predicted\n{CLASS_NAMES[1]}"])
    ax.set_yticks([0, 1], [f"actual\n{CLASS_NAMES[0]}", f"actual\n{CLASS_NAMES[1]}"])
    ax.tick_params(length=0)
    ax.set_title(f"Confusion matrix (threshold {metrics.get('threshold', float('nan')):.3g})")
    return _png(figure)


def _calibration_figure(calibration: Mapping[str, Any]) -> bytes:
    figure, (ax, ax_counts) = _new_figure(nrows=2, sharex=True, height_ratios=(3, 1))
    filled = [i for i, count in enumerate(calibration["counts"]) if count]
    mean_prob = [calibration["mean_prob"][i] for i in filled]
    frac_pos = [calibration["frac_positive"][i] for i in filled]
    ax.plot([0, 1], [0, 1], linestyle="--", color="#9aa1ad", linewidth=1, label="perfect calibration")
    ax.plot(mean_prob, frac_pos, marker="o", color=CALIBRATION_COLOR, linewidth=2,
            label=f"model, ECE {calibration['ece']:.3f}")
    ax.set(xlim=(0, 1), ylim=(-0.02, 1.02), ylabel="Observed share with pneumonia",
           title="Calibration (reliability diagram)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8.5)
    edges = np.asarray(calibration["bin_edges"])
    ax_counts.bar(edges[:-1], calibration["counts"], width=np.diff(edges), align="edge", color="#b9a6d3",
                  edgecolor="white")
    ax_counts.set(xlabel="Predicted probability of pneumonia", ylabel="Films")
    return _png(figure)


def _histogram_figure(labels: np.ndarray, probs: np.ndarray, threshold: float) -> bytes:
    figure, ax = _new_figure()
    bins = np.linspace(0.0, 1.0, 26)
    for label in (0, 1):
        values = probs[labels == label]
        ax.hist(values, bins=bins, color=CLASS_COLORS[label], alpha=0.6, edgecolor="white",
                label=f"actual {CLASS_NAMES[label]} (n = {values.size})")
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.6, label=f"threshold {threshold:.3g}")
    ax.set(xlim=(0, 1), xlabel="Predicted probability of pneumonia", ylabel="Films",
           title="Predicted probabilities by actual class")
    ax.grid(alpha=0.3, axis="y")
    figure.legend(loc="outside lower center", ncols=3, fontsize=8.5, frameon=False)
    return _png(figure)


# --------------------------------------------------------------------------------------------------- HTML parts


def _header(title: str, metrics: Mapping[str, Any], model_info: Mapping[str, Any] | None, n_records: int) -> str:
    n, n_pos, n_neg = metrics.get("n", n_records), metrics.get("n_positive", "?"), metrics.get("n_negative", "?")
    info = {"threshold": f"P(pneumonia) ≥ {metrics.get('threshold', float('nan')):.4g}"}
    info.update({str(k): v for k, v in (model_info or {}).items() if str(k) != "threshold"})
    items = "".join(f'<div class="kv"><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>' for k, v in info.items())
    created = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"<header><h1>{_e(title)}</h1><div class=\"warn\">{_e(DISCLAIMER)}</div><p class=\"sub\">{_e(n)} films: {_e(n_pos)} pneumonia, {_e(n_neg)} "
            f"normal · pneumonia is the positive class · generated {_e(created)}</p><dl>{items}</dl></header>")


#: Below this many films in either class, the report warns that its 95% intervals mean little.
MIN_FILMS_PER_CLASS = 30


def small_sample_warning(metrics: Mapping[str, Any]) -> str | None:
    """A warning when either class has fewer than :data:`MIN_FILMS_PER_CLASS` films, else ``None``.

    Args:
        metrics: with ``n_positive`` and ``n_negative``.

    Returns:
        The text, naming the counts.
    """
    try:
        n_pos, n_neg = int(metrics["n_positive"]), int(metrics["n_negative"])
    except (KeyError, TypeError, ValueError):
        return None
    if min(n_pos, n_neg) >= MIN_FILMS_PER_CLASS:
        return None
    return (f"Too few films for the intervals to mean anything: {n_pos} pneumonia and {n_neg} normal "
            f"(fewer than {MIN_FILMS_PER_CLASS} in a class). Bootstrap and Wilson intervals are unreliable at this "
            "size, and a perfect score (e.g. AUC 1.000, 95% CI 1.000 – 1.000) on so few films does not show that the "
            "model is perfect. Evaluate on a few hundred films of each class before trusting these numbers.")


def _headline(metrics: Mapping[str, Any]) -> str:
    cards = []
    for name, label in (("sensitivity", "Sensitivity"), ("specificity", "Specificity"), ("auc", "ROC AUC"),
                        ("accuracy", "Accuracy")):
        cards.append(f'<div class="card"><div class="name">{label}</div>'
                     f'<div class="value">{_e(_fmt_rate(metrics.get(name), name))}</div>'
                     f'<div class="ci">95% CI {_e(_fmt_ci(metrics.get(f"{name}_ci95"), name))}</div></div>')
    return f'<section class="headline">{"".join(cards)}</section>'


def _support(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Numerator / denominator of each proportion (e.g. ``"382 / 390"`` for sensitivity), when counts are given."""
    try:
        tp, fp, tn, fn = (int(metrics[key]) for key in ("tp", "fp", "tn", "fn"))
    except (KeyError, TypeError, ValueError):
        return {}
    return {"sensitivity": f"{tp} / {tp + fn}", "specificity": f"{tn} / {tn + fp}",
            "precision": f"{tp} / {tp + fp}", "accuracy": f"{tp + tn} / {tp + fp + tn + fn}"}


def _metrics_table(metrics: Mapping[str, Any], mismatch: str | None) -> str:
    support = _support(metrics)
    rows = "".join(
        f'<tr><td>{label}</td><td class="num">{_e(_fmt_rate(metrics.get(name), name))}</td>'
        f'<td class="num">{_e(_fmt_ci(metrics.get(f"{name}_ci95"), name))}</td>'
        f'<td class="num">{_e(support.get(name, ""))}</td><td class="meaning">{meaning}</td></tr>'
        for name, label, meaning in _METRIC_ROWS
    )
    small = small_sample_warning(metrics)
    notes = [*([small] if small else []), *metrics.get("notes", []), *([mismatch] if mismatch else [])]
    warnings_html = "".join(f'<div class="warn">{_e(note)}</div>' for note in notes)
    method = metrics.get("ci_method", "")
    return (f"<section><h2>Metrics at the operating threshold</h2>{warnings_html}<table><thead><tr><th>Metric</th>"
            f"<th>Value</th><th>95% CI</th><th>Films</th><th>Meaning</th></tr></thead><tbody>{rows}</tbody></table>"
            f'<p class="note">Confidence intervals: {_e(method) or "as supplied"}.</p></section>')


def _plots(labels: np.ndarray, probs: np.ndarray, metrics: Mapping[str, Any], threshold: float) -> str:
    calibration = calibration_bins(labels, probs)
    figures = (
        (_roc_figure(labels, probs, metrics), "ROC curve",
         "Each point is one threshold; the black dot is the threshold in use."),
        (_confusion_figure(metrics), "Confusion matrix",
         "Rows: actual diagnosis; columns: model's call. Percentages are of the actual class."),
        (_calibration_figure(calibration), "Reliability diagram",
         f"When the model says p, how often is it pneumonia? Expected calibration error {calibration['ece']:.3f} "
         f"({calibration['n_bins']} equal-width bins; bottom: films per bin)."),
        (_histogram_figure(labels, probs, threshold), "Probability histogram",
         "Films right of the dashed line are called pneumonia."),
    )
    items = "".join(f"<figure>{_plot_img(png, alt)}<figcaption>{_e(caption)}</figcaption></figure>"
                    for png, alt, caption in figures)
    return f'<section><h2>Plots</h2><div class="plots">{items}</div></section>'


def _thumbnail_uri(source: Any) -> str | None:
    """A PNG data URI of a CAM overlay (file path or row-major RGB array) shrunk to a thumbnail, or ``None``."""
    if source is None:
        return None
    try:
        if isinstance(source, (str, os.PathLike)):
            with Image.open(source) as opened:
                picture = opened.convert("RGB")
        else:
            picture = Image.fromarray(as_uint8_picture(source)).convert("RGB")
    except (OSError, ValueError, TypeError):
        return None
    picture.thumbnail((_THUMBNAIL_PX, _THUMBNAIL_PX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return _data_uri(buffer.getvalue())


def _case_card(record: Mapping[str, Any], group: _Group) -> str:
    image = record.get("image", "")
    name = Path(str(image)).name or str(image)
    uri = _thumbnail_uri(record.get("cam_png"))
    flags = f'<br><span class="flags">flags: {_e(record["flags"])}</span>' if record.get("flags") else ""
    picture = (f'<img src="{uri}" alt="Grad-CAM overlay of {_e(name)}">' if uri
               else '<div class="noimg">no Grad-CAM overlay</div>')
    return (f'<figure class="case {group.key}">{picture}<figcaption>'
            f'<span class="file" title="{_e(image)}">{_e(name)}</span>'
            f"actual {CLASS_NAMES[group.label]} · called {CLASS_NAMES[group.prediction]}<br>"
            f"P(pneumonia) = {float(record['prob_pneumonia']):.3f}{flags}</figcaption></figure>")


def _flags_section(records: Sequence[Mapping[str, Any]], labels: np.ndarray, probs: np.ndarray,
                   threshold: float) -> str:
    """How many films carry each flag, and the headline metrics without the flagged films (no bootstrap)."""
    film_flags = [split_flags(str(record.get("flags") or "")) for record in records]
    counts: dict[str, int] = {}
    for flags in film_flags:
        for flag in flags:
            counts[flag] = counts.get(flag, 0) + 1
    if not counts:
        return ('<h2>Intended-use flags</h2><p class="note">No film was flagged by the intended-use gate or the '
                "header rules.</p>")
    rows = "".join(f'<tr><td>{_e(flag)}</td><td class="num">{n} of {len(records)}</td></tr>'
                   for flag, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    clean = np.array([not flags for flags in film_flags])
    note = "Every film is flagged: no metrics without them."
    if clean.any():
        rest = binary_metrics(labels[clean], probs[clean], threshold, n_bootstrap=0)
        note = (f"Without the {int((~clean).sum())} flagged films ({int(clean.sum())} left): "
                + ", ".join(f"{name} {_fmt_rate(rest.get(name), name)} (95% CI {_fmt_ci(rest.get(f'{name}_ci95'), name)})"
                            for name in ("sensitivity", "specificity", "accuracy")) + ".")
    return ('<h2>Intended-use flags</h2><p class="note">Flagged films are classified and counted in the metrics '
            "above; their results are less reliable (atypical: the gate found the image unlike the training "
            f'films).</p><table><tr><th>Flag</th><th>Films</th></tr>{rows}</table><p class="note">{_e(note)}</p>')


def _group_limits(cam_gallery: int | Mapping[str, int] | None) -> dict[str, int]:
    """Cases shown per gallery group: the defaults, overridden by an int (all groups) or a mapping."""
    limits = {group.key: group.limit for group in _GROUPS}
    if isinstance(cam_gallery, int):
        return dict.fromkeys(limits, cam_gallery)
    limits.update(cam_gallery or {})
    return limits


def _members(records: Sequence[Mapping[str, Any]], predictions: np.ndarray, group: _Group) -> list[Mapping[str, Any]]:
    """The records of a gallery group, most telling case first."""
    members = [r for r, p in zip(records, predictions, strict=True)
               if int(r["label"]) == group.label and p == group.prediction]
    return sorted(members, key=lambda r: float(r["prob_pneumonia"]), reverse=group.descending)


def gallery_cases(records: Sequence[Mapping[str, Any]], per_group: int, threshold: float = 0.5) -> list[Mapping[str, Any]]:
    """The records the Grad-CAM gallery shows first, so that a writer computes overlays for those only.

    Args:
        records: as for :func:`write_report` (``label``, ``prob_pneumonia``, optionally ``prediction``).
        per_group: cases per group; 0 selects none.
        threshold: decides the records without a ``prediction``.

    Returns:
        Up to ``per_group`` records of each group, in the gallery's order: false negatives (lowest pneumonia
        probability first), false positives (highest first), then the most confident true positives and true
        negatives.
    """
    if per_group <= 0 or not records:
        return []
    _, _, predictions = _arrays(records, threshold)
    return [r for group in _GROUPS for r in _members(records, predictions, group)[:per_group]]


def _gallery(records: Sequence[Mapping[str, Any]], predictions: np.ndarray,
             cam_gallery: int | Mapping[str, int] | None) -> str:
    limits = _group_limits(cam_gallery)
    parts = []
    for group in _GROUPS:
        members = _members(records, predictions, group)
        shown = [r for r in members if not group.needs_cam or r.get("cam_png") is not None]
        shown = shown[: max(0, limits[group.key])]
        if not shown and group.needs_cam:
            continue
        count = f"showing {len(shown)} of {len(members)}" if len(shown) < len(members) else f"{len(members)}"
        cards = "".join(_case_card(r, group) for r in shown) or '<p class="note">None.</p>'
        parts.append(f'<h3>{_e(group.title)} — {_e(count)}</h3><p class="note">{_e(group.blurb)}</p>'
                     f'<div class="gallery">{cards}</div>')
    return ("<section><h2>Grad-CAM gallery</h2><p class=\"note\">Warm colours mark the regions that drove the "
            "pneumonia score; check that they lie in the lung fields, not on markers or borders.</p>"
            f"{''.join(parts)}</section>")


def _arrays(records: Sequence[Mapping[str, Any]], threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, probabilities and predictions of the records (a missing prediction is ``prob >= threshold``)."""
    labels = np.array([int(r["label"]) for r in records], dtype=np.int64)
    probs = np.array([float(r["prob_pneumonia"]) for r in records], dtype=np.float64)
    predictions = np.array([int(r.get("prediction", decide(p, threshold))) for r, p in zip(records, probs, strict=True)])
    return labels, probs, predictions


def write_report(
    records: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "Pneumonia classifier: evaluation report",
    cam_gallery: int | Mapping[str, int] | None = None,
    model_info: Mapping[str, Any] | None = None,
) -> Path:
    """Writes the evaluation report as one self-contained HTML file.

    Args:
        records: one dict per film: ``image`` (path, shown by file name), ``label`` (0 normal, 1 pneumonia),
            ``prob_pneumonia`` (float), ``prediction`` (0/1; ``prob >= metrics["threshold"]`` when absent) and
            optionally ``cam_png``: a Grad-CAM overlay as a PNG path or a row-major RGB array (e.g. from
            :func:`monai_pneumonia.visualize.overlay_cam`), shown as a thumbnail.
        metrics: the output of :func:`monai_pneumonia.evaluation.binary_metrics` on the same records (counts,
            rates, ``*_ci95``, ``threshold``, ``ci_method``, ``notes``); extra keys are ignored.
        path: the HTML file to write; missing parent folders are created.
        title: the page title.
        cam_gallery: maximum cases per gallery group: an int for every group, or a mapping with any of the keys
            ``false_negative, false_positive, true_positive, true_negative`` (defaults 48, 48, 6, 6). Errors are
            listed even without an overlay; correct cases only when they have one.
        model_info: free-form facts shown in the header (model name, checkpoint, validation split, ...).

    Returns:
        The path written.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError("write_report needs at least one record")
    threshold = float(metrics.get("threshold", (model_info or {}).get("threshold", 0.5)))
    labels, probs, predictions = _arrays(records, threshold)
    mismatch = None
    if metrics.get("n") is not None and metrics["n"] != len(records):
        mismatch = f"The metrics cover {metrics['n']} films but the report was given {len(records)} records."
    body = "".join((
        _header(title, metrics, model_info, len(records)),
        "<main>",
        _headline(metrics),
        _metrics_table(metrics, mismatch),
        _plots(labels, probs, metrics, threshold),
        _flags_section(records, labels, probs, threshold),
        _gallery(records, predictions, cam_gallery),
        '<footer>Pneumonia is the positive class; a film is called pneumonia when P(pneumonia) ≥ the threshold. '
        "The threshold must be chosen on validation data, never on the test films reported here. "
        f"{_e(DISCLAIMER)}</footer>",
        "</main>",
    ))
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
                f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, document, mode=0o644)
