"""Binary metrics for pneumonia (label 1, the positive class) versus normal (label 0), with 95% intervals.

Every function takes ``labels`` (0/1) and ``probs`` (the model's pneumonia probability, or any score for the
ROC functions) as 1-D sequences, numpy arrays or CPU tensors of the same length.

Confidence-interval methods used by :func:`binary_metrics` (all two-sided 95%):

- accuracy, sensitivity, specificity, precision: **Wilson score interval** on the proportion's own denominator
  (all images; actual pneumonia; actual normal; predicted pneumonia). It stays inside [0, 1] and behaves at
  0% and 100%, where the normal-approximation interval collapses. Precision's interval is conditional on the
  number of images predicted positive.
- F1 and AUC: **stratified percentile bootstrap** (``n_bootstrap`` replicates, 2.5th and 97.5th percentiles).
  Pneumonia and normal images are resampled separately, so every replicate keeps ``n_positive`` and
  ``n_negative`` as in the data. It is vectorised without materialising resampled index arrays: under
  stratified resampling the replicate's ``tp`` and ``fp`` are exactly ``Binomial(n_positive, sensitivity)`` and
  ``Binomial(n_negative, 1 - specificity)``, which is all F1 depends on; the AUC replicate is the
  Mann-Whitney statistic with per-image multiplicities drawn as ``Multinomial(n, 1/n)`` for each class.
  Results are identical for the same ``seed``.

The ROC curve, AUC and confusion counts are scikit-learn's (``roc_curve``, ``roc_auc_score``,
``confusion_matrix``) and the Wilson interval SciPy's (``binomtest(...).proportion_ci(method="wilson")``). Two
pieces stay here on purpose: the calibration bins are ``[k/n, (k+1)/n)`` (a probability of 0.3 falls in
[0.3, 0.4)), whereas scikit-learn's ``calibration_curve`` closes its bins on the right and drops empty ones, which
would move images that sit on a bin edge and change the reported ECE; and ``scipy.stats.bootstrap`` resamples
index arrays with its own random stream, so it would change every reported bootstrap interval and cost far more
than the closed-form stratified draws above.

All outputs are JSON-serialisable: plain ``float``/``int``/``None`` and lists; undefined values (a zero
denominator, AUC with a single class) are ``None`` and explained in ``notes``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.stats import binomtest, norm
from sklearn import metrics as sklearn_metrics
from sklearn.exceptions import UndefinedMetricWarning

__all__ = [
    "Z95",
    "binary_metrics",
    "calibration_bins",
    "confusion_counts",
    "operating_points",
    "paired_auc_difference",
    "roc_auc",
    "roc_curve",
    "wilson_interval",
]

Z95 = 1.959963984540054
"""Two-sided 95% standard-normal quantile."""

_CI_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc")
_CI_METHOD = (
    "Wilson score 95% interval for accuracy, sensitivity, specificity and precision; "
    "stratified percentile bootstrap ({n} replicates, seed {seed}) for F1 and AUC"
)
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000  # bounds the (replicates x images) work arrays to a few tens of MB


def _to_numpy(values: Any) -> np.ndarray:
    """Converts a sequence, array or tensor to a 1-D numpy array (an ``(N, 1)`` column is flattened)."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"expected a 1-D sequence, got shape {array.shape}")
    return array


def _validate(labels: Any, probs: Any, *, unit_interval: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Checks and converts labels and scores.

    Args:
        labels: 0/1 ground truth (1 = pneumonia).
        probs: scores of the same length.
        unit_interval: also require the scores to lie in [0, 1] (probabilities).

    Returns:
        ``(labels as int64, scores as float64)``.

    Raises:
        ValueError: empty input, length mismatch, labels other than 0/1, non-finite or out-of-range scores.
    """
    y = _to_numpy(labels)
    s = _to_numpy(probs).astype(np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and probs differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise ValueError("labels and probs are empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (pneumonia)")
    if not np.isfinite(s).all():
        raise ValueError("probs contain NaN or infinite values")
    if unit_interval and ((s < 0).any() or (s > 1).any()):
        raise ValueError("probs must be probabilities in [0, 1]")
    return y.astype(np.int64), s


def _ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator`` as a float, or ``None`` when the denominator is zero."""
    return float(numerator) / float(denominator) if denominator else None


def _percentile_ci(samples: np.ndarray) -> list[float]:
    """2.5th and 97.5th percentiles of bootstrap replicates, as plain floats."""
    low, high = np.quantile(samples, [0.025, 0.975])
    return [float(low), float(high)]


def wilson_interval(successes: int, total: int, z: float = Z95) -> list[float] | None:
    """Wilson score interval for a binomial proportion (SciPy's ``binomtest(...).proportion_ci(method="wilson")``).

    Args:
        successes: number of successes (0 <= successes <= total).
        total: number of trials.
        z: standard-normal quantile (1.96 for 95%).

    Returns:
        ``[low, high]`` within [0, 1], or ``None`` when ``total`` is 0.
    """
    if total <= 0:
        return None
    interval = binomtest(int(successes), int(total)).proportion_ci(
        confidence_level=1.0 - 2.0 * float(norm.sf(z)), method="wilson")
    return [float(interval.low), float(interval.high)]


def confusion_counts(labels: Any, preds: Any) -> dict[str, int]:
    """Confusion-matrix counts with pneumonia (1) as the positive class.

    Args:
        labels: 0/1 ground truth.
        preds: 0/1 predictions of the same length.

    Returns:
        ``{"tp", "fp", "tn", "fn"}`` as plain ints.
    """
    y, p = _validate(labels, preds)
    if not np.isin(p, (0, 1)).all():
        raise ValueError("preds must be 0 (normal) or 1 (pneumonia)")
    matrix = sklearn_metrics.confusion_matrix(y, p.astype(np.int64), labels=[0, 1])
    tn, fp, fn, tp = (int(count) for count in matrix.ravel())
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def roc_curve(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic for the rule ``score >= threshold`` -> pneumonia (scikit-learn's).

    One point per distinct score (``drop_intermediate=False``: no collinear points are dropped), preceded by the
    point (0, 0) whose threshold is ``+inf`` (nothing called positive).

    Args:
        labels: 0/1 ground truth.
        probs: scores, any finite values (higher = more likely pneumonia).

    Returns:
        ``(fpr, tpr, thresholds)``, thresholds strictly decreasing. With a single class the undefined rate is
        all NaN and a warning is issued.
    """
    y, s = _validate(labels, probs, unit_interval=False)
    n_pos = int(y.sum())
    if not (n_pos and y.size - n_pos):
        warnings.warn("roc_curve: only one class present in labels; the other rate is undefined (NaN)", stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # warned above, in our words
        fpr, tpr, thresholds = sklearn_metrics.roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(labels: Any, probs: Any) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``; ties count one half, as in Mann-Whitney U).

    Args:
        labels: 0/1 ground truth.
        probs: scores, any finite values.

    Returns:
        AUC in [0, 1]; ``nan`` (with a warning) when only one class is present.
    """
    y, s = _validate(labels, probs, unit_interval=False)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if not (n_pos and n_neg):
        warnings.warn("roc_auc: only one class present in labels; AUC is undefined (NaN)", stacklevel=2)
        return float("nan")
    return float(sklearn_metrics.roc_auc_score(y, s))


def _bootstrap_f1(tp: int, fp: int, n_pos: int, n_neg: int, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """F1 replicates of a stratified bootstrap, drawn as binomial ``tp`` and ``fp`` counts (requires n_pos > 0)."""
    tp_b = rng.binomial(n_pos, tp / n_pos, size=n_bootstrap)
    fp_b = rng.binomial(n_neg, fp / n_neg, size=n_bootstrap) if n_neg else np.zeros(n_bootstrap, np.int64)
    fn_b = n_pos - tp_b
    return 2.0 * tp_b / (2.0 * tp_b + fp_b + fn_b)


def _bootstrap_auc(y: np.ndarray, s: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """AUC replicates of a stratified bootstrap (requires both classes).

    Each replicate weights image ``i`` by its multiplicity in the resample: positives ``w``, negatives ``v``.
    ``AUC = sum_i w_i (V(< s_i) + V(= s_i) / 2) / (n_pos n_neg)`` where ``V`` sums negative weights; with the
    negatives sorted, ``V`` is a difference of cumulative sums looked up with ``searchsorted``.
    """
    pos_scores = s[y == 1]
    neg_order = np.argsort(s[y == 0], kind="mergesort")
    neg_sorted = s[y == 0][neg_order]
    n_pos, n_neg = pos_scores.size, neg_sorted.size
    below = np.searchsorted(neg_sorted, pos_scores, side="left")
    up_to = np.searchsorted(neg_sorted, pos_scores, side="right")
    chunk = max(1, min(n_bootstrap, _BOOTSTRAP_CHUNK_ELEMENTS // (n_pos + n_neg + 1)))
    out = np.empty(n_bootstrap)
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        w = rng.multinomial(n_pos, np.full(n_pos, 1.0 / n_pos), size=size)
        v = rng.multinomial(n_neg, np.full(n_neg, 1.0 / n_neg), size=size)[:, neg_order]
        cum_v = np.concatenate([np.zeros((size, 1)), np.cumsum(v, axis=1)], axis=1)
        wins = cum_v[:, below] + 0.5 * (cum_v[:, up_to] - cum_v[:, below])
        out[start : start + size] = (w * wins).sum(axis=1) / (n_pos * n_neg)
    return out


def binary_metrics(
    labels: Any, probs: Any, threshold: float, *, n_bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Operating-point metrics with 95% confidence intervals (pneumonia = positive, ``prob >= threshold``).

    Args:
        labels: 0/1 ground truth (1 = pneumonia).
        probs: pneumonia probabilities in [0, 1].
        threshold: decision threshold; an image is called pneumonia when ``prob >= threshold``.
        n_bootstrap: bootstrap replicates for the F1 and AUC intervals; 0 skips them (their CIs are ``None``).
        seed: seed of the bootstrap's random generator; the same seed gives the same intervals.

    Returns:
        A JSON-serialisable dict with keys ``accuracy, sensitivity, specificity, precision, f1, auc`` (floats
        or ``None`` where undefined), ``<name>_ci95`` (``[low, high]`` or ``None``) for each of those six,
        ``n, n_positive, n_negative, tp, fp, tn, fn`` (ints), ``threshold`` (float), and ``n_bootstrap``,
        ``seed``, ``ci_method`` (str) and ``notes`` (list of str explaining any ``None``).

    Raises:
        ValueError: invalid labels/probs (see :func:`roc_auc`), or a negative ``n_bootstrap``.
    """
    y, s = _validate(labels, probs)
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")
    counts = confusion_counts(y, s >= threshold)
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    n_pos, n_neg, n = tp + fn, fp + tn, y.size
    notes: list[str] = []

    point = {
        "accuracy": _ratio(tp + tn, n),
        "sensitivity": _ratio(tp, n_pos),
        "specificity": _ratio(tn, n_neg),
        "precision": _ratio(tp, tp + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": None,
    }
    ci: dict[str, list[float] | None] = {
        "accuracy": wilson_interval(tp + tn, n),
        "sensitivity": wilson_interval(tp, n_pos),
        "specificity": wilson_interval(tn, n_neg),
        "precision": wilson_interval(tp, tp + fp),
        "f1": None,
        "auc": None,
    }
    rng = np.random.default_rng(seed)
    if n_pos and n_neg:
        point["auc"] = roc_auc(y, s)
    else:
        missing = "pneumonia" if not n_pos else "normal"
        notes.append(f"AUC is undefined: the labels contain no {missing} images (a single class).")
    if n_pos and n_bootstrap:
        ci["f1"] = _percentile_ci(_bootstrap_f1(tp, fp, n_pos, n_neg, n_bootstrap, rng))
    elif n_bootstrap:
        notes.append("The F1 interval is not computed: the labels contain no pneumonia images.")
    if point["auc"] is not None and n_bootstrap:
        ci["auc"] = _percentile_ci(_bootstrap_auc(y, s, n_bootstrap, rng))
    for name in ("sensitivity", "specificity", "precision", "f1"):
        if point[name] is None:
            notes.append(f"{name} is undefined: its denominator is zero at threshold {threshold:g}.")

    result: dict[str, Any] = {}
    for name in _CI_METRICS:
        result[name] = point[name]
        result[f"{name}_ci95"] = ci[name]
    result.update(
        n=int(n),
        n_positive=int(n_pos),
        n_negative=int(n_neg),
        threshold=float(threshold),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        n_bootstrap=int(n_bootstrap),
        seed=int(seed),
        ci_method=_CI_METHOD.format(n=n_bootstrap, seed=seed),
        notes=notes,
    )
    return result


def paired_auc_difference(
    labels: Any, probs_a: Any, probs_b: Any, *, n_bootstrap: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """AUC of model A minus AUC of model B on the same images, with a paired stratified bootstrap 95% interval.

    Both models are scored on every bootstrap replicate drawn once per image (the same multiplicities for both),
    so the interval reflects how differently the two rank the same films, not the sampling of the films alone:
    much narrower than comparing two unpaired AUC intervals. ``p_two_sided`` is the bootstrap's two-sided
    share of replicates on the other side of zero (doubled; a difference with an interval excluding 0 has p < 0.05).

    Args:
        labels: 0/1 ground truth (1 = pneumonia), both classes present.
        probs_a: model A's pneumonia scores for the same images, in the same order.
        probs_b: model B's scores.
        n_bootstrap: replicates (> 0).
        seed: seed of the resampling; the same seed gives the same interval.

    Returns:
        ``{"auc_a", "auc_b", "difference", "difference_ci95", "p_two_sided", "n", "n_bootstrap", "seed"}``.

    Raises:
        ValueError: invalid inputs, different lengths, a single class, or ``n_bootstrap < 1``.
    """
    y, a = _validate(labels, probs_a, unit_interval=False)
    _, b = _validate(labels, probs_b, unit_interval=False)
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if y.all() or not y.any():
        raise ValueError("paired_auc_difference needs both classes in labels")
    # the replicates' multinomial draws depend only on the class sizes and the seed, so two generators with the
    # same seed give every image the same multiplicity for both models: the replicates are paired
    replicates = _bootstrap_auc(y, a, n_bootstrap, np.random.default_rng(seed)) - _bootstrap_auc(
        y, b, n_bootstrap, np.random.default_rng(seed)
    )
    auc_a, auc_b = roc_auc(y, a), roc_auc(y, b)
    tail = min(float(np.mean(replicates <= 0.0)), float(np.mean(replicates >= 0.0)))
    return {
        "auc_a": auc_a,
        "auc_b": auc_b,
        "difference": auc_a - auc_b,
        "difference_ci95": _percentile_ci(replicates),
        "p_two_sided": min(1.0, 2.0 * tail),
        "n": int(y.size),
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
    }


def _operating_points(y: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of ``s >= t`` for every ``t`` in ``thresholds`` (vectorised)."""
    pos_sorted = np.sort(s[y == 1])
    neg_sorted = np.sort(s[y == 0])
    tp = pos_sorted.size - np.searchsorted(pos_sorted, thresholds, side="left")
    fp = neg_sorted.size - np.searchsorted(neg_sorted, thresholds, side="left")
    return tp / pos_sorted.size, 1.0 - fp / neg_sorted.size


def _candidate_thresholds(s: np.ndarray) -> np.ndarray:
    """Every distinct operating point's threshold inside (0, 1), ascending.

    Midpoints between adjacent distinct scores, plus half the smallest score (everything positive) and the
    midpoint between the largest score and 1 (nothing positive); candidates outside (0, 1) are dropped.
    """
    distinct = np.unique(s)
    candidates = np.r_[distinct[0] / 2.0, (distinct[:-1] + distinct[1:]) / 2.0, (distinct[-1] + 1.0) / 2.0]
    return np.unique(candidates[(candidates > 0.0) & (candidates < 1.0)])


def operating_points(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct operating point of ``prob >= threshold`` with a threshold inside (0, 1).

    Each threshold lies strictly between two adjacent distinct scores (their midpoint), so applying
    ``prob >= threshold`` to the same data reproduces exactly that operating point regardless of ties; the
    threshold rules (:func:`~monai_pneumonia.evaluation.choose_threshold`) pick one of them.

    Args:
        labels: 0/1 ground truth with both classes present.
        probs: pneumonia probabilities in [0, 1].

    Returns:
        ``(thresholds, sensitivity, specificity)``, thresholds ascending.

    Raises:
        ValueError: a single class, or invalid inputs.
    """
    y, s = _validate(labels, probs)
    if y.all() or not y.any():
        raise ValueError("choosing a threshold needs both pneumonia and normal images")
    thresholds = _candidate_thresholds(s)
    sensitivity, specificity = _operating_points(y, s, thresholds)
    return thresholds, sensitivity, specificity


def calibration_bins(labels: Any, probs: Any, n_bins: int = 10) -> dict[str, Any]:
    """Equal-width reliability-diagram bins and the expected calibration error.

    Bin ``k`` holds probabilities in ``[edges[k], edges[k+1])``; the last bin also holds 1.0.

    Args:
        labels: 0/1 ground truth.
        probs: pneumonia probabilities in [0, 1].
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        A JSON-serialisable dict: ``bin_edges`` (n_bins + 1 floats), ``counts`` (ints), ``mean_prob`` and
        ``frac_positive`` (per bin, ``None`` for empty bins), ``ece`` (sum over bins of
        ``count / n * |frac_positive - mean_prob|``), ``mce`` (the largest such gap over non-empty bins),
        ``n`` and ``n_bins``.
    """
    y, s = _validate(labels, probs)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.arange(n_bins + 1) / n_bins  # k / n_bins exactly, so a probability of 0.3 falls in [0.3, 0.4)
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_prob = np.bincount(index, weights=s, minlength=n_bins)
    sum_pos = np.bincount(index, weights=y.astype(np.float64), minlength=n_bins)
    filled = counts > 0
    gaps = np.abs(sum_pos[filled] - sum_prob[filled]) / counts[filled]
    return {
        "bin_edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "mean_prob": [float(p / c) if c else None for p, c in zip(sum_prob, counts, strict=True)],
        "frac_positive": [float(p / c) if c else None for p, c in zip(sum_pos, counts, strict=True)],
        "ece": float(np.abs(sum_pos - sum_prob).sum() / y.size),
        "mce": float(gaps.max()),
        "n": int(y.size),
        "n_bins": int(n_bins),
    }

