"""Stress validation: the bundle's evaluation repeated under synthetic acquisition shifts.

For each shift of :data:`~monai_pneumonia.evaluation.shifts.ACQUISITION_SHIFTS` the bundle's own evaluation
(``inference.json`` with the ``evaluate.json`` overlay) runs on the same labelled split (normally the validation split of the training data) with that shift inserted
before the intensity normalisation. The result is a table of metrics per shift at the model's stored threshold,
and a *stressed operating threshold*: the threshold chosen (by the same rule as in training) on the pooled
predictions of every shift, which keeps working when the films look different from the clean validation set.
:func:`~monai_pneumonia.networks.store_threshold` writes it into the checkpoint, where every entry point reads it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monai_pneumonia.bundle import EVALUATE_CONFIGS, run_workflow
from monai_pneumonia.evaluation import (
    ACQUISITION_SHIFTS,
    binary_metrics,
    choose_threshold,
    fit_temperature,
    paired_auc_difference,
)
from monai_pneumonia.results import read_predictions
from monai_pneumonia.studies.shortcut import shortcut_measurement

__all__ = [
    "NORMAL_SERIES",
    "acquisition_series",
    "format_table",
    "pool_predictions",
    "read_predictions",
    "rescore_stress",
    "shipping_decision",
    "stress_report",
    "stress_test",
]

logger = logging.getLogger(__name__)

_REPORTED = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")

#: The public training folder's two acquisition batches of normal films: ``{series: file-name prefix}``
#: (``NORMAL2-IM-*`` and ``IM-*``); another data set passes its own.
NORMAL_SERIES: dict[str, str] = {"NORMAL2": "NORMAL2-", "IM": "IM-"}


def acquisition_series(path: str, series: Mapping[str, str] = NORMAL_SERIES) -> str:
    """The acquisition batch of a file: the first series whose prefix starts its name, else ``"other"``.

    Specificity per batch shows whether the operating point holds on normals from either "site".

    Args:
        path: an image file.
        series: ``{series: file-name prefix}``, tried in order (default: :data:`NORMAL_SERIES`).
    """
    name = os.path.basename(path)
    return next((key for key, prefix in series.items() if name.startswith(prefix)), "other")


def _series_specificity(images: list[str], labels: np.ndarray, probs: np.ndarray, threshold: float,
                        series_prefixes: Mapping[str, str]) -> dict:
    series = np.array([acquisition_series(image, series_prefixes) for image in images])
    out = {}
    for name in series_prefixes:
        chosen = (series == name) & (labels == 0)
        if chosen.any():
            out[name] = {"n": int(chosen.sum()), "specificity": float((probs[chosen] < threshold).mean())}
    return out


def _balanced_accuracy(metrics: dict) -> float:
    return 0.5 * (metrics["sensitivity"] + metrics["specificity"])


def pool_predictions(
    per_shift: list[tuple[list[str], np.ndarray, np.ndarray]],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Concatenate per-shift ``(images, labels, probabilities)`` in shift order (the pooled shifted validation)."""
    return ([image for images, _, _ in per_shift for image in images],
            np.concatenate([labels for _, labels, _ in per_shift]), np.concatenate([probs for _, _, probs in per_shift]))


def _summary(metrics: dict) -> dict:
    return {key: metrics.get(key) for key in (*_REPORTED, "threshold", "n")} | {
        f"{key}_ci95": metrics.get(f"{key}_ci95") for key in _REPORTED
    }


def _read_shift(folder: Path, name: str) -> tuple[float, tuple[list[str], np.ndarray, np.ndarray], dict]:
    """One shift's evaluation outputs: the stored threshold, its predictions, its metrics at that threshold."""
    metrics = json.loads((folder / "metrics.json").read_text())
    result = {"description": ACQUISITION_SHIFTS[name][0], "at_stored": _summary(metrics)}
    return metrics["threshold"], read_predictions(folder / "predictions.csv"), result


def stress_test(
    datalist: str | os.PathLike,
    output_dir: str | os.PathLike,
    split: str = "validation",
    shifts: Sequence[str] | None = None,
    bundle_root: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    threshold_method: str = "youden",
    n_bootstrap: int = 1000,
    shortcut: bool = False,
    threshold_target: float | None = None,
    series: Mapping[str, str] = NORMAL_SERIES,
    **overrides,
) -> dict:
    """Evaluate the bundle's model on ``split`` of ``datalist`` under each acquisition shift.

    Args:
        datalist: a datalist JSON with labelled items (e.g. from ``monai-pneumonia datalist``).
        output_dir: one sub-folder per shift (the evaluation's own outputs) plus ``stress.json``.
        split: the list of the datalist to evaluate; never the test split when choosing a threshold.
        shifts: names from :data:`ACQUISITION_SHIFTS` (default: all of them, ``"none"`` first).
        bundle_root: the bundle (default: the shipped one).
        ckpt_dir: folder of ``model.pt`` (default: the bundle's ``models``).
        threshold_method: rule for the pooled threshold (see
            :func:`~monai_pneumonia.evaluation.operating_point.choose_threshold`; default: Youden's J, the rule
            the shipped threshold was chosen by).
        n_bootstrap: bootstrap resamples of each evaluation's AUC/F1 intervals.
        shortcut: also measure where the model looks on the clean split
            (:func:`~monai_pneumonia.studies.shortcut.shortcut_measurement`), as ``report["shortcut"]``.
        threshold_target: the rule's target (see :func:`stress_report`); default: the rule's own.
        series: the normal acquisition series reported apart (see :func:`acquisition_series`).
        overrides: further evaluation overrides (e.g. ``device``, ``num_workers``).

    Returns:
        ``{"split", "stored_threshold", "stressed_threshold", "shifts": {name: {"description", "at_stored",
        "at_stressed"}}, "pooled": {...}, "series": {...}}``, also written to ``output_dir/stress.json``;
        ``pooled`` carries the balanced accuracy at each threshold, ``series`` the pooled specificity of each
        normal acquisition series (:func:`acquisition_series`).

    Raises:
        ValueError: an unknown shift name.
    """
    names = list(shifts) if shifts is not None else list(ACQUISITION_SHIFTS)
    unknown = [name for name in names if name not in ACQUISITION_SHIFTS]
    if unknown:
        raise ValueError(f"unknown acquisition shift(s) {unknown}; choose from {sorted(ACQUISITION_SHIFTS)}")
    output = Path(output_dir)
    results: dict[str, dict] = {}
    predictions: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    stored = None
    for name in names:
        folder = output / name
        logger.info("stress validation: %s (%s)", name, ACQUISITION_SHIFTS[name][0])
        run_workflow(
            EVALUATE_CONFIGS,
            bundle_root,
            datalist=os.fspath(datalist),
            datalist_split=split,
            acquisition_shift=name,
            output_dir=os.fspath(folder),
            ckpt_dir=os.fspath(ckpt_dir) if ckpt_dir is not None else None,
            gallery_size=0,
            n_bootstrap=n_bootstrap,
            progress_bar=False,
            **overrides,
        )
        stored, predictions[name], results[name] = _read_shift(folder, name)

    report = stress_report(predictions, results, stored, split, os.fspath(datalist), threshold_method,
                           threshold_target, series)
    if shortcut:
        clean = predictions.get("none", predictions[names[0]])[0]
        ckpt = Path(ckpt_dir) / "model.pt" if ckpt_dir is not None else None
        report["shortcut"] = shortcut_measurement(clean, bundle_root=bundle_root, ckpt_path=ckpt)
    (output / "stress.json").write_text(json.dumps(report, indent=2))
    return report


def stress_report(
    predictions: dict[str, tuple[list[str], np.ndarray, np.ndarray]],
    results: dict[str, dict],
    stored: float,
    split: str,
    datalist: str,
    threshold_method: str = "youden",
    threshold_target: float | None = None,
    series: Mapping[str, str] = NORMAL_SERIES,
) -> dict:
    """The stress report from per-shift predictions: the pooled threshold, each shift and the pool at both thresholds.

    Args:
        predictions: ``{shift: (images, labels, probabilities)}`` in shift order.
        results: ``{shift: {"description", "at_stored"}}`` (the evaluation's own metrics at the stored threshold);
            ``at_stressed`` is added to each.
        stored: the threshold stored in the checkpoint.
        split: the datalist split the predictions are of.
        datalist: the datalist path (recorded).
        threshold_method: rule for the pooled threshold (:func:`~monai_pneumonia.evaluation.choose_threshold`).
        threshold_target: the rule's target (:func:`~monai_pneumonia.evaluation.choose_threshold`'s ``target``);
            default: the rule's own.
        series: the normal acquisition series reported apart (see :func:`acquisition_series`).

    Returns:
        The report of :func:`stress_test` without ``shortcut``.
    """
    pooled_images, pooled_labels, pooled_probs = pool_predictions(list(predictions.values()))
    stressed = choose_threshold(pooled_labels, pooled_probs, method=threshold_method, target=threshold_target)
    for name, (_, labels, probs) in predictions.items():
        results[name]["at_stressed"] = _summary(binary_metrics(labels, probs, stressed, n_bootstrap=0))
    pooled = {}
    for key, threshold in (("at_stored", stored), ("at_stressed", stressed)):
        metrics = binary_metrics(pooled_labels, pooled_probs, threshold, n_bootstrap=0)
        pooled[key] = _summary(metrics) | {"balanced_accuracy": _balanced_accuracy(metrics)}
    clean = predictions.get("none", next(iter(predictions.values())))
    return {
        "split": split,
        "datalist": datalist,
        "threshold_method": threshold_method,
        "threshold_target": threshold_target,
        "stored_threshold": stored,
        "stressed_threshold": stressed,
        "pooled": pooled,
        "calibration": {
            "clean": fit_temperature(*clean[1:]),
            "pooled": fit_temperature(pooled_labels, pooled_probs),
        },
        "series": {
            "at_stored": _series_specificity(pooled_images, pooled_labels, pooled_probs, stored, series),
            "at_stressed": _series_specificity(pooled_images, pooled_labels, pooled_probs, stressed, series),
        },
        "shifts": results,
    }


def rescore_stress(output_dir: str | os.PathLike, threshold_method: str = "youden",
                   threshold_target: float | None = None, series: Mapping[str, str] = NORMAL_SERIES) -> dict:
    """Rebuild a stress report from the per-shift evaluations already in ``output_dir``, by another threshold rule.

    No model runs: each shift's ``metrics.json`` and ``predictions.csv`` are read back, so two models can be compared
    at the same rule without evaluating them again. The shortcut measurement, if any, is kept.

    Args:
        output_dir: a :func:`stress_test` output folder (its ``stress.json`` names the shifts and the datalist).
        threshold_method: rule for the pooled threshold.
        threshold_target: the rule's target (see :func:`stress_report`).
        series: the normal acquisition series reported apart (see :func:`acquisition_series`).

    Returns:
        The new report, also written to ``output_dir/stress.json``.

    Raises:
        FileNotFoundError: no ``stress.json`` or a shift's outputs are missing.
    """
    output = Path(output_dir)
    previous = json.loads((output / "stress.json").read_text())
    predictions, results, stored = {}, {}, None
    for name in previous["shifts"]:
        stored, predictions[name], results[name] = _read_shift(output / name, name)
    report = stress_report(predictions, results, stored, previous["split"], previous["datalist"], threshold_method,
                           threshold_target, series)
    if "shortcut" in previous:
        report["shortcut"] = previous["shortcut"]
    (output / "stress.json").write_text(json.dumps(report, indent=2))
    return report


def shipping_decision(candidate: str | os.PathLike, incumbent: str | os.PathLike) -> dict:
    """Apply the model-v2 campaign's shipping rule to two stress validations of the same split.

    The candidate replaces the incumbent only if, on the pooled shifted validation, its AUC is not lower and its
    balanced accuracy at its own stressed threshold is not lower. The paired AUC difference (candidate minus
    incumbent, stratified bootstrap) is reported alongside. The rule was fixed before any candidate was judged
    (``docs/research/model-v2-protocol.md``).

    Args:
        candidate: the candidate's stress output folder (with ``stress.json`` and one folder per shift).
        incumbent: the incumbent's, run on the same datalist, split and shifts.

    Returns:
        ``{"ship": bool, "auc": [cand, inc], "balanced_accuracy": [cand, inc], "auc_difference": {...}}``.

    Raises:
        ValueError: the two runs did not score the same images under the same shifts.
    """
    reports, pooled = [], []
    for folder in (Path(candidate), Path(incumbent)):
        report = json.loads((folder / "stress.json").read_text())
        reports.append(report)
        per_shift = [read_predictions(folder / name / "predictions.csv") for name in report["shifts"]]
        pooled.append(pool_predictions(per_shift))
    if pooled[0][0] != pooled[1][0] or list(reports[0]["shifts"]) != list(reports[1]["shifts"]):
        raise ValueError(f"{candidate} and {incumbent} did not score the same images under the same shifts")
    auc = [r["pooled"]["at_stressed"]["auc"] for r in reports]
    balanced = [r["pooled"]["at_stressed"]["balanced_accuracy"] for r in reports]
    difference = paired_auc_difference(pooled[0][1], pooled[0][2], pooled[1][2])
    return {"ship": bool(auc[0] >= auc[1] and balanced[0] >= balanced[1]), "auc": auc,
            "balanced_accuracy": balanced, "auc_difference": difference}


def format_table(report: dict) -> str:
    """A Markdown table of the stress report: one row per shift, at the stored and the stressed threshold."""
    header = "| shift | AUC | acc | sens | spec | acc* | sens* | spec* |\n|---|---|---|---|---|---|---|---|"
    rows = []
    for name, result in report["shifts"].items():
        a, b = result["at_stored"], result["at_stressed"]
        cells = [a["auc"], a["accuracy"], a["sensitivity"], a["specificity"], b["accuracy"], b["sensitivity"], b["specificity"]]
        rows.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.4f}" for c in cells) + " |")
    footer = (
        f"\nstored threshold {report['stored_threshold']:.4f}; * = at the stressed threshold "
        f"{report['stressed_threshold']:.4f} ({report['threshold_method']}"
        + (f", target {report['threshold_target']:g}" if report.get("threshold_target") is not None else "")
        + " on the pooled predictions)"
    )
    for key, label in (("at_stored", "stored"), ("at_stressed", "stressed")):
        series = report.get("series", {}).get(key, {})
        if series:
            footer += f"\npooled specificity per normal series at the {label} threshold: " + ", ".join(
                f"{name} {value['specificity']:.4f} (n={value['n']})" for name, value in series.items()
            )
    shortcut = report.get("shortcut")
    if shortcut and shortcut.get("mean"):
        footer += f"\nGrad-CAM energy share on {shortcut['n']} clean images (uniform map in brackets): " + ", ".join(
            f"{name} {value:.3f} ({shortcut['uniform'][name]:.3f})" for name, value in shortcut["mean"].items()
        )
    return "\n".join([header, *rows]) + footer
