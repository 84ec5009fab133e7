"""Source-held-out validation: does a threshold rule chosen on one source of normal films hold on another?

Synthetic acquisition shifts do not reproduce the normal films of another machine, so a rule can look right on them
and still lose specificity at a new site. When a model was trained without one source (e.g. every ``NORMAL2-``
patient of the public data forced into validation), its stress predictions show what each rule does there: the
threshold is chosen on the in-source images only, then read off on the held-out source's normals.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from monai_pneumonia.evaluation import choose_threshold, roc_auc
from monai_pneumonia.studies.stress import pool_predictions, read_predictions

__all__ = ["TRANSFER_RULES", "format_transfer", "source_transfer"]

#: The rules compared: ``(name, threshold rule, its target or None)`` (:func:`~monai_pneumonia.evaluation.choose_threshold`);
#: the set of the model-v2 campaign (``docs/research/model-v2-protocol.md``, addendum 4).
TRANSFER_RULES: tuple[tuple[str, str, float | None], ...] = (
    ("youden", "youden", None),
    ("bayes-guarded", "bayes-guarded", None),
    ("specificity-0.97", "specificity", 0.97),
    ("specificity-0.99", "specificity", 0.99),
    ("sensitivity-0.97", "sensitivity", 0.97),
)
#: A held-out specificity this close to the in-source one (at the Youden threshold) means no source shift.
SHIFT_MARGIN = 0.02
#: Balanced accuracies this close count as a tie (the higher sensitivity wins).
TIE = 0.005


def _rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    positive, negative = labels == 1, labels == 0
    sensitivity = float((probs[positive] >= threshold).mean()) if positive.any() else None
    specificity = float((probs[negative] < threshold).mean()) if negative.any() else None
    return sensitivity, specificity


def source_transfer(
    output_dir: str | os.PathLike,
    held_out: str,
    rules: tuple[tuple[str, str, float | None], ...] = TRANSFER_RULES,
    min_sensitivity: float = 0.95,
    tie: float = TIE,
) -> dict:
    """Compare threshold rules on a source the model never saw, from a stress validation's predictions.

    Each rule's threshold is chosen on the pooled predictions (every condition) of the in-source images; the report
    gives the in-source sensitivity and specificity and the specificity on the held-out source's normals, pooled and
    on the clean condition, and picks the rule with the highest held-out balanced accuracy (in-source sensitivity
    and held-out specificity) among those keeping ``min_sensitivity``; a tie within ``tie`` goes to the higher
    sensitivity.

    Args:
        output_dir: a :func:`~monai_pneumonia.studies.stress_test` output folder.
        held_out: regex searched in each image's file name; the matching images are the held-out source.
        rules: the rules compared.
        min_sensitivity: the in-source pooled sensitivity a rule must keep to be chosen.
        tie: balanced accuracies this close count as a tie (default: :data:`TIE`).

    Returns:
        The report, also written to ``output_dir/transfer.json``.

    Raises:
        FileNotFoundError: no ``stress.json`` or a condition's predictions are missing.
        ValueError: an invalid regex, or no held-out normals, or an in-source part without both classes.
    """
    output = Path(output_dir)
    try:
        pattern = re.compile(held_out)
    except re.error as error:
        raise ValueError(f"held-out source {held_out!r} is not a valid regular expression: {error}") from None
    stress = json.loads((output / "stress.json").read_text())
    per_shift = {name: read_predictions(output / name / "predictions.csv") for name in stress["shifts"]}
    images, labels, probs = pool_predictions(list(per_shift.values()))
    clean = np.concatenate([np.full(len(shift[0]), name == "none") for name, shift in per_shift.items()])
    held = np.array([bool(pattern.search(os.path.basename(image))) for image in images])
    if not (held & (labels == 0)).any():
        raise ValueError(f"{output}: no normal image matches the held-out source {held_out!r}")
    inside = ~held
    if not ((labels[inside] == 0).any() and (labels[inside] == 1).any()):
        raise ValueError(f"{output}: the images outside {held_out!r} need both classes to choose a threshold on")
    # the held-out ranking: its normals against the in-source pneumonia films
    versus = inside & (labels == 1) | held & (labels == 0)
    report: dict = {
        "held_out": held_out,
        "min_sensitivity": min_sensitivity,
        "counts": {"in_source_normal": int((inside & (labels == 0) & clean).sum()),
                   "in_source_pneumonia": int((inside & (labels == 1) & clean).sum()),
                   "held_out_normal": int((held & (labels == 0) & clean).sum()),
                   "conditions": len(stress["shifts"])},
        "auc": {"in_source": roc_auc(labels[inside], probs[inside]), "held_out_normals": roc_auc(labels[versus], probs[versus])},
        "rules": {},
    }
    for name, method, target in rules:
        threshold = choose_threshold(labels[inside], probs[inside], method=method, target=target)
        row: dict = {"threshold": threshold}
        for part, mask in (("pooled", np.ones_like(clean)), ("clean", clean)):
            sensitivity, specificity = _rates(labels[inside & mask], probs[inside & mask], threshold)
            _, held_specificity = _rates(labels[held & mask], probs[held & mask], threshold)
            row[part] = {"in_source_sensitivity": sensitivity, "in_source_specificity": specificity,
                         "held_out_specificity": held_specificity,
                         "held_out_balanced_accuracy": 0.5 * (sensitivity + held_specificity)}
        report["rules"][name] = row
    youden = report["rules"].get("youden", next(iter(report["rules"].values())))["pooled"]
    report["source_shift"] = youden["held_out_specificity"] - youden["in_source_specificity"]
    report["shift_detected"] = abs(report["source_shift"]) > SHIFT_MARGIN
    eligible = [(name, row["pooled"]) for name, row in report["rules"].items()
                if row["pooled"]["in_source_sensitivity"] >= min_sensitivity]
    if eligible:
        best = max(value["held_out_balanced_accuracy"] for _, value in eligible)
        tied = [(name, value) for name, value in eligible if value["held_out_balanced_accuracy"] >= best - tie]
        report["chosen_rule"] = max(tied, key=lambda pair: pair[1]["in_source_sensitivity"])[0]
    else:
        report["chosen_rule"] = None
    (output / "transfer.json").write_text(json.dumps(report, indent=2))
    return report


def format_transfer(report: dict) -> str:
    """A Markdown table of :func:`source_transfer`'s report (pooled conditions)."""
    lines = [f"held-out source {report['held_out']!r}: {report['counts']}; AUC in-source "
             f"{report['auc']['in_source']:.4f}, held-out normals vs pneumonia {report['auc']['held_out_normals']:.4f}",
             "| rule | threshold | sens (in) | spec (in) | spec (held out) | balanced acc (held out) |",
             "|---|---|---|---|---|---|"]
    for name, row in report["rules"].items():
        p = row["pooled"]
        lines.append(f"| {name} | {row['threshold']:.4f} | {p['in_source_sensitivity']:.4f} | "
                     f"{p['in_source_specificity']:.4f} | {p['held_out_specificity']:.4f} | "
                     f"{p['held_out_balanced_accuracy']:.4f} |")
    lines.append(f"source shift at Youden (held-out minus in-source specificity): {report['source_shift']:+.4f} "
                 f"({'shift' if report['shift_detected'] else 'no shift'}); chosen rule: {report['chosen_rule']}")
    return "\n".join(lines)
