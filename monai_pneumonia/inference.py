"""The one classifier: the bundle's ``inference.json`` as a MONAI ``ConfigWorkflow``, run in process.

:class:`BundleClassifier` creates the workflow with MONAI's public ``create_workflow`` (``workflow_type=
"inference"``) and takes from it the configured ``network`` (weights and operating threshold loaded by
:func:`~monai_pneumonia.networks.load_weights`, as in ``python -m monai.bundle run``), ``preprocessing``,
``inferer`` and ``postprocessing``. ``predict``, ``demo``, the DICOM listener and the MONAI Label app all classify
with it; the bundle's own ``monai.bundle run`` runs the same objects through its evaluator, and a test checks that
both give the same answers. The decision rule is :mod:`monai_pneumonia.decision`.

The intended-use gate runs here, so every entry point gets it: the loader's header rules
(:mod:`monai_pneumonia.io.policy`: modality, view, age, ...) and, when the checkpoint has an atypicality sidecar
(:mod:`monai_pneumonia.networks.atypicality`), the network's own features: a film far from every training film
becomes a :class:`Refusal`, one in between is classified and flagged ``atypical``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, decollate_batch

from monai_pneumonia.bundle import bundle_file, default_bundle_root, load_workflow
from monai_pneumonia.decision import CLASS_NAMES, PNEUMONIA_INDEX, NonFiniteScoreError, class_name, positive_probability
from monai_pneumonia.errors import find_cause
from monai_pneumonia.networks.atypicality import AtypicalityReference, load_reference
from monai_pneumonia.networks.checkpoint import model_identity, operating_threshold
from monai_pneumonia.results import Refusal, format_flags
from monai_pneumonia.visualize import explain, overlay_name, render_cam, save_png
from monai_pneumonia.workflows.datasets import REFUSED_KEY, RefusingDataset, collate_with_refusals

__all__ = ["BundleClassifier", "Classification", "Refusal"]


@dataclass(frozen=True)
class Classification:
    """The model's answer for one image.

    Attributes:
        image: the source path.
        prob_pneumonia: softmax probability of pneumonia.
        prediction: ``"PNEUMONIA"`` when ``prob_pneumonia >= threshold``, else ``"NORMAL"``.
        threshold: the model's stored operating threshold.
        meta: the loader's metadata (DICOM UIDs, photometric interpretation, policy flags, ...).
    """

    image: str
    prob_pneumonia: float
    prediction: str
    threshold: float
    meta: dict = field(default_factory=dict, repr=False)

    @property
    def positive(self) -> bool:
        """True when the prediction is pneumonia."""
        return self.prediction == CLASS_NAMES[PNEUMONIA_INDEX]


class BundleClassifier:
    """Classify radiographs with a bundle's inference components and checkpoint.

    Args:
        preprocessing: the bundle's ``preprocessing`` transform (dictionary transforms on ``{"image": path}``).
        network: the eager model, with its weights and ``operating_threshold`` loaded (Grad-CAM, threshold).
        inferer: the bundle's ``inferer``.
        postprocessing: the bundle's ``postprocessing`` (softmax on ``pred``).
        device: where the network runs.
        batch_size: images per forward pass.
        workflow: the ``ConfigWorkflow`` the components come from, if any.
        runtime: the module that runs the forward passes, the bundle's ``inference_network`` (default:
            ``network``), e.g. its ONNX Runtime export (:func:`~monai_pneumonia.networks.runtime_network`).
        atypicality: the intended-use gate's reference (``None``: no atypicality gate); its features come from
            ``network`` (eager, float32) in a forward pass of their own.

    Use :meth:`from_bundle` rather than the constructor.
    """

    def __init__(self, preprocessing, network, inferer, postprocessing, device: torch.device, batch_size: int = 16,
                 workflow: Any = None, runtime: torch.nn.Module | None = None,
                 atypicality: AtypicalityReference | None = None):
        self.preprocessing = preprocessing
        self.network = network.eval()
        self.runtime = runtime.eval() if runtime is not None else self.network
        self.inferer = inferer
        self.postprocessing = postprocessing
        self.device = device
        self.batch_size = batch_size
        self.workflow = workflow
        self.atypicality = atypicality

    @classmethod
    def from_bundle(
        cls,
        bundle_root: str | os.PathLike | None = None,
        ckpt_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        atypicality: str | os.PathLike | bool = True,
        **overrides: Any,
    ) -> BundleClassifier:
        """Build the classifier from a bundle folder's ``configs/inference.json``.

        Args:
            bundle_root: the bundle (default: :func:`~monai_pneumonia.bundle.default_bundle_root`).
            ckpt_path: the checkpoint (default: ``<bundle>/models/model.pt``); loaded with ``weights_only=True``.
            device: e.g. ``"cpu"``; default: the config's choice.
            batch_size: default: the config's ``batch_size``.
            atypicality: the gate's sidecar; ``True``: ``<ckpt>.atypicality.npz`` when it exists
                (:func:`~monai_pneumonia.networks.atypicality.sidecar_path`); ``False``: no atypicality gate.
            overrides: further overrides of ``inference.json`` (e.g. ``{"network_def#depth": 18}``;
                ``site_profile="site.json"`` decides by a site's rule, :mod:`monai_pneumonia.site_profile`).

        Returns:
            The classifier.

        Raises:
            FileNotFoundError: no checkpoint at ``ckpt_path``.
            ValueError: the file is not a checkpoint of this bundle's network (no stored operating threshold), or
                the atypicality sidecar belongs to another model.
            SiteProfileError: the site profile is missing, malformed or bound to another model.
        """
        root = Path(bundle_root) if bundle_root is not None else default_bundle_root()
        ckpt = Path(ckpt_path) if ckpt_path is not None else bundle_file(root, "model.pt")
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: no model checkpoint (train one with bundle/configs/train.json)")
        workflow = load_workflow("inference.json", bundle_root=root, workflow_type="inference",
                                 ckpt_path=os.fspath(ckpt), device=device, **overrides)
        try:
            network = workflow.parser.get_parsed_content("network")
            runtime = workflow.parser.get_parsed_content("inference_network")
        except Exception as error:  # noqa: BLE001 - MONAI wraps the loader's errors in RuntimeError
            cause = find_cause(error, ValueError) or find_cause(error, FileNotFoundError)
            if cause is not None:
                raise cause from error
            raise
        return cls(
            preprocessing=workflow.preprocessing,
            network=network,
            inferer=workflow.inferer,
            postprocessing=workflow.postprocessing,
            device=workflow.device,
            batch_size=batch_size or int(workflow.parser.get_parsed_content("batch_size")),
            workflow=workflow,
            runtime=runtime,
            atypicality=load_reference(ckpt, atypicality),
        )

    @property
    def threshold(self) -> float:
        """The operating threshold: the model's stored one, or the site profile's when one is applied."""
        return operating_threshold(self.network)

    @property
    def identity(self) -> dict[str, str]:
        """``{"model_sha256", "site_profile_sha256", "site_rule"}`` (:func:`~monai_pneumonia.networks.model_identity`)."""
        return model_identity(self.network)

    def iterate(
        self, paths: Iterable[str | os.PathLike], batch_size: int | None = None, num_workers: int = 0
    ) -> Iterator[Classification | Refusal]:
        """Classify files batch by batch, yielding one result per path **in input order** (for large folders).

        Args:
            paths: image files (DICOM, PNG, JPEG, NIfTI).
            batch_size: images per forward pass (default: the classifier's).
            num_workers: DataLoader workers for decoding.

        Yields:
            A :class:`Classification` or, for a file the loader refused or a non-finite score, a
            :class:`~monai_pneumonia.results.Refusal` (with ``index``, the position in ``paths``), never an exception;
            ``result.image`` is the path as given.
        """
        sources = [os.fspath(path) for path in paths]
        threshold = self.threshold
        start = 0
        for batch in self.batches(sources, batch_size, num_workers):  # each the next contiguous slice of sources
            refused = {refusal.index: refusal for refusal in batch.pop(REFUSED_KEY)}
            answers = iter(self._classify_batch(batch, threshold) if "image" in batch else [])
            size = len(refused) + (len(batch["image"]) if "image" in batch else 0)
            for position in range(start, start + size):
                source = sources[position]
                if position in refused:
                    yield refused[position]
                    continue
                prob, meta = next(answers)
                reason = meta.pop("atypicality_refusal", "")  # the intended-use gate's top tier
                if reason:
                    yield Refusal(source, reason, position)  # the reason alone: a spool path holds the UID
                    continue
                try:
                    result = Classification(source, prob, class_name(prob, threshold), threshold, meta)
                except NonFiniteScoreError as error:  # a NaN never becomes NORMAL: the film is refused
                    result = Refusal(source, f"the model gave no usable answer ({error})", position)
                yield result
            start += size

    def batches(
        self, paths: Sequence[str | os.PathLike], batch_size: int | None = None, num_workers: int = 0
    ) -> Iterator[dict]:
        """The files after the bundle's preprocessing, batch by batch in input order, as the network receives them.

        Args:
            paths: image files.
            batch_size: files per batch (default: the classifier's).
            num_workers: DataLoader workers for decoding.

        Yields:
            :func:`~monai_pneumonia.workflows.datasets.collate_with_refusals` batches of consecutive files: the
            readable ones collated (no ``"image"`` key when all were refused) and the
            :class:`~monai_pneumonia.results.Refusal` records (``index``: the position in ``paths``) under
            ``REFUSED_KEY``.
        """
        items = [{"image": os.fspath(path)} for path in paths]
        yield from DataLoader(RefusingDataset(items, transform=self.preprocessing),
                              batch_size=batch_size or self.batch_size, num_workers=num_workers,
                              collate_fn=collate_with_refusals)

    def classify(self, paths: Iterable[str | os.PathLike], num_workers: int = 0) -> list[Classification | Refusal]:
        """Classify files; refused files come back as :class:`Refusal`, never as an exception.

        Args:
            paths: image files (DICOM, PNG, JPEG, NIfTI).
            num_workers: DataLoader workers for decoding.

        Returns:
            One result per path, in input order.
        """
        return list(self.iterate(paths, num_workers=num_workers))

    def __call__(self, path: str | os.PathLike) -> Classification | Refusal:
        """Classify one file."""
        return next(self.iterate([path], batch_size=1))

    def _classify_batch(self, batch: dict, threshold: float) -> list[tuple[float, dict]]:
        images = batch["image"].to(self.device)
        with torch.no_grad():
            batch["pred"] = self.inferer(images, self.runtime)
        items = decollate_batch(batch)
        gates = self.gate(images, [getattr(item["image"], "meta", {}) for item in items])
        outputs = []
        for item, gate in zip(items, gates, strict=True):
            item = self.postprocessing(item)
            meta = {**dict(getattr(item["image"], "meta", {})), **gate}
            outputs.append((positive_probability(item["pred"]), meta))
        return outputs

    def gate(self, images: torch.Tensor, metas: Sequence[dict]) -> list[dict]:
        """The intended-use gate's atypicality tier for a batch of preprocessed images.

        Args:
            images: the network input (N, 1, H, W).
            metas: each image's metadata (its ``xray_flags`` are extended).

        Returns:
            Per image ``{"atypicality": score, "unfit_score": log-odds, "xray_flags": flags,
            "atypicality_refusal": reason}`` (:class:`~monai_pneumonia.networks.atypicality.GateVerdict`; the reason
            ``""`` unless refused; the flags gain ``atypical`` in the middle tier; ``unfit_score`` only with an
            unfit detector); ``{}`` each without a reference.
        """
        if self.atypicality is None:
            return [{} for _ in metas]
        images = images.as_tensor() if hasattr(images, "as_tensor") else images
        verdicts = self.atypicality.gate_images(self.network, images.to(self.device),
                                                [format_flags(meta) for meta in metas])
        return [{**verdict.meta(), "atypicality_refusal": verdict.reason} for verdict in verdicts]

    def grad_cam(self, path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
        """The display image of a file and its Grad-CAM map for the pneumonia class (:func:`~monai_pneumonia.visualize.explain`).

        Args:
            path: an image file.

        Returns:
            ``(display, cam)``: the loader's image (1, W, H) at the film's aspect ratio and the map (1, w, h) at the
            network input's size, both in [0, 1] and on the CPU.

        Raises:
            XrayInputError: the file is refused (via MONAI's ``RuntimeError`` wrapper, see
                :func:`~monai_pneumonia.errors.find_cause`).
        """
        return explain(self.network, self.preprocessing, path, self.device)

    def cam_overlay(self, path: str | os.PathLike, result: Classification | None = None) -> np.ndarray:
        """The Grad-CAM overlay of a file drawn by :func:`~monai_pneumonia.visualize.render_cam`.

        Args:
            path: an image file.
            result: its classification; when given, the probability and decision are burned in as a caption.

        Returns:
            uint8 RGB (rows, columns, 3).
        """
        display, cam = self.grad_cam(path)
        if result is None:
            return render_cam(display, cam)
        return render_cam(display, cam, result.prob_pneumonia, result.threshold)

    def save_cam_overlay(self, result: Classification, folder: str | os.PathLike) -> Path:
        """Write the captioned overlay of a classified file as ``<folder>/<overlay_name(image)>`` (the bundle's name)."""
        return save_png(self.cam_overlay(result.image, result), Path(folder) / overlay_name(result.image))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(threshold={self.threshold:.4f}, device={self.device}, batch_size={self.batch_size}, "
                f"runtime={type(self.runtime).__name__})")
