"""Ignite handlers of the bundle: operating threshold, prediction/evaluation writers and Grad-CAM overlays.

Every writer reads the decision threshold from the network's ``operating_threshold`` buffer, which the
:class:`OperatingThresholdHandler` sets from validation predictions during training and which travels in
``model.pt``: the threshold is stored with the model, never passed on the side.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine
from monai.utils import evenly_divisible_all_gather, str2bool

from monai_pneumonia.errors import NoReadableInputError
from monai_pneumonia.workflows.datasets import REFUSED_KEY

__all__ = [
    "CLASS_NAMES",
    "CamWriter",
    "EvaluationWriter",
    "OperatingThresholdHandler",
    "PNEUMONIA_INDEX",
    "PredictionWriter",
    "operating_threshold",
    "pneumonia_probability",
    "predicted_class",
    "source_path",
]

logger = logging.getLogger(__name__)

#: Names of the model's output channels, in order (pneumonia is the positive class).
CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
#: Output channel of the pneumonia class.
PNEUMONIA_INDEX = 1


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    return getattr(network, "module", network)


def operating_threshold(network: torch.nn.Module) -> float:
    """The decision threshold stored in the network (its ``operating_threshold`` buffer)."""
    return float(_unwrap(network).operating_threshold)


def source_path(item: dict, image_key: str = "image") -> str:
    """The file an output item came from (the loader records it as ``filename_or_obj`` metadata)."""
    image = item[image_key]
    meta = getattr(image, "meta", None) or item.get(f"{image_key}_meta_dict", {})
    return os.fspath(meta.get("filename_or_obj", ""))


def pneumonia_probability(pred: torch.Tensor) -> float:
    """The pneumonia probability of one item's softmax output (``pred`` of the bundle's postprocessing)."""
    return float(torch.as_tensor(pred).reshape(-1)[PNEUMONIA_INDEX])


def predicted_class(prob_pneumonia: float, threshold: float) -> int:
    """The class index decided at the operating threshold: pneumonia when ``prob_pneumonia >= threshold``."""
    return int(prob_pneumonia >= threshold)


def _class_index(label: Any) -> int:
    label = torch.as_tensor(label).reshape(-1)
    return int(label.argmax()) if label.numel() > 1 else int(label.item())


def _private_open(path: Path) -> Any:
    """Open a result file for writing, readable by its owner only (results may hold study identifiers).

    File names that are not valid UTF-8 (undecodable bytes, which Python holds as surrogates) are written with
    backslash escapes (``\\udce9``) rather than failing the whole run.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(fd, "w", newline="", encoding="utf-8", errors="backslashreplace")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV atomically: a temporary file in the same folder, then ``os.replace`` (never a half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with _private_open(temp) as stream:
            writer = csv.writer(stream)
            writer.writerow(header)
            writer.writerows(rows)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


class OperatingThresholdHandler:
    """Choose the decision threshold on each validation pass and store it in the network.

    Attach it to the validation evaluator *before* the ``CheckpointSaver``: every saved checkpoint then carries
    the threshold chosen on its own validation predictions. Under DDP every rank must attach it (it gathers the
    predictions of all ranks). It also puts ``val_threshold``, ``val_sensitivity`` and ``val_specificity`` in
    ``engine.state.metrics`` for the stats handlers.

    Args:
        network: the model whose ``operating_threshold`` buffer is set (a DDP wrapper is unwrapped).
        method: passed to :func:`monai_pneumonia.evaluation.select_threshold` (``"youden"`` by default).
        output_transform: maps ``engine.state.output`` to ``(preds, labels)`` lists (default: the ``pred`` and
            ``label`` keys).
        method_kwargs: extra arguments of the selection method (e.g. ``{"target": 0.97}``).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        method: str = "youden",
        output_transform: Callable | None = None,
        method_kwargs: dict | None = None,
    ) -> None:
        self.network = network
        self.method = method
        self.output_transform = output_transform or from_engine(["pred", "label"])
        self.method_kwargs = method_kwargs or {}
        self._probs: list[float] = []
        self._labels: list[int] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._choose)

    def _reset(self, engine: Engine) -> None:
        self._probs, self._labels = [], []

    def _collect(self, engine: Engine) -> None:
        preds, labels = self.output_transform(engine.state.output)
        self._probs.extend(pneumonia_probability(p) for p in preds)
        self._labels.extend(_class_index(y) for y in labels)

    def _choose(self, engine: Engine) -> None:
        from monai_pneumonia.evaluation import binary_metrics, select_threshold

        probs = evenly_divisible_all_gather(torch.tensor(self._probs, dtype=torch.float64), concat=True)
        labels = evenly_divisible_all_gather(torch.tensor(self._labels, dtype=torch.int64), concat=True)
        probs, labels = probs.cpu().numpy(), labels.cpu().numpy()
        if len(np.unique(labels)) < 2:
            logger.warning("validation has a single class: operating threshold left at %.4f",
                           operating_threshold(self.network))
            return
        threshold = float(select_threshold(labels, probs, method=self.method, **self.method_kwargs))
        _unwrap(self.network).operating_threshold.fill_(threshold)
        summary = binary_metrics(labels, probs, threshold, n_bootstrap=0)
        engine.state.metrics["val_threshold"] = threshold
        engine.state.metrics["val_sensitivity"] = summary["sensitivity"]
        engine.state.metrics["val_specificity"] = summary["specificity"]


class _ResultCollector:
    """Collects per-input results and refusals of an evaluation or inference run; subclasses write them.

    Args:
        output_dir: where the files go (created if needed).
        network: the model (its ``operating_threshold`` decides the predicted class).
        with_labels: collect ``label`` too (evaluation).
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module, with_labels: bool) -> None:
        self.output_dir = Path(output_dir)
        self.network = network
        self.with_labels = with_labels
        self.records: list[dict] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler's events on ``engine``."""
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._complete)

    def _reset(self, engine: Engine) -> None:
        self.records = []

    def _collect(self, engine: Engine) -> None:
        for item in engine.state.output or []:
            record = {"image": source_path(item), "prob_pneumonia": pneumonia_probability(item["pred"])}
            if self.with_labels:
                record["label"] = _class_index(item["label"])
            self.records.append(record)

    def _complete(self, engine: Engine) -> None:
        threshold = operating_threshold(self.network)
        for record in self.records:
            record["prediction"] = predicted_class(record["prob_pneumonia"], threshold)
        refused = list(getattr(engine.state, REFUSED_KEY, []))
        _write_csv(self.output_dir / "errors.csv", ("image", "error"), [(r["image"], r["error"]) for r in refused])
        self.write(engine, threshold, refused)

    def write(self, engine: Engine, threshold: float, refused: list[dict]) -> None:
        raise NotImplementedError


class PredictionWriter(_ResultCollector):
    """Write ``predictions.csv`` (``image,prob_pneumonia,prediction``) and ``errors.csv`` (``image,error``).

    Args:
        output_dir: where the files go.
        network: the model (its ``operating_threshold`` decides ``NORMAL`` or ``PNEUMONIA``).

    Raises:
        NoReadableInputError: at completion, when no input at all could be read (after writing ``errors.csv``),
            so that the run exits non-zero.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module) -> None:
        super().__init__(output_dir, network, with_labels=False)

    def write(self, engine: Engine, threshold: float, refused: list[dict]) -> None:
        rows = [(r["image"], f"{r['prob_pneumonia']:.6f}", CLASS_NAMES[r["prediction"]]) for r in self.records]
        _write_csv(self.output_dir / "predictions.csv", ("image", "prob_pneumonia", "prediction"), rows)
        logger.info("%d predictions (threshold %.4f), %d refused, written to %s",
                    len(rows), threshold, len(refused), self.output_dir)
        if not rows:
            raise NoReadableInputError(f"no input could be read: {len(refused)} refused, see {self.output_dir / 'errors.csv'}")


class EvaluationWriter(_ResultCollector):
    """Write ``metrics.json``, ``predictions.csv``, ``errors.csv`` and the HTML ``report.html``.

    Metrics (pneumonia positive, 95% CIs) come from :func:`monai_pneumonia.evaluation.binary_metrics` at the
    model's stored threshold. The report's Grad-CAM gallery shows false negatives first, then false positives,
    then correct cases; the maps are computed by re-running ``preprocessing`` on those cases only.

    Args:
        output_dir: where the files go.
        network: the evaluated model.
        preprocessing: the evaluation preprocessing (the same as for inference), used for the gallery.
        gallery_size: Grad-CAM overlays per group (false negatives, false positives, true positives, true
            negatives); 0 disables the gallery.
        n_bootstrap: bootstrap resamples for the confidence intervals.
        title: the report's heading.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        network: torch.nn.Module,
        preprocessing: Callable | None = None,
        gallery_size: int = 4,
        n_bootstrap: int = 2000,
        title: str = "Pneumonia classifier: evaluation report",
    ) -> None:
        super().__init__(output_dir, network, with_labels=True)
        self.preprocessing = preprocessing
        self.gallery_size = gallery_size
        self.n_bootstrap = n_bootstrap
        self.title = title

    def write(self, engine: Engine, threshold: float, refused: list[dict]) -> None:
        from monai_pneumonia.evaluation import binary_metrics, write_report

        if not self.records:
            raise NoReadableInputError(f"nothing to evaluate: {len(refused)} inputs refused, see {self.output_dir / 'errors.csv'}")
        labels = np.array([r["label"] for r in self.records])
        probs = np.array([r["prob_pneumonia"] for r in self.records])
        metrics = binary_metrics(labels, probs, threshold, n_bootstrap=self.n_bootstrap)
        metrics["n_refused"] = len(refused)
        with _private_open(self.output_dir / "metrics.json") as stream:
            json.dump(metrics, stream, indent=2)
        rows = [(r["image"], r["label"], f"{r['prob_pneumonia']:.6f}", CLASS_NAMES[r["prediction"]]) for r in self.records]
        _write_csv(self.output_dir / "predictions.csv", ("image", "label", "prob_pneumonia", "prediction"), rows)
        for record in self._gallery_records():
            record["cam_png"] = self._cam_overlay(record["image"])
        write_report(self.records, metrics, self.output_dir / "report.html", title=self.title,
                     model_info={"threshold": threshold, "refused": len(refused)})
        logger.info("evaluation of %d images: %s", len(self.records),
                    ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "sensitivity", "specificity", "auc")
                              if metrics.get(k) is not None))

    def _gallery_records(self) -> list[dict]:
        if self.gallery_size <= 0 or self.preprocessing is None:
            return []
        groups: dict[tuple[int, int], list[dict]] = {}
        for record in self.records:
            groups.setdefault((record["label"], record["prediction"]), []).append(record)
        # false negatives (the dangerous misses), false positives, true positives, true negatives
        order = ((1, 0), (0, 1), (1, 1), (0, 0))
        worst_first = {(1, 0): 1, (0, 1): -1, (1, 1): -1, (0, 0): 1}  # most confident mistakes / clearest hits
        chosen = []
        for group in order:
            cases = sorted(groups.get(group, []), key=lambda r: worst_first[group] * r["prob_pneumonia"])
            chosen.extend(cases[: self.gallery_size])
        return chosen

    def _cam_overlay(self, path: str) -> np.ndarray:
        from monai_pneumonia.visualize import grad_cam, overlay_cam

        image = self.preprocessing({"image": path})["image"]
        cam = grad_cam(self.network, image.unsqueeze(0))[0, 0]
        return overlay_cam(_unit_range(image[0]), cam.numpy())


def _unit_range(image: torch.Tensor) -> np.ndarray:
    array = torch.as_tensor(image, dtype=torch.float32).cpu().numpy()
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


class CamWriter:
    """Save a Grad-CAM overlay PNG for every input of an inference run.

    Files are ``<output_dir>/<stem>-<hash>.png`` where the hash of the full source path keeps files of the same
    name from different folders apart.

    Args:
        output_dir: the overlay folder.
        network: the model.
        enabled: attach nothing when False (so a config can switch it with a knob such as ``save_cam``); the
            strings of a command line (``--save_cam true``) are accepted.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module, enabled: bool | str = True) -> None:
        self.output_dir = Path(output_dir)
        self.network = network
        self.enabled = str2bool(enabled)

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (nothing when disabled)."""
        if self.enabled:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._save)

    @staticmethod
    def overlay_name(path: str) -> str:
        """The overlay file name for a source path."""
        digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:8]
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(path).stem)
        return f"{stem}-{digest}.png"

    def _save(self, engine: Engine) -> None:
        from monai_pneumonia.visualize import grad_cam, overlay_cam, save_png

        items = [item for item in (engine.state.batch or []) if isinstance(item, dict) and "image" in item]
        if not items:
            return
        images = torch.stack([torch.as_tensor(item["image"]) for item in items])
        maps = grad_cam(self.network, images)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for item, image, cam in zip(items, images, maps, strict=True):
            save_png(overlay_cam(_unit_range(image[0]), cam[0].numpy()), self.output_dir / self.overlay_name(source_path(item)))
