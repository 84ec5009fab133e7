"""``site fit``: classify a site's labelled films once, adapt the decision rule, measure it honestly, write it down.

The site rule's figures are cross-validated on the sample (each film decided by the rule fitted without it);
the shipped threshold's figures involve no fitting, so they are measured on every film. The profile is
:class:`~monai_pneumonia.site_profile.SiteProfile`; the shipped model is only read. The accepted sample's
per-film records also become the site's drift reference (:data:`SITE_REFERENCE` beside ``site.json``), which
``serve --site`` watches the live stream against.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from monai_pneumonia import __version__
from monai_pneumonia.bundle import bundle_file, default_bundle_root
from monai_pneumonia.data import build_datalist, evaluation_items
from monai_pneumonia.decision import CLASS_NAMES
from monai_pneumonia.errors import DatalistError
from monai_pneumonia.evaluation.metrics import binary_metrics, calibration_bins, roc_curve
from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.monitoring import Reference
from monai_pneumonia.results import Refusal, atomic_write, file_sha256, film_record, refusal_record
from monai_pneumonia.site.acceptance import CALIBRATION_EVENTS, AcceptanceCriteria, films_for_width, verdict
from monai_pneumonia.site.report import write_acceptance_html
from monai_pneumonia.site.rules import AUTO, cross_validated_decisions, fit_rule, select_rule
from monai_pneumonia.site_profile import SiteProfile

__all__ = ["MODEL_CARD", "SITE_REFERENCE", "SiteSample", "classify_site", "fit_site", "measure_site", "read_site_items",
           "run_site_fit", "site_records"]

#: The site's drift reference, written beside ``site.json`` (the accepted sample as the monitor's reference).
SITE_REFERENCE = "reference.json"

#: The model card's figures for the shipped v1 model (bundle/docs/README.md), shown beside the site's.
MODEL_CARD: dict[str, dict[str, float]] = {
    "validation (10% of the training patients)": {"accuracy": 0.9676, "sensitivity": 0.9610, "specificity": 0.9857,
                                                   "f1": 0.9775, "auc": 0.9968},
    "external held-out test split (measured outside the project)": {
        "accuracy": 0.918, "sensitivity": 0.987, "specificity": 0.803, "f1": 0.938, "auc": 0.983},
}
_LISTS = ("training", "validation", "test")


class SiteSample:
    """The site's classified films: paths, labels, the model's probabilities, their metadata, and the refused files."""

    def __init__(self, images: Sequence[str], labels: Sequence[int], probs: Sequence[float],
                 refused: Sequence[dict] = (), metas: Sequence[dict] | None = None):
        self.images = list(images)
        self.labels = np.asarray(labels, dtype=int)
        self.probs = np.asarray(probs, dtype=np.float64)
        self.refused = list(refused)
        self.metas = list(metas) if metas is not None else [{} for _ in self.images]

    def summary(self, hashes: bool = True) -> dict[str, Any]:
        """Counts per class, prevalence and (with ``hashes``) each film's SHA-256, for the profile."""
        record: dict[str, Any] = {"n": int(self.labels.size), "n_normal": int((self.labels == 0).sum()),
                                  "n_pneumonia": int((self.labels == 1).sum()),
                                  "prevalence": float(self.labels.mean()) if self.labels.size else None,
                                  "n_refused": len(self.refused)}
        if hashes:
            record["file_sha256"] = sorted(file_sha256(image) for image in self.images)
        return record


def read_site_items(labelled: str | os.PathLike, labels_csv: str | os.PathLike | None = None,
                    split: str | None = None) -> list[dict]:
    """The site's labelled films: a ``NORMAL``/``PNEUMONIA`` folder, a datalist JSON (every list, or ``split``),
    a CSV ``path,label``, or a DICOM folder with ``labels_csv`` (``sop_instance_uid,label``).

    Raises:
        DatalistError: a missing or malformed source (the path is named).
    """
    source = Path(labelled)
    if source.suffix.lower() == ".json" and source.is_file():
        if split is not None:
            return evaluation_items(datalist=source, split=split)
        items = []
        for name in _LISTS:
            try:
                items.extend(evaluation_items(datalist=source, split=name))
            except DatalistError:  # an empty or absent list
                continue
        if not items:
            raise DatalistError(os.fspath(source), f"no items in any of the lists {', '.join(_LISTS)}")
        return items
    datalist, _ = build_datalist(os.fspath(source), labels=os.fspath(labels_csv) if labels_csv else None,
                                 val_fraction=0.0)
    return [item for name in _LISTS for item in datalist.get(name, [])]


def classify_site(classifier: BundleClassifier, items: Sequence[dict], progress: bool = True) -> SiteSample:
    """Classify the films once (a progress bar on stderr); refused files are kept aside, named."""
    images, labels, probs, refused, metas = [], [], [], [], []
    results = classifier.iterate([item["image"] for item in items])
    for item, result in zip(items, tqdm(results, total=len(items), desc="site films", unit="film",
                                        disable=not progress), strict=True):
        if isinstance(result, Refusal):
            refused.append({"image": result.image, "error": result.error})
            continue
        images.append(result.image)
        labels.append(int(item["label"]))
        probs.append(result.prob_pneumonia)
        metas.append(result.meta)
    return SiteSample(images, labels, probs, refused, metas)


def site_records(sample: SiteSample, profile: SiteProfile, model_sha256: str, site_profile_sha256: str = ""
                 ) -> list[dict]:
    """The sample's per-film records, decided by the site rule (refused films as refusal records), for the
    site's drift reference; no label, path or patient data goes into them (:func:`~monai_pneumonia.results.film_record`).
    """
    records = [film_record(prob, CLASS_NAMES[profile.decide(prob)], profile.threshold, meta,
                           model_sha256=model_sha256, site_profile_sha256=site_profile_sha256)
               for prob, meta in zip(sample.probs, sample.metas, strict=True)]
    records += [refusal_record(row["error"], model_sha256, site_profile_sha256) for row in sample.refused]
    return records


def _cross_validated_metrics(labels: np.ndarray, decisions: np.ndarray, auc: float | None) -> dict[str, Any]:
    # the pooled held-out decisions as 0/1 scores at 0.5: the same Wilson intervals as every other figure
    metrics = binary_metrics(labels, decisions.astype(np.float64), 0.5, n_bootstrap=2000)
    metrics["auc"], metrics["auc_ci95"] = auc, None
    metrics["threshold"] = None
    metrics["notes"] = [*metrics["notes"], "AUC: a threshold rule does not change the ranking; it is the model's "
                        "AUC on these films (shipped column)"]
    return metrics


def measure_site(sample: SiteSample, shipped_threshold: float, rule: str = AUTO, prevalence: float | None = None,
                 cost_ratio: float = 1.0, criteria: AcceptanceCriteria | None = None, k: int = 5,
                 seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Choose and fit the site rule, and measure it by cross-validation.

    Args:
        sample: the classified films.
        shipped_threshold: the model's stored threshold.
        rule: ``"auto"`` (the pre-written choice, :func:`~monai_pneumonia.site.rules.select_rule`) or a rule name.
        prevalence: the site's pneumonia share (default: the sample's).
        cost_ratio: cost of a missed pneumonia over a false alarm (default 1).
        criteria: the acceptance criteria (default: :class:`AcceptanceCriteria`'s).
        k: folds of the cross-validation.
        seed: seed of the folds.

    Returns:
        ``(fit, acceptance)``: the rule fitted on the whole sample (:class:`~monai_pneumonia.site.rules.RuleFit`)
        and the ``acceptance.json`` contents.
    """
    criteria = criteria or AcceptanceCriteria()
    y, p = sample.labels, sample.probs
    both = bool(y.size and y.any() and not y.all())
    if rule == AUTO:
        chosen, selection = select_rule(y, p, shipped_threshold, prevalence, cost_ratio, k, seed)
    else:
        chosen, selection = rule, {"method": "named by the user (--rule)"}
    if chosen != "shipped" and not both:
        raise ValueError(f"the {chosen!r} rule needs both normal and pneumonia films in the sample")
    fit = fit_rule(chosen, y, p, shipped_threshold, prevalence, cost_ratio)
    shipped = binary_metrics(y, p, shipped_threshold, n_bootstrap=2000 if both else 0)
    if fit.rule == "shipped":
        site = dict(shipped, notes=[*shipped["notes"], "the site rule is the shipped threshold: nothing fitted"])
        resubstitution = shipped
    else:
        decisions, _ = cross_validated_decisions(y, p, fit.rule, shipped_threshold, prevalence, cost_ratio, k, seed)
        site = _cross_validated_metrics(y, decisions, shipped.get("auc"))
        resubstitution = binary_metrics(y, p, fit.threshold, n_bootstrap=0)
    outcome, reasons = verdict(site, criteria)
    needed = {}
    for name, key, share in (("sensitivity", "n_positive", float(y.mean()) if y.size else 0.0),
                             ("specificity", "n_negative", 1.0 - float(y.mean()) if y.size else 0.0)):
        per_class = films_for_width(site.get(name), criteria.target_ci_width)
        more = max(0, per_class - site[key]) if per_class is not None else None
        needed[name] = {"films_of_class": per_class, "more_of_class": more,
                        "more_films_at_this_prevalence": (int(np.ceil(more / share)) if more and share else more)}
    calibration_ok = both and min(int(y.sum()), int((1 - y).sum())) >= CALIBRATION_EVENTS
    fpr_tpr = roc_curve(y, p) if both else None
    acceptance = {
        "verdict": outcome,
        "reasons": reasons,
        "criteria": criteria.to_json(),
        "rule": {"name": fit.rule, "threshold": fit.threshold, "parameters": fit.parameters, "selection": selection},
        "shipped_threshold": float(shipped_threshold),
        "sample": sample.summary(hashes=False),
        "shipped": shipped,
        "site_rule_cross_validated": site,
        "site_rule_resubstitution_not_an_estimate": resubstitution,
        "model_card": MODEL_CARD,
        "films_for_target_width": needed,
        "calibration": {
            "bins": calibration_bins(y, p) if y.size else None,
            "assessable": calibration_ok,
            "note": ("indicative only: fewer than "
                     f"{CALIBRATION_EVENTS} films in a class" if not calibration_ok else "")},
        "roc": {"fpr": [float(v) for v in fpr_tpr[0]], "tpr": [float(v) for v in fpr_tpr[1]]} if fpr_tpr else None,
        "refused": sample.refused,
    }
    return fit, acceptance


def fit_site(sample: SiteSample, shipped_threshold: float, model_sha256: str, **options: Any
             ) -> tuple[SiteProfile, dict[str, Any]]:
    """The site profile and the acceptance record for a classified sample (options of :func:`measure_site`)."""
    fit, acceptance = measure_site(sample, shipped_threshold, **options)
    profile = SiteProfile(
        model_sha256=model_sha256, rule=fit.rule, threshold=fit.threshold,
        parameters={**fit.parameters, "shipped_threshold": float(shipped_threshold)},
        selection=acceptance["rule"]["selection"], sample=sample.summary(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        version=__version__)
    return profile, acceptance


def run_site_fit(labelled: str | os.PathLike, output: str | os.PathLike, bundle_root: str | os.PathLike | None = None,
                 ckpt_dir: str | os.PathLike | None = None, labels_csv: str | os.PathLike | None = None,
                 split: str | None = None, device: str | None = None, progress: bool = True,
                 **options: Any) -> tuple[SiteProfile, dict[str, Any]]:
    """Read, classify, fit and write ``site.json``, ``acceptance.json``, ``acceptance.html`` and the site's drift
    reference (:data:`SITE_REFERENCE`) under ``output``.

    Returns:
        The profile and the acceptance record.
    """
    items = read_site_items(labelled, labels_csv, split)
    ckpt = Path(ckpt_dir) / "model.pt" if ckpt_dir else None
    classifier = BundleClassifier.from_bundle(bundle_root, ckpt_path=ckpt, device=device)
    sample = classify_site(classifier, items, progress)
    if not sample.images:
        raise ValueError(f"{labelled}: no film could be read ({len(sample.refused)} refused)")
    identity = classifier.identity
    profile, acceptance = fit_site(sample, classifier.threshold, identity["model_sha256"], **options)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    profile.save(folder / "site.json")
    checkpoint = ckpt or bundle_file(bundle_root if bundle_root is not None else default_bundle_root(), "model.pt")
    acceptance["model"] = {"sha256": identity["model_sha256"], "checkpoint": os.fspath(checkpoint),
                           "version": __version__}
    atomic_write(folder / "acceptance.json", json.dumps(acceptance, indent=2) + "\n", mode=0o644)
    write_acceptance_html(acceptance, folder / "acceptance.html")
    records = site_records(sample, profile, identity["model_sha256"], file_sha256(folder / "site.json"))
    Reference.from_records(records, identity["model_sha256"],
                           f"site sample of {Path(labelled).name} ({len(records)} films)").save(folder / SITE_REFERENCE)
    return profile, acceptance
