"""Fit the atypicality reference of a model on its training films' pooled features (scikit-learn).

Per stage: ``PCA`` to ``n_components`` axes (keeps the sidecar small: a ResNet-50's 2048-channel stage becomes
2048 x 64), class means of the projections, and a ``LedoitWolf`` shrunk covariance of the class-centred
projections (tied over classes, Lee et al. 2018). The precision's Cholesky factor is folded into the projection,
so :class:`~monai_pneumonia.networks.atypicality.LayerReference` scores with a product and a Euclidean distance.
:func:`scale_stages` makes the stages comparable (version 2 of the score): each is divided by its median over
validation films, then they are combined by the maximum.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA

from monai_pneumonia.networks.atypicality import AtypicalityReference, LayerReference

__all__ = ["fit_layer", "fit_reference", "scale_stages"]


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
