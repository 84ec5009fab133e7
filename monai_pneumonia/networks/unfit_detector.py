"""The unfit-film detector: a linear read-out of the network's features trained on synthetic unfit films.

The atypicality distance (:mod:`monai_pneumonia.networks.atypicality`) is unsupervised: it catches what lies far
from every training film (other modalities, photographs, noise) but misses chest films that are merely turned
upside down or cropped, whose pooled features stay close to the training films'. Training a classifier with
synthetic unfit images as negatives is the known remedy (Hendrycks et al., "outlier exposure", ICLR 2019); here
a logistic regression on the pooled and 2 x 2 grid-pooled stage outputs (the grid keeps the film's layout:
which way is up) separates training films from turned, flipped, cropped, blurred, inverted, noisy and
lateral-like copies of them (``docs/research/gate-limits.md``, versions 3 and 4). Its log-odds above
:attr:`UnfitDetector.flag_limit` flag the film ``atypical``; it never refuses on its own (its negatives are
synthetic; refusals stay with the distance).

Fitting (scikit-learn) is :func:`monai_pneumonia.networks.atypicality_fit.fit_detector`; the standardisation is
folded into the weights, so scoring is one matrix product and needs no scikit-learn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["GRID_SUFFIX", "UnfitDetector", "grid_key"]

#: Feature key suffix of a stage's 2 x 2 grid-pooled output (``"layer4.grid"``: (N, 4 C)).
GRID_SUFFIX = ".grid"


def grid_key(layer: str) -> str:
    """The feature key of ``layer``'s 2 x 2 grid-pooled output."""
    return layer + GRID_SUFFIX


@dataclass(frozen=True)
class UnfitDetector:
    """A linear detector of unfit films on named features.

    Attributes:
        keys: the feature keys concatenated, in order (stage names and :func:`grid_key` names).
        mean: the training mean of the concatenated features (D,).
        weights: the logistic regression's coefficients divided by the features' standard deviations (D,).
        bias: the intercept, with the standardisation folded in.
        flag_limit: log-odds above it flag the film; chosen on validation films, never on the training ones.
        rule: how the limit was chosen, one line.

    Raises:
        ValueError: no keys, ``mean`` and ``weights`` of different or wrong shapes, or a limit or weights that
            are not finite.
    """

    keys: tuple[str, ...]
    mean: np.ndarray
    weights: np.ndarray
    bias: float
    flag_limit: float = float(np.finfo(np.float64).max)
    rule: str = ""

    def __post_init__(self):
        if not self.keys:
            raise ValueError("an unfit detector needs at least one feature key")
        if self.mean.ndim != 1 or self.mean.shape != self.weights.shape:
            raise ValueError(f"unfit detector mean {self.mean.shape} and weights {self.weights.shape} must be "
                             "vectors of one length")
        if not (np.all(np.isfinite(self.weights)) and np.isfinite(self.bias) and np.isfinite(self.flag_limit)):
            raise ValueError("unfit detector weights, bias and limit must be finite")

    def logit(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The log-odds that each film is unfit (N,).

        Raises:
            KeyError: a feature key missing from ``features``.
            ValueError: the concatenated features do not have the detector's length.
        """
        stacked = np.concatenate([np.asarray(features[key], dtype=np.float64) for key in self.keys], axis=1)
        if stacked.shape[1] != self.mean.shape[0]:
            raise ValueError(f"unfit detector expects {self.mean.shape[0]} features, got {stacked.shape[1]}")
        return (stacked - self.mean) @ self.weights + self.bias

    def is_flagged(self, logit: float) -> bool:
        """Whether a film with this log-odds is flagged (NaN: flagged)."""
        return not np.isfinite(logit) or logit > self.flag_limit

    def with_limit(self, flag_limit: float, rule: str = "") -> UnfitDetector:
        """A copy with another flag limit."""
        return replace(self, flag_limit=float(flag_limit), rule=rule)
