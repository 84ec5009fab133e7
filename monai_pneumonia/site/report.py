"""``acceptance.html``: the site's verdict, its figures beside the model card's, the ROC curve and a reliability plot.

One file, no external assets and no JavaScript (plots are PNGs from matplotlib's Agg canvas); every value is
HTML-escaped (file names come from the site).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monai_pneumonia.results import DISCLAIMER, atomic_write

__all__ = ["write_acceptance_html"]

_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
_STYLE = ("body{font-family:sans-serif;max-width:62em;margin:2em auto;color:#222}table{border-collapse:collapse}"
          "td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}th:first-child,td:first-child"
          "{text-align:left}.PASS{color:#060}.FAIL{color:#a00}.INSUFFICIENT{color:#a60}img{max-width:30em}")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _roc(acceptance: Mapping[str, Any]) -> str:
    figure = Figure(figsize=(4.2, 4.2), dpi=100)
    axes = figure.add_subplot()
    roc = acceptance["roc"]
    axes.plot(roc["fpr"], roc["tpr"], color="#333", lw=1.5, label=f"model (AUC {acceptance['shipped']['auc']:.3f})")
    axes.plot([0, 1], [0, 1], color="#bbb", lw=0.8, ls="--")
    for key, label, style in (("shipped", "shipped threshold", "o"),
                              ("site_rule_cross_validated", "site rule (cross-validated)", "s")):
        figures = acceptance[key]
        if figures.get("sensitivity") is not None and figures.get("specificity") is not None:
            axes.plot([1 - figures["specificity"]], [figures["sensitivity"]], style, ms=8, label=label)
    axes.set_xlabel("1 - specificity")
    axes.set_ylabel("sensitivity")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return _png(figure)


def _reliability(calibration: Mapping[str, Any]) -> str:
    figure = Figure(figsize=(4.2, 4.2), dpi=100)
    axes = figure.add_subplot()
    bins = calibration["bins"]
    points = [(m, f, c) for m, f, c in zip(bins["mean_prob"], bins["frac_positive"], bins["counts"], strict=True)
              if c]
    axes.plot([0, 1], [0, 1], color="#bbb", lw=0.8, ls="--")
    axes.scatter([m for m, _, _ in points], [f for _, f, _ in points], s=[12 + 2 * c for _, _, c in points],
                 color="#1f77b4")
    axes.plot([m for m, _, _ in points], [f for _, f, _ in points], color="#1f77b4", lw=1)
    axes.set_xlabel("model's pneumonia probability (bin mean)")
    axes.set_ylabel("share of pneumonia films")
    axes.set_title(f"ECE {bins['ece']:.3f}" + (" (indicative only)" if not calibration["assessable"] else ""),
                   fontsize=9)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    figure.tight_layout()
    return _png(figure)


def _cell(figures: Mapping[str, Any], name: str) -> str:
    value = figures.get(name)
    if value is None:
        return "–"
    ci = figures.get(f"{name}_ci95")
    return f"{value:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def _table(columns: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    head = "".join(f"<th>{_e(title)}</th>" for title, _ in columns)
    rows = "".join(f"<tr><td>{name}</td>" + "".join(f"<td>{_e(_cell(figures, name))}</td>" for _, figures in columns)
                   + "</tr>" for name in _METRICS)
    return f"<table><tr><th>metric (95% CI)</th>{head}</tr>{rows}</table>"


def write_acceptance_html(acceptance: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the acceptance report of ``site fit`` (the contents of ``acceptance.json``) to ``path``."""
    rule, sample, criteria = acceptance["rule"], acceptance["sample"], acceptance["criteria"]
    model = acceptance.get("model", {})
    columns = [(f"shipped threshold {acceptance['shipped_threshold']:.4f} (site films)", acceptance["shipped"]),
               (f"site rule {rule['name']} {rule['threshold']:.4f} (cross-validated)",
                acceptance["site_rule_cross_validated"])]
    columns += [(f"model card: {name}", figures) for name, figures in acceptance["model_card"].items()]
    needed = "".join(
        f"<li>{_e(name)}: {_e(entry['films_of_class'])} films of its class for a 95% interval of width "
        f"{criteria['target_ci_width']:.2f}; {_e(entry['more_of_class'])} more of that class, about "
        f"{_e(entry['more_films_at_this_prevalence'])} more films at this sample's prevalence</li>"
        for name, entry in acceptance["films_for_target_width"].items() if entry["films_of_class"] is not None)
    plots = ""
    if acceptance.get("roc"):
        plots = (f'<p><img alt="ROC curve with both operating points" src="{_roc(acceptance)}">'
                 f'<img alt="reliability plot" src="{_reliability(acceptance["calibration"])}"></p>'
                 f"<p>Reliability: {_e(acceptance['calibration']['note'] or 'enough films per class to judge')}.</p>")
    selection = rule["selection"]
    costs = ", ".join(f"{_e(k)} {v:.4f}" for k, v in selection.get("cv_cost", {}).items())
    refused = "".join(f"<li>{_e(r['image'])}: {_e(r['error'])}</li>" for r in acceptance.get("refused", []))
    body = f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Site acceptance</title>
<style>{_STYLE}</style></head><body>
<h1>Site acceptance: <span class="{_e(acceptance['verdict'])}">{_e(acceptance['verdict'])}</span></h1>
<p><strong>{_e(DISCLAIMER)}</strong></p>
<ul>{''.join(f'<li>{_e(reason)}</li>' for reason in acceptance['reasons'])}</ul>
<p>Criteria, fixed before the films were classified: lower 95% bound of sensitivity &ge; {criteria['min_sensitivity']:.2f}
and of specificity &ge; {criteria['min_specificity']:.2f} (PASS); an upper bound below either: FAIL; otherwise, or
fewer than {criteria['min_per_class']} films in a class: INSUFFICIENT.</p>
<p>Model SHA-256 {_e(model.get('sha256', ''))} (monai-pneumonia {_e(model.get('version', ''))}). Sample:
{sample['n']} films, {sample['n_normal']} normal, {sample['n_pneumonia']} pneumonia (prevalence
{(sample['prevalence'] or 0):.3f}), {sample['n_refused']} refused.</p>
<h2>Figures</h2>
<p>The site rule's figures are <b>cross-validated</b> ({_e(selection.get('k', 5))}-fold, stratified): each film is
decided by the rule fitted without it. The shipped threshold's involve no fitting. 95% intervals: Wilson for
proportions, bootstrap for F1 and AUC.</p>
{_table(columns)}
<h2>The rule</h2>
<p>{_e(rule['name'])}: threshold {rule['threshold']:.4f} on the model's probability (shipped
{acceptance['shipped_threshold']:.4f}); parameters {_e(rule['parameters'])}. Chosen by: {_e(selection.get('method'))}
{('(' + costs + ')') if costs else ''} {_e(selection.get('reason', ''))}.</p>
{plots}
<h2>How many films would settle it</h2><ul>{needed}</ul>
{('<h2>Refused files</h2><ul>' + refused + '</ul>') if refused else ''}
</body></html>
"""
    return atomic_write(path, body, mode=0o644)
