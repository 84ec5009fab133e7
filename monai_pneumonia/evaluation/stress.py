"""Stress validation: the bundle's evaluation repeated under synthetic acquisition shifts.

For each shift of :data:`~monai_pneumonia.evaluation.shifts.ACQUISITION_SHIFTS` the bundle's own ``evaluate.json``
runs on the same labelled split (normally the validation split of the training data) with that shift inserted
before the intensity normalisation. The result is a table of metrics per shift at the model's stored threshold,
and a *stressed operating threshold*: the threshold chosen (by the same rule as in training) on the pooled
predictions of every shift, which keeps working when the films look different from the clean validation set.
:func:`~monai_pneumonia.networks.store_threshold` writes it into the checkpoint, where every entry point reads it.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .metrics import binary_metrics, select_threshold
from .shifts import ACQUISITION_SHIFTS

__all__ = ["format_table", "read_predictions", "stress_test"]

logger = logging.getLogger(__name__)

_REPORTED = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")


def read_predictions(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read the ``predictions.csv`` of a labelled evaluation (``image,label,prob_pneumonia,prediction``).

    Args:
        path: the file written by :class:`~monai_pneumonia.workflows.EvaluationWriter`.

    Returns:
        ``(images, labels, probabilities)`` in file order.
    """
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return (
        [row["image"] for row in rows],
        np.array([int(row["label"]) for row in rows]),
        np.array([float(row["prob_pneumonia"]) for row in rows]),
    )


def _summary(metrics: dict) -> dict:
    return {key: metrics.get(key) for key in (*_REPORTED, "threshold", "n")} | {
        f"{key}_ci95": metrics.get(f"{key}_ci95") for key in _REPORTED
    }


def stress_test(
    datalist: str | os.PathLike,
    output_dir: str | os.PathLike,
    split: str = "validation",
    shifts: Sequence[str] | None = None,
    bundle_root: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    threshold_method: str = "youden",
    n_bootstrap: int = 1000,
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
        threshold_method: rule for the pooled threshold, as in training (see
            :func:`~monai_pneumonia.evaluation.select_threshold`).
        n_bootstrap: bootstrap resamples of each evaluation's AUC/F1 intervals.
        overrides: further ``evaluate.json`` overrides (e.g. ``device``, ``num_workers``).

    Returns:
        ``{"split", "stored_threshold", "stressed_threshold", "shifts": {name: {"description", "at_stored",
        "at_stressed"}}, "pooled": {...}}``, also written to ``output_dir/stress.json``.

    Raises:
        ValueError: an unknown shift name.
    """
    from monai_pneumonia.bundle import run_workflow

    names = list(shifts) if shifts is not None else list(ACQUISITION_SHIFTS)
    unknown = [name for name in names if name not in ACQUISITION_SHIFTS]
    if unknown:
        raise ValueError(f"unknown acquisition shift(s) {unknown}; choose from {sorted(ACQUISITION_SHIFTS)}")
    output = Path(output_dir)
    results: dict[str, dict] = {}
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    stored = None
    for name in names:
        folder = output / name
        logger.info("stress validation: %s (%s)", name, ACQUISITION_SHIFTS[name][0])
        run_workflow(
            "evaluate.json",
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
        metrics = json.loads((folder / "metrics.json").read_text())
        stored = metrics["threshold"]
        _, labels, probs = read_predictions(folder / "predictions.csv")
        predictions[name] = (labels, probs)
        results[name] = {"description": ACQUISITION_SHIFTS[name][0], "at_stored": _summary(metrics)}

    pooled_labels = np.concatenate([labels for labels, _ in predictions.values()])
    pooled_probs = np.concatenate([probs for _, probs in predictions.values()])
    stressed = select_threshold(pooled_labels, pooled_probs, method=threshold_method)
    for name, (labels, probs) in predictions.items():
        results[name]["at_stressed"] = _summary(binary_metrics(labels, probs, stressed, n_bootstrap=0))
    report = {
        "split": split,
        "datalist": os.fspath(datalist),
        "threshold_method": threshold_method,
        "stored_threshold": stored,
        "stressed_threshold": stressed,
        "pooled": {
            "at_stored": _summary(binary_metrics(pooled_labels, pooled_probs, stored, n_bootstrap=0)),
            "at_stressed": _summary(binary_metrics(pooled_labels, pooled_probs, stressed, n_bootstrap=0)),
        },
        "shifts": results,
    }
    (output / "stress.json").write_text(json.dumps(report, indent=2))
    return report


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
        f"{report['stressed_threshold']:.4f} ({report['threshold_method']} on the pooled predictions)"
    )
    return "\n".join([header, *rows]) + footer
