"""The bundle's inference path, in process: for services that classify images as they arrive.

:class:`BundleClassifier` instantiates ``preprocessing``, ``network``, ``inferer`` and ``postprocessing`` from the
bundle's ``configs/inference.json`` (the very objects the bundle's inference workflow runs) and loads
``models/model.pt`` with its stored operating threshold. The DICOM listener and the MONAI Label app use it; the
``predict`` command and ``python -m monai.bundle run`` run the same config as a workflow, so a picture gets the
same answer whichever way it arrives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, decollate_batch

from monai_pneumonia.bundle import bundle_file, default_bundle_root
from monai_pneumonia.networks import load_checkpoint
from monai_pneumonia.workflows.datasets import REFUSED_KEY, RefusingDataset, collate_with_refusals
from monai_pneumonia.workflows.handlers import (
    CLASS_NAMES,
    operating_threshold,
    pneumonia_probability,
    predicted_class,
    source_path,
)

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
        return self.prediction == CLASS_NAMES[1]


@dataclass(frozen=True)
class Refusal:
    """An input the loader refused, with the reason."""

    image: str
    error: str


class BundleClassifier:
    """Classify radiographs with a bundle's inference components and checkpoint.

    Args:
        preprocessing: the bundle's ``preprocessing`` transform (dictionary transforms on ``{"image": path}``).
        network: the model, with its weights and ``operating_threshold`` loaded.
        inferer: the bundle's ``inferer``.
        postprocessing: the bundle's ``postprocessing`` (softmax on ``pred``).
        device: where the network runs.
        batch_size: images per forward pass.

    Use :meth:`from_bundle` rather than the constructor.
    """

    def __init__(self, preprocessing, network, inferer, postprocessing, device: torch.device, batch_size: int = 16):
        self.preprocessing = preprocessing
        self.network = network.eval()
        self.inferer = inferer
        self.postprocessing = postprocessing
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def from_bundle(
        cls,
        bundle_root: str | os.PathLike | None = None,
        ckpt_path: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        **overrides: Any,
    ) -> BundleClassifier:
        """Build the classifier from a bundle folder.

        Args:
            bundle_root: the bundle (default: :func:`~monai_pneumonia.bundle.default_bundle_root`).
            ckpt_path: the checkpoint (default: ``<bundle>/models/model.pt``); loaded with ``weights_only=True``.
            device: e.g. ``"cpu"``; default: the config's choice.
            batch_size: default: the config's ``batch_size``.
            overrides: further overrides of ``inference.json`` (e.g. ``{"network_def#depth": 18}``).

        Returns:
            The classifier.

        Raises:
            FileNotFoundError: no checkpoint at ``ckpt_path``.
            ValueError: the file is not a checkpoint of this bundle's network (no stored operating threshold).
        """
        from monai.bundle import ConfigParser

        root = Path(bundle_root) if bundle_root is not None else default_bundle_root()
        ckpt = Path(ckpt_path) if ckpt_path is not None else bundle_file(root, "model.pt")
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: no model checkpoint (train one with bundle/configs/train.json)")
        parser = ConfigParser()
        parser.read_config(bundle_file(root, "inference.json"))
        parser.read_meta(bundle_file(root, "metadata.json"))
        parser.update({"bundle_root": os.fspath(root), **overrides})
        if device is not None:
            parser["device"] = torch.device(device)
        target = parser.get_parsed_content("device")
        network = parser.get_parsed_content("network")
        network.load_state_dict(load_checkpoint(ckpt))
        return cls(
            preprocessing=parser.get_parsed_content("preprocessing"),
            network=network,
            inferer=parser.get_parsed_content("inferer"),
            postprocessing=parser.get_parsed_content("postprocessing"),
            device=target,
            batch_size=batch_size or int(parser.get_parsed_content("batch_size")),
        )

    @property
    def threshold(self) -> float:
        """The stored operating threshold."""
        return operating_threshold(self.network)

    def classify(self, paths: Iterable[str | os.PathLike], num_workers: int = 0) -> list[Classification | Refusal]:
        """Classify files in batches; refused files come back as :class:`Refusal`, never as an exception.

        Args:
            paths: image files (DICOM, PNG, JPEG, NIfTI).
            num_workers: DataLoader workers for decoding.

        Returns:
            One result per path, refusals included; readable inputs in input order, then refusals per batch.
        """
        items = [{"image": os.fspath(path)} for path in paths]
        loader = DataLoader(RefusingDataset(items, transform=self.preprocessing), batch_size=self.batch_size,
                            num_workers=num_workers, collate_fn=collate_with_refusals)
        results: list[Classification | Refusal] = []
        threshold = self.threshold
        for batch in loader:
            results.extend(Refusal(r["image"], r["error"]) for r in batch.pop(REFUSED_KEY))
            if "image" not in batch:
                continue
            results.extend(self._classify_batch(batch, threshold))
        return results

    def _classify_batch(self, batch: dict, threshold: float) -> list[Classification]:
        images = batch["image"].to(self.device)
        with torch.no_grad():
            batch["pred"] = self.inferer(images, self.network)
        outputs = []
        for item in decollate_batch(batch):
            item = self.postprocessing(item)
            prob = pneumonia_probability(item["pred"])
            meta = dict(getattr(item["image"], "meta", {}))
            decision = CLASS_NAMES[predicted_class(prob, threshold)]
            outputs.append(Classification(source_path(item), prob, decision, threshold, meta))
        return outputs

    def grad_cam(self, path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
        """The preprocessed image and its Grad-CAM map for the pneumonia class.

        Args:
            path: an image file.

        Returns:
            ``(image, cam)``: the network input (1, W, H) and the map (1, W, H) in [0, 1], both on the CPU.

        Raises:
            XrayInputError: the file is refused (via MONAI's ``RuntimeError`` wrapper, see
                :func:`~monai_pneumonia.errors.find_cause`).
        """
        from monai_pneumonia.visualize import grad_cam

        image = self.preprocessing({"image": os.fspath(path)})["image"]
        cam = grad_cam(self.network, image.unsqueeze(0).to(self.device))[0]
        return image.cpu(), cam

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold:.4f}, device={self.device}, batch_size={self.batch_size})"


