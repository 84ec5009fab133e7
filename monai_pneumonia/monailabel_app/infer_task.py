"""The ``pneumonia`` infer task: the bundle's own inference components behind MONAI Label's ``BasicInferTask``.

Pre-transforms, network, inferer and post-transforms are those of
:meth:`~monai_pneumonia.inference.BundleClassifier.from_bundle` (``configs/inference.json`` +
``models/model.pt`` with its stored operating threshold): no second copy of the pipeline. ``BundleInferTask`` is
not used because MONAI Label's ``transform/post.py`` imports torchvision, which has no working CPU build here.

The checkpoint is loaded on first use and again whenever ``models/model.pt`` changes, so a server started before
the model is shipped serves it as soon as it is there; until then the task is not listed in ``/info/`` and an
inference request fails with :class:`ModelNotReadyError`.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.utils.others.generic import strtobool

from monai_pneumonia.bundle import bundle_file
from monai_pneumonia.decision import PNEUMONIA_INDEX, decide, positive_probability
from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.results import FLAGS_KEY, format_flags
from monai_pneumonia.visualize import cam_at_size, grad_cam, save_png

__all__ = ["CAM_PARAM", "ModelNotReadyError", "PneumoniaInferTask", "bundle_labels", "series_file"]

#: Request parameter (also shown as an option in ``/info/``) that asks for the Grad-CAM heatmap.
CAM_PARAM = "cam"


class ModelNotReadyError(FileNotFoundError):
    """The bundle has no ``models/model.pt`` yet."""


def bundle_labels(bundle_root: str | os.PathLike) -> dict[str, int]:
    """Class names by output channel, from the bundle's ``metadata.json`` (``outputs.pred.channel_def``).

    Args:
        bundle_root: the bundle folder.

    Returns:
        e.g. ``{"normal": 0, "pneumonia": 1}``.
    """
    meta = json.loads(bundle_file(bundle_root, "metadata.json").read_text())
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    return {str(name).lower(): int(index) for index, name in channels.items()}


def series_file(data: dict) -> dict:
    """Replace a folder ``image`` (a DICOMweb series fetched without NIfTI conversion) by its single file.

    Args:
        data: the request with ``image``, a file or a folder.

    Returns:
        ``data`` with ``image`` a file path.

    Raises:
        XrayInputError: the folder does not hold exactly one file (a radiograph is one instance).
    """
    folder = data["image"]
    if not isinstance(folder, str) or not os.path.isdir(folder):
        return data
    files = sorted(entry.path for entry in os.scandir(folder) if entry.is_file())
    if len(files) != 1:
        raise XrayInputError(folder, f"a series folder with {len(files)} files; send one radiograph (one instance)")
    return {**data, "image": files[0]}


class PneumoniaInferTask(BasicInferTask):
    """Classification task serving a monai-pneumonia bundle.

    Args:
        bundle_root: the bundle folder (``configs/inference.json``, ``configs/metadata.json``, ``models/model.pt``).
        device: where the network runs, e.g. ``"cpu"``; default: the bundle config's choice.
        description: shown by the viewers.
        site_profile: a ``site.json`` whose rule decides (:mod:`monai_pneumonia.site_profile`); it must be bound
            to the bundle's model, else the first request fails with ``SiteProfileError``.
    """

    def __init__(self, bundle_root: str | os.PathLike, device: str | None = None, description: str = "",
                 site_profile: str | os.PathLike | None = None) -> None:
        self.bundle_root = Path(bundle_root)
        self.device_name = device
        self.site_profile = os.fspath(site_profile) if site_profile else None
        self._lock = threading.Lock()
        self._loaded: tuple[int, BundleClassifier] | None = None
        super().__init__(
            path=os.fspath(bundle_file(self.bundle_root, "model.pt")),
            network=None,
            type=InferType.CLASSIFICATION,
            labels=bundle_labels(self.bundle_root),
            dimension=2,
            description=description or f"Pneumonia vs normal on chest radiographs (bundle {self.bundle_root})",
            config={CAM_PARAM: False},
        )

    @property
    def checkpoint(self) -> Path:
        """The bundle's ``models/model.pt``."""
        return Path(self.path[0])

    def classifier(self) -> BundleClassifier:
        """The bundle's classifier, (re)loaded when the checkpoint file changes.

        Raises:
            ModelNotReadyError: no checkpoint.
        """
        try:
            stamp = self.checkpoint.stat().st_mtime_ns
        except FileNotFoundError:
            raise ModelNotReadyError(
                f"{self.checkpoint}: no model checkpoint in bundle {self.bundle_root}; ship or train one "
                "(bundle/configs/train.json) and retry, the server picks it up without a restart"
            ) from None
        with self._lock:
            if self._loaded is None or self._loaded[0] != stamp:
                self._loaded = (stamp, BundleClassifier.from_bundle(self.bundle_root, device=self.device_name,
                                                                        site_profile=self.site_profile))
            return self._loaded[1]

    def pre_transforms(self, data: dict | None = None) -> Sequence[Callable]:
        """The bundle's ``preprocessing``, after resolving a DICOM series folder to its file."""
        return [series_file, self.classifier().preprocessing]

    def inferer(self, data: dict | None = None):
        """The bundle's ``inferer``."""
        return self.classifier().inferer

    def post_transforms(self, data: dict | None = None) -> Sequence[Callable]:
        """The bundle's ``postprocessing`` (softmax on ``pred``)."""
        return [self.classifier().postprocessing]

    def _get_network(self, device: str, data: dict | None):
        # the bundle's inference backend (``inference_network``: ONNX Runtime on a CPU, float32), as ``predict``
        # runs it; the eager ``network`` under the bundle's bfloat16 inferer gives other probabilities
        return self.classifier().runtime

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        """Run the bundle's inferer on the device the classifier was built for."""
        return super().run_inferer(data, convert_to_batch, device=str(self.classifier().device))

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[str | None, dict]:
        """MONAI Label's classification result plus the decision at the stored threshold.

        Returns:
            ``(cam_png_or_None, result)``; ``result`` holds ``prediction`` (per-class scores as MONAI Label
            writes them), ``prob_pneumonia``, ``threshold``, ``predicted`` (``{"idx", "label"}`` at the stored
            threshold, not the argmax), ``flags`` (the loader's policy flags and ``atypical``), ``atypicality``
            and ``unfit_score`` (with a sidecar), the model's identity (``model_sha256``, ``site_profile_sha256``, ``site_rule``) and,
            with ``cam``, ``cam``.

        Raises:
            XrayInputError: the intended-use gate refuses the image (far from every training film).
        """
        if not isinstance(data[self.output_label_key], MetaTensor):
            data[self.output_label_key] = MetaTensor(data[self.output_label_key])
        classifier = self.classifier()
        image = data[self.input_key]
        gate = classifier.gate(torch.as_tensor(image)[None], [image.meta])[0]  # the intended-use gate
        if gate.get("atypicality_refusal"):
            raise XrayInputError(image.meta.get("filename_or_obj"), gate["atypicality_refusal"])
        _, result = super().writer(data, extension, dtype)
        prob = positive_probability(data[self.output_label_key])
        index = decide(prob, classifier.threshold)
        names = {idx: name for name, idx in self.labels.items()}
        result.update(
            prob_pneumonia=prob,
            threshold=classifier.threshold,
            predicted={"idx": index, "label": names[index]},
            flags=format_flags(gate if FLAGS_KEY in gate else image.meta),
            **classifier.identity,
        )
        for key in ("atypicality", "unfit_score"):  # with a sidecar (the detector from format 3)
            if key in gate:
                result[key] = gate[key]
        if not strtobool(str(data.get(CAM_PARAM, False))):
            return None, result
        cam_file, result["cam"] = self._write_cam(classifier, data[self.input_key])
        return cam_file, result

    @staticmethod
    def _write_cam(classifier: BundleClassifier, image: MetaTensor) -> tuple[str, dict]:
        """Grad-CAM of the pneumonia class as a grey PNG at the source image's size (rows x columns)."""
        heat = grad_cam(classifier.network, torch.as_tensor(image)[None].to(classifier.device), PNEUMONIA_INDEX)
        rows, columns = int(image.meta["original_rows"]), int(image.meta["original_columns"])
        resized = cam_at_size(heat[0], rows, columns)  # the renderer's mapping onto the film (row-major)
        handle, path = tempfile.mkstemp(prefix="cam-", suffix=".png")
        os.close(handle)
        save_png(resized, path)
        return path, {"format": "png", "rows": rows, "columns": columns, "class": PNEUMONIA_INDEX}
