"""Fit the atypicality reference of a model on its training films' pooled features (scikit-learn).

Per stage: ``PCA`` to ``n_components`` axes (keeps the sidecar small: a ResNet-50's 2048-channel stage becomes
2048 x 64), class means of the projections, and a ``LedoitWolf`` shrunk covariance of the class-centred
projections (tied over classes, Lee et al. 2018). The precision's Cholesky factor is folded into the projection,
so :class:`~monai_pneumonia.networks.atypicality.LayerReference` scores with a product and a Euclidean distance.
:func:`scale_stages` makes the stages comparable (version 2 of the score): each is divided by its median over
validation films, then they are combined by the maximum. :func:`fit_detector` trains the unfit detector
(version 3): a ``LogisticRegression`` on standardised features, training films against synthetic unfit copies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from monai_pneumonia.networks.atypicality import AtypicalityReference, LayerReference
from monai_pneumonia.networks.unfit_detector import UnfitDetector

__all__ = ["fit_detector", "fit_layer", "fit_reference", "scale_stages"]


def fit_layer(name: str, features: np.ndarray, labels: np.ndarray, n_components: int = 64) -> LayerReference:
    """The statistics of one stage.

    Args:
        name: the submodule.
        features: the training films' pooled features (N, D).
        labels: their classes (N,).
        n_components: principal axes kept (at most ``N - classes`` and ``D``).
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    k = int(min(n_components, features.shape[0] - len(classes), features.shape[1]))
    pca = PCA(n_components=k, svd_solver="full", random_state=0).fit(features)
    projected = pca.transform(features)
    means = np.stack([projected[labels == c].mean(axis=0) for c in classes])
    centred = projected - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    factor = np.linalg.cholesky(precision)  # precision = factor @ factor.T
    return LayerReference(name, pca.mean_, pca.components_.T @ factor, means @ factor)


def fit_reference(
    features: Mapping[str, np.ndarray],
    labels: Sequence[int],
    model_sha256: str,
    n_components: int = 64,
    flag_limit: float | None = None,
    refuse_limit: float | None = None,
    rule: str = "",
) -> AtypicalityReference:
    """Fit every stage on training films.

    Args:
        features: ``{stage: (N, D)}`` of the training films (:func:`~monai_pneumonia.networks.atypicality.pooled_features`).
        labels: each film's class index (N,).
        model_sha256: the checkpoint's SHA-256 (:func:`~monai_pneumonia.networks.atypicality.file_sha256`).
        n_components: principal axes kept per stage.
        flag_limit: choose it on validation films, never on these; ``None``: the largest float (set it later
            with :meth:`~monai_pneumonia.networks.atypicality.AtypicalityReference.with_limits`).
        refuse_limit: likewise.
        rule: how the limits were chosen.
    """
    layers = tuple(fit_layer(name, values, np.asarray(labels), n_components) for name, values in features.items())
    big = float(np.finfo(np.float64).max)
    return AtypicalityReference(layers, model_sha256, big if flag_limit is None else float(flag_limit),
                                big if refuse_limit is None else float(refuse_limit), rule)


def scale_stages(reference: AtypicalityReference, features: Mapping[str, np.ndarray], combine: str = "max"
                 ) -> AtypicalityReference:
    """Divide each stage by its median distance over ``features`` and combine the stages by ``combine``.

    Args:
        reference: a fitted reference (its current scales are replaced, not compounded).
        features: ``{stage: (N, D)}`` of validation films (never the training films: their distances are smaller).
        combine: one of :data:`~monai_pneumonia.networks.atypicality.COMBINE_RULES`.
    """
    unscaled = reference.with_scales([1.0] * len(reference.layers), combine)
    return unscaled.with_scales(list(np.median(unscaled.stage_distances(features), axis=1)), combine)


def fit_detector(fit: Mapping[str, np.ndarray], unfit: Mapping[str, np.ndarray], keys: Sequence[str],
                 c: float = 0.01) -> UnfitDetector:
    """Train the unfit detector: fit films (class 0) against unfit ones (class 1), balanced.

    Args:
        fit: ``{key: (N, D_key)}`` of films the model is made for (training films, some mildly augmented).
        unfit: the same keys for synthetic unfit films (turned, flipped, cropped, ...).
        keys: the feature keys to concatenate (stage names and ``grid_key`` names).
        c: the inverse L2 regularisation strength (``LogisticRegression(C=c)``).

    Returns:
        The detector with the standardisation folded into its weights and no flag limit yet (set it on validation
        films with :meth:`~monai_pneumonia.networks.unfit_detector.UnfitDetector.with_limit`).
    """
    def stack(features):
        return np.concatenate([np.asarray(features[key], dtype=np.float64) for key in keys], axis=1)

    x_fit, x_unfit = stack(fit), stack(unfit)
    x = np.concatenate([x_fit, x_unfit])
    y = np.r_[np.zeros(len(x_fit)), np.ones(len(x_unfit))]
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x), y)
    weights = model.coef_[0] / scaler.scale_
    return UnfitDetector(tuple(keys), scaler.mean_, weights, float(model.intercept_[0]))
