"""Atypicality: how far a film lies from the training films in the network's own feature space.

The score is a class-conditional Mahalanobis distance with a tied covariance (Lee et al., NeurIPS 2018) on the
spatially pooled outputs of several stages (FRODO, Çallı et al., MIDL 2019): for each stage the pooled features
are projected on their leading principal components, the covariance of the class-centred projections is shrunk
(Ledoit-Wolf), and the squared distance to the nearest class mean is divided by the number of components, so a
typical film scores about 1 at every stage. How the stages are combined is stored with the reference
(:data:`COMBINE_RULES`): ``"mean"`` (sidecar format 1) averages them; ``"max"`` (format 2) divides each stage by
its median over validation films and takes the largest, so a film atypical at any one stage (blur at the texture
stage) is atypical. Other modalities, photographs and turned or inverted films score far higher
(``docs/research/gate-limits.md``).

The fitting (scikit-learn ``PCA`` and ``LedoitWolf``) is :mod:`monai_pneumonia.networks.atypicality_fit`; it
stores each stage as one whitening projection, so scoring here is a matrix product and ``torch.cdist`` and needs
neither scikit-learn nor SciPy (the MONAI Label environment has neither).

The reference statistics and the two limits (flag, refuse) are stored in a sidecar next to the checkpoint
(``model.atypicality.npz``) bound to the checkpoint's SHA-256: :meth:`AtypicalityReference.load` refuses a sidecar
made for another model. :class:`FeatureTap` collects the pooled features with forward hooks, so the gate needs
no change to the network. From sidecar format 3 the reference also carries an
:class:`~monai_pneumonia.networks.unfit_detector.UnfitDetector` (trained on synthetic unfit films: turned,
flipped, cropped), whose flag joins the distance's: :meth:`AtypicalityReference.gate` applies both.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from monai_pneumonia.io.policy import ATYPICAL_FLAG
from monai_pneumonia.networks.unfit_detector import GRID_SUFFIX, UnfitDetector, grid_key
from monai_pneumonia.results import FLAGS_KEY, atomic_write, file_sha256, join_flags, split_flags

__all__ = [
    "ATYPICAL_FLAG",
    "COMBINE_RULES",
    "DEFAULT_LAYERS",
    "SIDECAR_SUFFIX",
    "AtypicalityReference",
    "FeatureTap",
    "GateVerdict",
    "LayerReference",
    "load_reference",
    "pooled_features",
    "sidecar_path",
]

#: The stages whose pooled outputs are compared (module names of :class:`~monai_pneumonia.networks.AttentionResNet`).
DEFAULT_LAYERS = ("layer1", "layer2", "layer3", "layer4")
#: The sidecar's name next to a checkpoint ``model.pt``: ``model.atypicality.npz``.
SIDECAR_SUFFIX = ".atypicality.npz"
#: How the stage distances make one score: the mean (version 1) or the maximum (version 2) of the scaled distances.
COMBINE_RULES = ("mean", "max")
_FORMAT = 3
_READABLE_FORMATS = (1, 2, 3)  # format 1: no scales, combined by the mean; format 3: with an unfit detector
_FIELDS = ("center", "whitening", "class_means")


def sidecar_path(checkpoint: str | os.PathLike) -> Path:
    """Where the atypicality reference of a checkpoint lives: ``<dir>/<stem>.atypicality.npz``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SIDECAR_SUFFIX)


class FeatureTap:
    """Forward hooks that keep the spatially averaged output of named submodules during a forward pass.

    Args:
        network: the model.
        layers: names of submodules (``dict(network.named_modules())`` keys), e.g. :data:`DEFAULT_LAYERS`.
        grid: also keep each spatial output's 2 x 2 grid average (the layout a turned film changes).

    Use as a context manager; after a forward pass ``tap.features[name]`` is a float32 ``(N, C)`` tensor on the CPU,
    and with ``grid`` ``tap.features[grid_key(name)]`` is ``(N, 4 C)`` (each channel's four cells in turn).

    Raises:
        KeyError: a name that is not a submodule of ``network``.
    """

    def __init__(self, network: torch.nn.Module, layers: Sequence[str] = DEFAULT_LAYERS, grid: bool = False):
        modules = dict(network.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise KeyError(f"no submodule {', '.join(missing)} in {type(network).__name__}")
        self.modules = {name: modules[name] for name in layers}
        self.grid = grid
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, name: str):
        def keep(module, inputs, output):
            output = output.detach().float()
            self.features[name] = output.flatten(2).mean(dim=2).cpu()
            if self.grid and output.ndim == 4:
                self.features[grid_key(name)] = torch.nn.functional.adaptive_avg_pool2d(output, 2).flatten(1).cpu()

        return keep

    def __enter__(self) -> FeatureTap:
        self.features = {}
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.modules.items()]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def pooled_features(network: torch.nn.Module, images: torch.Tensor, layers: Sequence[str] = DEFAULT_LAYERS,
                    grid: bool = False) -> dict[str, np.ndarray]:
    """Run ``network`` on a batch and return the pooled outputs of ``layers`` as float64 ``(N, C)`` arrays.

    With ``grid`` their 2 x 2 grid averages come too, under :func:`~monai_pneumonia.networks.unfit_detector.grid_key`
    names (what :attr:`AtypicalityReference.needs_grid` asks for).
    """
    with FeatureTap(network, layers, grid) as tap, torch.no_grad():
        network(images)
    return {name: value.numpy().astype(np.float64) for name, value in tap.features.items()}


@dataclass(frozen=True)
class LayerReference:
    """The training films' statistics at one stage.

    Attributes:
        name: the submodule.
        center: the mean pooled feature (D,), subtracted before projecting.
        whitening: principal axes times the Cholesky factor of the precision (D, k): Euclidean distances of
            ``(x - center) @ whitening`` are Mahalanobis distances of the projections.
        class_means: each class's mean, whitened (classes, k).
        scale: the stage's distances are divided by it before the stages are combined (version 2: their median
            over validation films; 1 in format 1).
    """

    name: str
    center: np.ndarray
    whitening: np.ndarray
    class_means: np.ndarray
    scale: float = 1.0

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance to the nearest class mean divided by k, per film (N,)."""
        whitened = torch.from_numpy((np.asarray(features, dtype=np.float64) - self.center) @ self.whitening)
        squared = torch.cdist(whitened, torch.from_numpy(self.class_means)).square()
        return squared.min(dim=1).values.numpy() / self.whitening.shape[1]


@dataclass(frozen=True)
class GateVerdict:
    """The intended-use gate's verdict on one film.

    Attributes:
        atypicality: the distance score.
        unfit_score: the unfit detector's log-odds (``None`` without a detector).
        reason: why the film is refused (``""``: not refused).
        flags: the film's ``;``-joined flags, with :data:`ATYPICAL_FLAG` when either score is above its flag limit.
    """

    atypicality: float
    unfit_score: float | None
    reason: str
    flags: str

    def meta(self) -> dict:
        """The image metadata entries the writers and records read (``atypicality``, ``unfit_score``, flags)."""
        entries = {"atypicality": self.atypicality, FLAGS_KEY: self.flags}
        if self.unfit_score is not None:
            entries["unfit_score"] = self.unfit_score
        return entries


@dataclass(frozen=True)
class AtypicalityReference:
    """The reference statistics of one model and the gate's two limits.

    Attributes:
        layers: one :class:`LayerReference` per stage.
        model_sha256: the SHA-256 of the checkpoint the features came from.
        flag_limit: a score above it flags the film :data:`ATYPICAL_FLAG` (still classified).
        refuse_limit: a score above it refuses the film (not classified).
        rule: how the limits were chosen, one line (shown in docs and reasons).
        combine: how the scaled stage distances make the score, one of :data:`COMBINE_RULES`.
        detector: the unfit detector (format 3), whose flag joins the distance's; ``None``: the distance alone.

    Raises:
        ValueError: no stages, an unknown ``combine``, a stage scale that is not positive, or limits that are not
            finite with ``flag_limit <= refuse_limit``.
    """

    layers: tuple[LayerReference, ...]
    model_sha256: str
    flag_limit: float
    refuse_limit: float
    rule: str = ""
    combine: str = "mean"
    detector: UnfitDetector | None = None

    def __post_init__(self):
        if not self.layers:
            raise ValueError("an atypicality reference needs at least one stage")
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"unknown atypicality combination {self.combine!r}, expected one of {COMBINE_RULES}")
        if not all(np.isfinite(layer.scale) and layer.scale > 0 for layer in self.layers):
            raise ValueError("atypicality stage scales must be finite and positive")
        if not (np.isfinite(self.flag_limit) and np.isfinite(self.refuse_limit) and self.flag_limit <= self.refuse_limit):
            raise ValueError(f"atypicality limits must be finite with flag <= refuse, got {self.flag_limit!r}, "
                             f"{self.refuse_limit!r}")

    @property
    def layer_names(self) -> tuple[str, ...]:
        """The stages whose features the gate needs (the distance's, then any more the detector reads)."""
        names = [layer.name for layer in self.layers]
        for key in self.detector.keys if self.detector is not None else ():
            stage = key.removesuffix(GRID_SUFFIX)
            if stage not in names:
                names.append(stage)
        return tuple(names)

    def stage_distances(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each stage's :meth:`LayerReference.distance` divided by its scale (stages, N)."""
        return np.stack([layer.distance(features[layer.name]) / layer.scale for layer in self.layers])

    def score(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """The atypicality of each film: the :attr:`combine` (mean or max) over :meth:`stage_distances` (N,)."""
        distances = self.stage_distances(features)
        return distances.max(axis=0) if self.combine == "max" else distances.mean(axis=0)

    def tier(self, score: float) -> str:
        """``"refuse"`` above ``refuse_limit``, ``"flag"`` above ``flag_limit``, else ``""`` (NaN: refuse)."""
        if not np.isfinite(score) or score > self.refuse_limit:
            return "refuse"
        return "flag" if score > self.flag_limit else ""

    def refusal_reason(self, score: float) -> str:
        """The reason a film is refused (no patient data: only the score and the limit)."""
        return (f"not a frontal chest radiograph: atypicality {score:.1f} above the refusal limit "
                f"{self.refuse_limit:.1f} (the model's features of this image are far from every training film)")

    def judge(self, score: float, flags: str = "") -> tuple[str, str]:
        """Apply the two tiers to one film.

        Args:
            score: its atypicality.
            flags: its ``;``-joined policy flags (``meta["xray_flags"]``).

        Returns:
            ``(refusal reason, flags)``: the reason is ``""`` unless the film is refused; the flags gain
            :data:`ATYPICAL_FLAG` in the middle tier.
        """
        tier = self.tier(score)
        if tier == "refuse":
            return self.refusal_reason(score), flags
        if tier == "flag":
            return "", join_flags([*split_flags(flags), ATYPICAL_FLAG])
        return "", flags

    @property
    def needs_grid(self) -> bool:
        """Whether the detector reads grid-pooled features (pass it as ``pooled_features(..., grid=)``)."""
        return self.detector is not None and any(key.endswith(GRID_SUFFIX) for key in self.detector.keys)

    def gate(self, features: Mapping[str, np.ndarray], flags: Sequence[str]) -> list[GateVerdict]:
        """Both scores and :meth:`judge` for a batch.

        Args:
            features: :func:`pooled_features` of the films over :attr:`layer_names` (``grid=``:attr:`needs_grid`).
            flags: each film's ``;``-joined policy flags.

        Returns:
            One :class:`GateVerdict` per film: refused when the distance is above ``refuse_limit``; else flagged
            :data:`ATYPICAL_FLAG` when the distance or the detector's log-odds is above its flag limit.
        """
        scores = self.score(features)
        logits = self.detector.logit(features) if self.detector is not None else [None] * len(scores)
        verdicts = []
        for score, logit, film_flags in zip(scores, logits, flags, strict=True):
            reason, film_flags = self.judge(float(score), film_flags)
            if not reason and logit is not None and self.detector.is_flagged(float(logit)):
                film_flags = join_flags([*split_flags(film_flags), ATYPICAL_FLAG])
            verdicts.append(GateVerdict(float(score), None if logit is None else float(logit), reason, film_flags))
        return verdicts

    def gate_images(self, network: torch.nn.Module, images: torch.Tensor, flags: Sequence[str]) -> list[GateVerdict]:
        """:meth:`gate` on the features ``network`` computes for a batch of its inputs (the stages and grid it needs)."""
        return self.gate(pooled_features(network, images, self.layer_names, self.needs_grid), flags)

    def with_detector(self, detector: UnfitDetector | None) -> AtypicalityReference:
        """A copy with another unfit detector (``None``: none)."""
        return replace(self, detector=detector)

    def with_limits(self, flag_limit: float, refuse_limit: float, rule: str = "") -> AtypicalityReference:
        """A copy with other limits."""
        return replace(self, flag_limit=float(flag_limit), refuse_limit=float(refuse_limit), rule=rule)

    def with_scales(self, scales: Sequence[float], combine: str) -> AtypicalityReference:
        """A copy whose stages are divided by ``scales`` (one per stage, in order) and combined by ``combine``."""
        if len(scales) != len(self.layers):
            raise ValueError(f"{len(scales)} scales for {len(self.layers)} atypicality stages")
        layers = tuple(replace(layer, scale=float(scale)) for layer, scale in zip(self.layers, scales, strict=True))
        return replace(self, layers=layers, combine=combine)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sidecar atomically (``numpy.savez_compressed``; the distance's arrays as float32)."""
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "model_sha256": np.array(self.model_sha256),
            "layers": np.array([layer.name for layer in self.layers]),
            "limits": np.array([self.flag_limit, self.refuse_limit]),
            "rule": np.array(self.rule),
            "combine": np.array(self.combine),
            "scales": np.array([layer.scale for layer in self.layers]),
        }
        for layer in self.layers:
            for field in _FIELDS:
                arrays[f"{layer.name}.{field}"] = getattr(layer, field).astype(np.float32)
        if self.detector is not None:
            detector = self.detector
            arrays.update({"detector.keys": np.array(detector.keys), "detector.mean": detector.mean,
                           "detector.weights": detector.weights,
                           "detector.bias_limit": np.array([detector.bias, detector.flag_limit]),
                           "detector.rule": np.array(detector.rule)})
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return atomic_write(path, buffer.getvalue(), mode=0o644)

    @classmethod
    def load(cls, path: str | os.PathLike, model_sha256: str | None = None) -> AtypicalityReference:
        """Read a sidecar, checking it belongs to the model.

        Args:
            path: the ``.atypicality.npz`` file.
            model_sha256: the checkpoint's SHA-256; ``None`` skips the check.

        Raises:
            FileNotFoundError: no file.
            ValueError: not a sidecar of this format, or made for another model.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no atypicality sidecar")
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format"])
                if version in _READABLE_FORMATS:
                    sha = str(data["model_sha256"])
                    names = [str(n) for n in data["layers"]]
                    scales = [float(v) for v in data["scales"]] if version >= 2 else [1.0] * len(names)
                    combine = str(data["combine"]) if version >= 2 else "mean"
                    layers = tuple(
                        LayerReference(name, *(data[f"{name}.{field}"].astype(np.float64) for field in _FIELDS), scale)
                        for name, scale in zip(names, scales, strict=True))
                    flag, refuse = (float(v) for v in data["limits"])
                    rule = str(data["rule"])
                    detector = None
                    if version >= 3 and "detector.keys" in data:
                        bias, limit = (float(v) for v in data["detector.bias_limit"])
                        detector = UnfitDetector(tuple(str(k) for k in data["detector.keys"]),
                                                 data["detector.mean"].astype(np.float64),
                                                 data["detector.weights"].astype(np.float64), bias, limit,
                                                 str(data["detector.rule"]))
        except (KeyError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: not an atypicality sidecar ({type(error).__name__})") from error
        if version not in _READABLE_FORMATS:
            raise ValueError(f"{path}: atypicality sidecar format {version}, expected one of {_READABLE_FORMATS}")
        if model_sha256 is not None and sha != model_sha256:
            raise ValueError(f"{path}: atypicality reference made for another model (SHA-256 {sha[:12]}…, "
                             f"checkpoint {model_sha256[:12]}…); refit it for this checkpoint")
        return cls(layers, sha, flag, refuse, rule, combine, detector)


def load_reference(checkpoint: str | os.PathLike, sidecar: str | os.PathLike | bool = True
                     ) -> AtypicalityReference | None:
    """The intended-use gate's reference for a checkpoint.

    Args:
        checkpoint: the ``model.pt`` the reference must belong to (by SHA-256).
        sidecar: a sidecar path; ``True``: the checkpoint's default sidecar when it exists; ``False``: none.

    Returns:
        The reference, or ``None`` when there is none to use.

    Raises:
        FileNotFoundError: an explicit ``sidecar`` path that does not exist.
        ValueError: the sidecar belongs to another model or is not a sidecar.
    """
    if sidecar is False:
        return None
    path = sidecar_path(checkpoint) if sidecar is True else Path(sidecar)
    if sidecar is True and not path.is_file():
        return None
    return AtypicalityReference.load(path, file_sha256(checkpoint))
